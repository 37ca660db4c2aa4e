"""The atomic-write primitive: exact content and mode, old file intact on every failure."""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import signal
import stat
import subprocess
import tempfile

import pytest

from cl_metadata.outputs import fsutil
from cl_metadata.errors import OutputError

IS_ROOT = os.geteuid() == 0
NOBODY = 65534


def leftovers(directory) -> list:
    return sorted(name for name in os.listdir(directory) if name.startswith("."))


def mode_of(path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


@pytest.fixture
def umask():
    """Set a umask for one test and restore it."""
    saved = os.umask(0o022)
    os.umask(saved)

    def set_umask(value):
        os.umask(value)

    yield set_umask
    os.umask(saved)


@pytest.fixture
def old_file(tmp_path):
    target = tmp_path / "attrs"
    target.write_bytes(b"OLD=1\n")
    os.chmod(target, 0o640)
    return target


@pytest.fixture(params=["anonymous", "by-name"])
def write_mode(request, monkeypatch):
    """Both ways a new file is made: ``O_TMPFILE`` + ``linkat``, and the by-name fallback of a
    kernel or filesystem without ``O_TMPFILE``."""
    if request.param == "by-name":
        real_open = os.open

        def no_tmpfile(path, flags, *args, **kwargs):
            if flags & os.O_TMPFILE == os.O_TMPFILE:
                raise OSError(errno.EOPNOTSUPP, os.strerror(errno.EOPNOTSUPP))
            return real_open(path, flags, *args, **kwargs)

        monkeypatch.setattr(fsutil.os, "open", no_tmpfile)
    return request.param


def assert_untouched(target):
    assert target.read_bytes() == b"OLD=1\n"
    assert mode_of(target) == 0o640
    assert leftovers(target.parent) == []


# --- success ---------------------------------------------------------------------------------

@pytest.mark.parametrize("mask", [0o077, 0o000, 0o022])
def test_writes_exact_content_and_mode_whatever_the_umask(tmp_path, umask, mask, write_mode):
    umask(mask)
    target = tmp_path / "file"
    fsutil.atomic_write(target, b"A=1\nB=2\n", mode=0o644)
    assert target.read_bytes() == b"A=1\nB=2\n"
    assert mode_of(target) == 0o644
    assert os.listdir(tmp_path) == ["file"]


def test_replaces_an_existing_file_by_rename(old_file, write_mode):
    inode_before = os.stat(old_file).st_ino
    fsutil.atomic_write(old_file, b"NEW=2\n", mode=0o600)
    assert old_file.read_bytes() == b"NEW=2\n"
    assert mode_of(old_file) == 0o600
    assert os.stat(old_file).st_ino != inode_before  # a new inode, not an in-place rewrite
    assert leftovers(old_file.parent) == []


def test_empty_data_writes_an_empty_file(tmp_path):
    fsutil.atomic_write(tmp_path / "empty", b"", mode=0o644)
    assert (tmp_path / "empty").read_bytes() == b""


def test_missing_parents_are_created_0755_despite_the_umask(tmp_path, umask, monkeypatch):
    (tmp_path / "run").mkdir(mode=0o755)
    monkeypatch.setattr(fsutil, "CREATABLE_ROOT", str(tmp_path / "run"))
    umask(0o077)
    target = tmp_path / "run" / "metadata" / "deeper" / "coreos"
    fsutil.atomic_write(target, b"X=1\n", mode=0o644)
    assert target.read_bytes() == b"X=1\n"
    assert mode_of(tmp_path / "run" / "metadata") == 0o755
    assert mode_of(tmp_path / "run" / "metadata" / "deeper") == 0o755


def test_the_shipped_creatable_root_is_run():
    assert fsutil.CREATABLE_ROOT == "/run"


@pytest.mark.parametrize("where", ["elsewhere/dir/file", "run/../elsewhere/file"])
def test_missing_parents_outside_the_creatable_root_are_an_error(tmp_path, monkeypatch, where):
    (tmp_path / "run").mkdir()
    monkeypatch.setattr(fsutil, "CREATABLE_ROOT", str(tmp_path / "run"))
    target = os.path.join(tmp_path, where)
    with pytest.raises(OutputError) as caught:
        fsutil.atomic_write(target, b"x", mode=0o644)
    assert caught.value.target == target
    assert caught.value.cause == (f"directory {os.path.dirname(os.path.abspath(target))} does "
                                  f"not exist (only directories below {tmp_path}/run are created)")
    assert sorted(os.listdir(tmp_path)) == ["run"]


def test_a_symlink_below_the_creatable_root_does_not_lead_creation_elsewhere(tmp_path,
                                                                              monkeypatch):
    (tmp_path / "run").mkdir()
    (tmp_path / "etc").mkdir()
    (tmp_path / "run" / "escape").symlink_to(tmp_path / "etc")
    monkeypatch.setattr(fsutil, "CREATABLE_ROOT", str(tmp_path / "run"))
    with pytest.raises(OutputError, match="does not exist"):
        fsutil.atomic_write(tmp_path / "run" / "escape" / "new" / "file", b"x", mode=0o644)
    assert os.listdir(tmp_path / "etc") == []


def test_existing_parent_modes_are_left_alone(tmp_path):
    parent = tmp_path / "d"
    parent.mkdir(mode=0o700)
    fsutil.atomic_write(parent / "f", b"x", mode=0o644)
    assert mode_of(parent) == 0o700


def test_without_make_parents_a_missing_directory_is_an_error(tmp_path):
    target = tmp_path / "missing" / "file"
    with pytest.raises(OutputError) as caught:
        fsutil.atomic_write(target, b"x", mode=0o644, make_parents=False)
    assert caught.value.target == str(target)
    assert caught.value.cause == f"directory {tmp_path}/missing does not exist"
    assert not (tmp_path / "missing").exists()


@pytest.mark.parametrize("dangling", [False, True])
def test_a_symlink_at_the_target_is_refused_neither_replaced_nor_followed(tmp_path, dangling):
    victim = tmp_path / "victim"
    if not dangling:
        victim.write_bytes(b"precious\n")
    target = tmp_path / "attrs"
    target.symlink_to(victim)
    with pytest.raises(OutputError) as caught:
        fsutil.atomic_write(target, b"A=1\n", mode=0o644)
    assert str(caught.value) == f"{target}: is a symbolic link; refusing to replace it"
    assert os.readlink(target) == str(victim)
    if dangling:
        assert not victim.exists()
    else:
        assert victim.read_bytes() == b"precious\n"
    assert leftovers(tmp_path) == []


def test_data_must_be_bytes(tmp_path):
    with pytest.raises(TypeError):
        fsutil.atomic_write(tmp_path / "f", "text", mode=0o644)
    assert os.listdir(tmp_path) == []


# --- failures leave the old file -------------------------------------------------------------

def _fail_with(exc):
    def fail(*args, **kwargs):
        raise exc
    return fail


@pytest.mark.parametrize("step, function, cause", [
    ("write", "write", "writing: No space left on device"),
    ("fsync", "fsync", "syncing the file: Input/output error"),
    ("rename", "rename", "renaming into place: Input/output error"),
    ("create", "fchmod", "writing: Operation not permitted"),
])
def test_a_failing_step_leaves_the_old_file_and_no_temp(old_file, monkeypatch, step, function,
                                                         cause, write_mode):
    code = {"write": errno.ENOSPC, "fsync": errno.EIO, "rename": errno.EIO,
            "create": errno.EPERM}[step]
    monkeypatch.setattr(fsutil.os, function, _fail_with(OSError(code, os.strerror(code))))
    with pytest.raises(OutputError) as caught:
        fsutil.atomic_write(old_file, b"NEW=2\n" * 1000, mode=0o644)
    monkeypatch.undo()
    assert caught.value.target == str(old_file)
    assert caught.value.cause == cause
    assert_untouched(old_file)


def test_a_short_write_is_completed(tmp_path, monkeypatch):
    real_write = os.write

    def one_byte_at_a_time(fd, data):
        return real_write(fd, bytes(data[:1]))

    monkeypatch.setattr(fsutil.os, "write", one_byte_at_a_time)
    fsutil.atomic_write(tmp_path / "f", b"hello world", mode=0o644)
    monkeypatch.undo()
    assert (tmp_path / "f").read_bytes() == b"hello world"


@pytest.mark.parametrize("interruption", [KeyboardInterrupt, SystemExit])
def test_an_interruption_mid_write_removes_the_temp_file(old_file, monkeypatch, interruption,
                                                         write_mode):
    monkeypatch.setattr(fsutil.os, "fsync", _fail_with(interruption()))
    with pytest.raises(interruption):
        fsutil.atomic_write(old_file, b"NEW=2\n", mode=0o644)
    monkeypatch.undo()
    assert_untouched(old_file)


def test_sigterm_mid_write_with_a_raising_handler(old_file, monkeypatch, write_mode):
    """The CLI turns SIGTERM into SystemExit; a real signal arriving mid-write must clean up."""
    def on_sigterm(signum, frame):
        raise SystemExit(143)

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    real_fsync = os.fsync
    calls = []

    def fsync_then_get_killed(fd):
        calls.append(fd)
        os.kill(os.getpid(), signal.SIGTERM)
        real_fsync(fd)

    monkeypatch.setattr(fsutil.os, "fsync", fsync_then_get_killed)
    try:
        with pytest.raises(SystemExit):
            fsutil.atomic_write(old_file, b"NEW=2\n", mode=0o644)
    finally:
        signal.signal(signal.SIGTERM, previous)
        monkeypatch.undo()
    assert calls, "the signal was sent from inside the write"
    assert_untouched(old_file)


def test_a_directory_at_the_target_is_an_error(tmp_path):
    target = tmp_path / "attrs"
    target.mkdir()
    (target / "inside").write_bytes(b"keep")
    with pytest.raises(OutputError) as caught:
        fsutil.atomic_write(target, b"x", mode=0o644)
    assert caught.value.cause == "is a directory"
    assert (target / "inside").read_bytes() == b"keep"
    assert leftovers(tmp_path) == []


def test_a_planted_temp_name_is_skipped_and_left_alone(old_file, write_mode, monkeypatch):
    tmp_path = old_file.parent
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious\n")
    planted = tmp_path / ".attrs.planted"
    planted.symlink_to(victim)
    names = iter([".attrs.planted", ".attrs.fresh"])
    monkeypatch.setattr(fsutil, "temp_name", lambda name: next(names))
    fsutil.atomic_write(old_file, b"A=1\n", mode=0o644)
    assert next(names, None) is None, "both names were tried"
    assert (tmp_path / "attrs").read_bytes() == b"A=1\n"
    assert victim.read_bytes() == b"precious\n"
    assert os.readlink(planted) == str(victim)
    assert leftovers(tmp_path) == [".attrs.planted"]


def test_when_every_temp_name_is_taken_nothing_is_written(old_file, monkeypatch, write_mode):
    (old_file.parent / ".attrs.taken").write_bytes(b"")
    monkeypatch.setattr(fsutil, "temp_name", lambda name: ".attrs.taken")
    with pytest.raises(OutputError) as caught:
        fsutil.atomic_write(old_file, b"NEW=2\n", mode=0o644)
    assert "every random name was taken" in caught.value.cause
    assert old_file.read_bytes() == b"OLD=1\n"
    assert (old_file.parent / ".attrs.taken").read_bytes() == b""


@pytest.fixture
def shared_dir():
    """A directory other users can traverse (pytest's tmp_path is under a 0700 directory)."""
    path = tempfile.mkdtemp(prefix="clm-fsutil-", dir="/tmp")
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path)


