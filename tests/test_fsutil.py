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

from cl_metadata import fsutil
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


def assert_untouched(target):
    assert target.read_bytes() == b"OLD=1\n"
    assert mode_of(target) == 0o640
    assert leftovers(target.parent) == []


# --- success ---------------------------------------------------------------------------------

@pytest.mark.parametrize("mask", [0o077, 0o000, 0o022])
def test_writes_exact_content_and_mode_whatever_the_umask(tmp_path, umask, mask):
    umask(mask)
    target = tmp_path / "file"
    fsutil.atomic_write(target, b"A=1\nB=2\n", mode=0o644)
    assert target.read_bytes() == b"A=1\nB=2\n"
    assert mode_of(target) == 0o644
    assert os.listdir(tmp_path) == ["file"]


def test_replaces_an_existing_file_by_rename(old_file):
    inode_before = os.stat(old_file).st_ino
    fsutil.atomic_write(old_file, b"NEW=2\n", mode=0o600)
    assert old_file.read_bytes() == b"NEW=2\n"
    assert mode_of(old_file) == 0o600
    assert os.stat(old_file).st_ino != inode_before  # a new inode, not an in-place rewrite
    assert leftovers(old_file.parent) == []


def test_empty_data_writes_an_empty_file(tmp_path):
    fsutil.atomic_write(tmp_path / "empty", b"", mode=0o644)
    assert (tmp_path / "empty").read_bytes() == b""


def test_missing_parents_are_created_0755_despite_the_umask(tmp_path, umask):
    umask(0o077)
    target = tmp_path / "run" / "metadata" / "coreos"
    fsutil.atomic_write(target, b"X=1\n", mode=0o644)
    assert target.read_bytes() == b"X=1\n"
    assert mode_of(tmp_path / "run") == 0o755
    assert mode_of(tmp_path / "run" / "metadata") == 0o755


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
    assert "No such file or directory" in caught.value.cause
    assert not (tmp_path / "missing").exists()


def test_a_symlink_at_the_target_is_replaced_not_followed(tmp_path):
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious\n")
    target = tmp_path / "attrs"
    target.symlink_to(victim)
    fsutil.atomic_write(target, b"A=1\n", mode=0o644)
    assert not target.is_symlink()
    assert target.read_bytes() == b"A=1\n"
    assert victim.read_bytes() == b"precious\n"


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
                                                         cause):
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
def test_an_interruption_mid_write_removes_the_temp_file(old_file, monkeypatch, interruption):
    monkeypatch.setattr(fsutil.os, "fsync", _fail_with(interruption()))
    with pytest.raises(interruption):
        fsutil.atomic_write(old_file, b"NEW=2\n", mode=0o644)
    monkeypatch.undo()
    assert_untouched(old_file)


def test_sigterm_mid_write_with_a_raising_handler(old_file, monkeypatch):
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
    assert caught.value.cause.startswith("renaming into place:")
    assert (target / "inside").read_bytes() == b"keep"
    assert leftovers(tmp_path) == []


def test_a_planted_temp_name_is_skipped_and_left_alone(tmp_path, monkeypatch):
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious\n")
    planted = tmp_path / ".attrs.planted"
    planted.symlink_to(victim)
    names = iter([".attrs.planted", ".attrs.fresh"])
    monkeypatch.setattr(fsutil, "temp_name", lambda name: next(names))
    fsutil.atomic_write(tmp_path / "attrs", b"A=1\n", mode=0o644)
    assert (tmp_path / "attrs").read_bytes() == b"A=1\n"
    assert victim.read_bytes() == b"precious\n"
    assert os.readlink(planted) == str(victim)
    assert leftovers(tmp_path) == [".attrs.planted"]


def test_when_every_temp_name_is_taken_nothing_is_written(old_file, monkeypatch):
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