def _run_as_nobody(fn) -> int:
    """Run fn() in a child with uid/gid nobody; return its exit status (0 = fn returned True)."""
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            os.setgroups([])
            os.setresgid(NOBODY, NOBODY, NOBODY)
            os.setresuid(NOBODY, NOBODY, NOBODY)
            status = 0 if fn() else 1
        finally:
            os._exit(status)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def test_a_directory_we_cannot_write_is_an_error_and_the_old_file_stays(shared_dir):
    target = os.path.join(shared_dir, "attrs")
    with open(target, "wb") as f:
        f.write(b"OLD=1\n")
    if not IS_ROOT:
        os.chmod(shared_dir, 0o555)

    def attempt() -> bool:
        try:
            fsutil.atomic_write(target, b"NEW=2\n", mode=0o644)
        except OutputError as err:
            return err.cause == "creating a temporary file: Permission denied"
        return False

    if IS_ROOT:
        assert _run_as_nobody(attempt) == 0
    else:
        try:
            assert attempt()
        finally:
            os.chmod(shared_dir, 0o755)
    with open(target, "rb") as f:
        assert f.read() == b"OLD=1\n"
    assert os.listdir(shared_dir) == ["attrs"]


@pytest.fixture
def tiny_tmpfs():
    if not IS_ROOT:
        pytest.skip("mounting a tmpfs needs root")
    path = tempfile.mkdtemp(prefix="clm-tmpfs-")
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,mode=0755", "tmpfs", path],
                            capture_output=True)
    if result.returncode != 0:
        os.rmdir(path)
        pytest.skip("cannot mount a tmpfs here")
    yield path
    subprocess.run(["umount", path], check=True)
    os.rmdir(path)


def fill(directory):
    fd = os.open(os.path.join(directory, "filler"), os.O_CREAT | os.O_WRONLY, 0o600)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError as err:
        assert err.errno == errno.ENOSPC
    finally:
        os.close(fd)


def test_disk_full_keeps_the_old_file(tiny_tmpfs):
    target = os.path.join(tiny_tmpfs, "attrs")
    fsutil.atomic_write(target, b"OLD=1\n", mode=0o644)
    fill(tiny_tmpfs)
    with pytest.raises(OutputError) as caught:
        fsutil.atomic_write(target, b"NEW=2\n" * 4096, mode=0o644)
    assert caught.value.cause == "writing: No space left on device"
    with open(target, "rb") as f:
        assert f.read() == b"OLD=1\n"
    assert sorted(os.listdir(tiny_tmpfs)) == ["attrs", "filler"]


# --- locking ---------------------------------------------------------------------------------

def test_a_held_lock_makes_the_writer_wait_then_give_up(tmp_path):
    holder = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    fcntl.flock(holder, fcntl.LOCK_EX)
    writer = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    now = [100.0]
    sleeps = []

    def sleep(seconds):
        sleeps.append(seconds)
        now[0] += seconds

    try:
        with pytest.raises(OSError) as caught:
            with fsutil.dir_lock(writer, timeout=1.0, clock=lambda: now[0], sleep=sleep):
                pass
        assert caught.value.errno == errno.EAGAIN
        assert 9 <= len(sleeps) <= 11  # polled every 0.1 s for the 1 s budget
        fcntl.flock(holder, fcntl.LOCK_UN)
        with fsutil.dir_lock(writer, timeout=0, clock=lambda: now[0], sleep=sleep):
            with pytest.raises(BlockingIOError):  # held now: the other fd cannot take it
                fcntl.flock(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released after the block
    finally:
        os.close(holder)
        os.close(writer)


@pytest.mark.skipif(os.geteuid() == 0, reason="root locks in the lock dir (tests below)")
def test_atomic_write_serialises_on_the_directory_lock(old_file):
    holder = os.open(old_file.parent, os.O_RDONLY | os.O_DIRECTORY)
    fcntl.flock(holder, fcntl.LOCK_EX)
    try:
        with pytest.raises(OutputError) as caught:
            fsutil.atomic_write(old_file, b"NEW=2\n", mode=0o644, lock_timeout=0)
    finally:
        os.close(holder)
    assert "another writer holds the lock" in caught.value.cause
    assert_untouched(old_file)


# --- remove and directory helpers ------------------------------------------------------------

def test_remove(tmp_path):
    target = tmp_path / "f"
    target.write_bytes(b"x")
    assert fsutil.remove(target) is True
    assert not target.exists()
    assert fsutil.remove(target) is False
    assert fsutil.remove(tmp_path / "no-such-dir" / "f") is False


def test_remove_unlinks_a_symlink_not_its_target(tmp_path):
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    (tmp_path / "link").symlink_to(victim)
    assert fsutil.remove(tmp_path / "link") is True
    assert victim.read_bytes() == b"precious"
    assert not (tmp_path / "link").is_symlink()


def test_open_dir_nofollow(tmp_path, umask):
    umask(0o022)
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    (tmp_path / "file").write_bytes(b"")
    parent = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with pytest.raises(fsutil.SymlinkRefused):
            fsutil.open_dir_nofollow("link", parent, create_mode=0o700)
        with pytest.raises(NotADirectoryError):
            fsutil.open_dir_nofollow("file", parent)
        with pytest.raises(FileNotFoundError):
            fsutil.open_dir_nofollow("missing", parent)
        assert not (tmp_path / "missing").exists()
        with pytest.raises(ValueError):
            fsutil.open_dir_nofollow("../escape", parent)
        fd = fsutil.open_dir_nofollow("created", parent, create_mode=0o700)
        try:
            assert os.path.samestat(os.fstat(fd), os.stat(tmp_path / "created"))
        finally:
            os.close(fd)
        assert mode_of(tmp_path / "created") == 0o700
        fd = fsutil.open_dir_nofollow("real", parent)
        os.close(fd)
    finally:
        os.close(parent)
    assert sorted(os.listdir(real)) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="root's locks live in the root-only lock dir")
def test_a_user_holding_the_directory_lock_cannot_stall_root(tmp_path, monkeypatch):
    # /run/metadata is 0755: any user can open it and flock it. Root locks elsewhere.
    monkeypatch.setattr(fsutil, "LOCK_DIR", str(tmp_path / "locks"))
    target = tmp_path / "out" / "attrs"
    target.parent.mkdir()
    holder = os.open(target.parent, os.O_RDONLY | os.O_DIRECTORY)
    fcntl.flock(holder, fcntl.LOCK_EX)
    try:
        fsutil.atomic_write(target, b"A=1\n", mode=0o644, lock_timeout=0)
    finally:
        os.close(holder)
    assert target.read_bytes() == b"A=1\n"
    locks = os.listdir(tmp_path / "locks")
    assert len(locks) == 1 and locks[0].endswith(".lock")
    assert stat.S_IMODE(os.stat(tmp_path / "locks").st_mode) == 0o700


@pytest.mark.skipif(os.geteuid() != 0, reason="root's locks live in the root-only lock dir")
def test_root_lock_writers_of_one_target_serialise(tmp_path, monkeypatch):
    monkeypatch.setattr(fsutil, "LOCK_DIR", str(tmp_path / "locks"))
    target = tmp_path / "attrs"
    dir_fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with fsutil.target_lock(dir_fd, str(target), timeout=0):
            with pytest.raises(OutputError, match="another writer holds"):
                fsutil.atomic_write(target, b"A=1\n", mode=0o644, lock_timeout=0)
    finally:
        os.close(dir_fd)
    assert not target.exists()


# --- what a kill can leave behind --------------------------------------------------------------

def stale_temp(directory, name, content=b"half a fi"):
    """A temp file exactly as a writer SIGKILLed between creating it and renaming leaves it."""
    path = os.path.join(directory, fsutil.temp_name(name))
    with open(path, "wb") as f:
        f.write(content)
    return path


def test_temp_names_have_the_shape_the_sweep_matches():
    name = fsutil.temp_name("attrs")
    assert fsutil.is_temp_name(name, "attrs")
    assert len(name) == len(".attrs.") + 24
    for other in (".attrs.ABCDEF0123456789abcdef01",  # upper case: not ours
                  ".attrs.0123456789abcdef012345",  # 22 digits
                  ".attrs.0123456789abcdef01234567a",  # 25 digits
                  ".attrs.0123456789abcdef0123456g",
                  ".attrsx0123456789abcdef01234567",
                  ".other.0123456789abcdef01234567",
                  "attrs.0123456789abcdef01234567"):
        assert not fsutil.is_temp_name(other, "attrs"), other


def test_a_write_sweeps_the_stale_temps_of_its_target_only(old_file, write_mode):
    directory = old_file.parent
    stale = [stale_temp(directory, "attrs") for _ in range(3)]
    victim = directory / "victim"
    victim.write_bytes(b"precious\n")
    keep = {
        ".attrs.keep": b"an unrelated dotfile",
        ".attrs.0123456789ABCDEF01234567": b"not our shape",
        fsutil.temp_name("other"): b"another target's temp",
        ".bashrc": b"",
    }
    for name, content in keep.items():
        (directory / name).write_bytes(content)
    link = directory / fsutil.temp_name("attrs")  # our shape, but a symlink: never ours
    link.symlink_to(victim)
    subdir = directory / fsutil.temp_name("attrs")  # our shape, but a directory
    subdir.mkdir()
    (subdir / "inside").write_bytes(b"x")

    fsutil.atomic_write(old_file, b"NEW=2\n", mode=0o644)

    assert old_file.read_bytes() == b"NEW=2\n"
    assert not any(os.path.lexists(path) for path in stale)
    for name, content in keep.items():
        assert (directory / name).read_bytes() == content
    assert os.readlink(link) == str(victim) and victim.read_bytes() == b"precious\n"
    assert (subdir / "inside").read_bytes() == b"x"
    assert sorted(leftovers(directory)) == sorted([*keep, link.name, subdir.name])


def test_removing_sweeps_stale_temps_too(old_file):
    stale = stale_temp(old_file.parent, "attrs")
    assert fsutil.remove(old_file) is True
    assert os.listdir(old_file.parent) == []
    assert not os.path.exists(stale)


@pytest.mark.skipif(not IS_ROOT, reason="needs a file owned by another uid")
def test_the_sweep_leaves_temps_owned_by_another_uid(old_file):
    """Another user's writer of the same name (its own lock) may be mid-write: not ours."""
    theirs = stale_temp(old_file.parent, "attrs")
    os.chown(theirs, NOBODY, NOBODY)
    fsutil.atomic_write(old_file, b"NEW=2\n", mode=0o644)
    assert leftovers(old_file.parent) == [os.path.basename(theirs)]


def test_a_sweep_that_cannot_list_the_directory_does_not_fail_the_write(old_file, monkeypatch):
    real_listdir = os.listdir

    def denied(path="."):
        if isinstance(path, int):
            raise PermissionError(errno.EACCES, "Permission denied")
        return real_listdir(path)

    monkeypatch.setattr(fsutil.os, "listdir", denied)
    fsutil.atomic_write(old_file, b"NEW=2\n", mode=0o644)
    monkeypatch.undo()
    assert old_file.read_bytes() == b"NEW=2\n"


def _record_names(monkeypatch):
    """Record, at each step of a write, which dotfiles the directory holds."""
    seen = []
    real_fsync, real_write = os.fsync, os.write

    def names_now(fd):
        directory = os.path.dirname(os.readlink(f"/proc/self/fd/{fd}")) \
            if not os.path.isdir(f"/proc/self/fd/{fd}") else os.readlink(f"/proc/self/fd/{fd}")
        return [n for n in os.listdir(directory) if n.startswith(".")]

    def fsync(fd):
        seen.append(("fsync", names_now(fd)))
        return real_fsync(fd)

    def write(fd, data):
        seen.append(("write", names_now(fd)))
        return real_write(fd, data)

    monkeypatch.setattr(fsutil.os, "fsync", fsync)
    monkeypatch.setattr(fsutil.os, "write", write)
    return seen


def test_an_anonymous_file_has_no_name_while_it_is_written_and_synced(old_file, monkeypatch):
    """The kill window that matters: a SIGKILL while writing or syncing strands nothing."""
    seen = _record_names(monkeypatch)
    fsutil.atomic_write(old_file, b"NEW=2\n", mode=0o644)
    monkeypatch.undo()
    assert [step for step, _ in seen] == ["write", "fsync", "fsync"]  # file, then directory
    assert all(names == [] for _, names in seen), seen
    assert old_file.read_bytes() == b"NEW=2\n"


def test_a_new_target_is_linked_in_place_without_any_temp_name(tmp_path, monkeypatch):
    linked = []
    real_link = os.link

    def link(src, dst, **kwargs):
        linked.append(dst)
        return real_link(src, dst, **kwargs)

    monkeypatch.setattr(fsutil.os, "link", link)
    fsutil.atomic_write(tmp_path / "attrs", b"A=1\n", mode=0o640)
    fsutil.atomic_write(tmp_path / "attrs", b"A=2\n", mode=0o640)
    monkeypatch.undo()
    assert linked[0] == "attrs"  # first write: no temp name at all
    assert linked[1] == "attrs" and fsutil.is_temp_name(linked[2], "attrs")  # EEXIST, then temp
    assert (tmp_path / "attrs").read_bytes() == b"A=2\n" and mode_of(tmp_path / "attrs") == 0o640
    assert os.listdir(tmp_path) == ["attrs"]


@pytest.mark.parametrize("code", [errno.ENOENT, errno.EACCES])
def test_without_proc_the_file_is_written_by_name(old_file, monkeypatch, code):
    def no_proc(src, dst, **kwargs):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(fsutil.os, "link", no_proc)
    fsutil.atomic_write(old_file, b"NEW=2\n", mode=0o600)
    monkeypatch.undo()
    assert old_file.read_bytes() == b"NEW=2\n" and mode_of(old_file) == 0o600
    assert leftovers(old_file.parent) == []


def test_a_link_that_fails_for_good_is_an_error_and_the_old_file_stays(old_file, monkeypatch):
    def no_space(src, dst, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(fsutil.os, "link", no_space)
    with pytest.raises(OutputError) as caught:
        fsutil.atomic_write(old_file, b"NEW=2\n", mode=0o644)
    monkeypatch.undo()
    assert caught.value.cause == "linking the new file: No space left on device"
    assert_untouched(old_file)


def test_the_ssh_writer_primitive_still_replaces_a_symlinked_fragment(tmp_path):
    """write_at runs as the user inside the user's own directory: replacing is safe there."""
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious\n")
    (tmp_path / "frag").symlink_to(victim)
    stale = stale_temp(tmp_path, "frag")
    dir_fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fsutil.write_at(dir_fd, "frag", b"key\n", mode=0o600)
    finally:
        os.close(dir_fd)
    assert not (tmp_path / "frag").is_symlink() and (tmp_path / "frag").read_bytes() == b"key\n"
    assert victim.read_bytes() == b"precious\n"
    assert not os.path.exists(stale)


@pytest.mark.skipif(os.geteuid() != 0, reason="root's locks live in the root-only lock dir")
def test_two_spellings_of_one_directory_share_the_root_lock(tmp_path, monkeypatch):
    """The sweep may delete a temp only because every writer of the target holds this lock."""
    monkeypatch.setattr(fsutil, "LOCK_DIR", str(tmp_path / "locks"))
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "alias").symlink_to(real)
    dir_fd = os.open(real, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with fsutil.target_lock(dir_fd, str(real / "attrs"), timeout=0):
            with pytest.raises(OutputError, match="another writer holds"):
                fsutil.atomic_write(tmp_path / "alias" / "attrs", b"A=1\n", mode=0o644,
                                    lock_timeout=0)
    finally:
        os.close(dir_fd)
    assert os.listdir(real) == []


# --- output paths, checked before the platform is asked --------------------------------------

@pytest.mark.parametrize("spelling", ["-", "/dev/stdout", "/proc/self/fd/1", "/dev/fd/1"])
def test_standard_output_spellings(spelling):
    assert fsutil.is_stdout(spelling)
    fsutil.check_output_file(spelling)  # always acceptable


@pytest.mark.parametrize("other", ["./-", "/dev/stderr", "/proc/self/fd/2", "/dev/stdout/"])
def test_other_paths_are_not_standard_output(other):
    assert not fsutil.is_stdout(other)


def test_write_output_to_standard_output_writes_exactly_the_bytes(capfd, tmp_path):
    fsutil.write_output("-", b"A=1\nB=\"x y\"\n", mode=0o644)
    out, err = capfd.readouterr()
    assert (out, err) == ('A=1\nB="x y"\n', "")
    assert os.listdir(tmp_path) == []


def test_a_closed_standard_output_is_an_output_error():
    saved = os.dup(1)
    os.close(1)
    try:
        with pytest.raises(OutputError) as caught:
            fsutil.write_stdout(b"x")
    finally:
        os.dup2(saved, 1)
        os.close(saved)
    assert str(caught.value) == "standard output: writing: Bad file descriptor"


def _refused(check, path) -> str:
    with pytest.raises(OutputError) as caught:
        check(path)
    assert caught.value.target == str(path)
    return caught.value.cause


def test_check_output_file_refuses_what_must_not_be_replaced(tmp_path):
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious\n")
    (tmp_path / "link").symlink_to(victim)
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "dir").mkdir()
    (tmp_path / "file").write_bytes(b"")
    check = fsutil.check_output_file
    assert _refused(check, tmp_path / "link") == "is a symbolic link; refusing to replace it"
    assert _refused(check, tmp_path / "fifo") == "is a FIFO, not a regular file"
    assert _refused(check, tmp_path / "dir") == "is a directory"
    assert _refused(check, "/dev/null") == "is a character device, not a regular file"
    assert _refused(check, tmp_path / "file" / "x") == "Not a directory"
    assert _refused(check, tmp_path / "nodir" / "x") == (
        f"directory {tmp_path}/nodir does not exist (only directories below /run are created)")
    check(tmp_path / "file")  # a regular file is replaced
    check(tmp_path / "new")  # a missing one created
    assert victim.read_bytes() == b"precious\n"


def test_check_output_file_accepts_missing_directories_below_the_creatable_root(tmp_path,
                                                                               monkeypatch):
    (tmp_path / "run").mkdir()
    monkeypatch.setattr(fsutil, "CREATABLE_ROOT", str(tmp_path / "run"))
    fsutil.check_output_file(tmp_path / "run" / "metadata" / "sub" / "coreos")
    assert os.listdir(tmp_path / "run") == []  # checking creates nothing


def test_check_output_dir(tmp_path):
    real = tmp_path / "units"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    (tmp_path / "file").write_bytes(b"")
    check = fsutil.check_output_dir
    assert _refused(check, tmp_path / "link") == "is a symbolic link; refusing to follow it"
    assert _refused(check, tmp_path / "file") == "is not a directory"
    assert _refused(check, "-") == "a directory is needed, not standard output"
    assert _refused(check, tmp_path / "missing" / "units") == (
        f"directory {tmp_path}/missing does not exist (only directories below /run are created)")
    check(real)
    check(tmp_path / "new")  # the units directory itself is created, its parent exists
    assert sorted(os.listdir(tmp_path)) == ["file", "link", "units"]


def test_make_output_dir_creates_only_the_directory_itself(tmp_path, umask):
    umask(0o077)
    fsutil.make_output_dir(tmp_path / "units")
    assert mode_of(tmp_path / "units") == 0o755
    fsutil.make_output_dir(tmp_path / "units")  # existing: fine
    with pytest.raises(OutputError, match="does not exist"):
        fsutil.make_output_dir(tmp_path / "a" / "units")
    assert sorted(os.listdir(tmp_path)) == ["units"]


@pytest.mark.skipif(not IS_ROOT, reason="runs a child as nobody")
def test_check_output_file_refuses_a_directory_the_effective_user_cannot_write(shared_dir):
    target = os.path.join(shared_dir, "attrs")

    def attempt() -> bool:
        try:
            fsutil.check_output_file(target)
        except OutputError as err:
            return err.cause == (f"cannot create files in {shared_dir}: permission denied for "
                                 f"uid {NOBODY}")
        return False

    assert _run_as_nobody(attempt) == 0
    assert os.listdir(shared_dir) == []


@pytest.mark.skipif(not IS_ROOT, reason="mounting needs root")
def test_check_output_file_refuses_a_read_only_file_system(tiny_tmpfs):
    subprocess.run(["mount", "-o", "remount,ro", tiny_tmpfs], check=True)
    try:
        with pytest.raises(OutputError) as caught:
            fsutil.check_output_file(os.path.join(tiny_tmpfs, "attrs"))
    finally:
        subprocess.run(["mount", "-o", "remount,rw", tiny_tmpfs], check=True)
    assert caught.value.cause == f"{tiny_tmpfs} is on a read-only file system"


@pytest.mark.skipif(not IS_ROOT, reason="runs a child as nobody")
def test_a_privilege_dropped_writer_links_through_its_own_proc_fd(shared_dir, monkeypatch):
    """The SSH writer's child drops to the user (which makes it non-dumpable): it can still
    link its anonymous file, so no by-name temp file exists while it writes."""
    os.chown(shared_dir, NOBODY, NOBODY)
    target = os.path.join(shared_dir, "frag")
    with open(target, "wb") as f:
        f.write(b"old\n")
    os.chown(target, NOBODY, NOBODY)

    def by_name(*args, **kwargs):
        raise AssertionError("fell back to a named temp file")

    monkeypatch.setattr(fsutil, "_write_named", by_name)

    def attempt() -> bool:
        dir_fd = os.open(shared_dir, os.O_RDONLY | os.O_DIRECTORY)
        fsutil.write_at(dir_fd, "frag", b"new\n", mode=0o600)
        return True

    assert _run_as_nobody(attempt) == 0
    with open(target, "rb") as f:
        assert f.read() == b"new\n"
    assert os.listdir(shared_dir) == ["frag"]
    assert os.stat(target).st_uid == NOBODY
