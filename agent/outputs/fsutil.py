"""Crash-safe file replacement, the rules for output paths, and directory-fd walking.

A write is: an anonymous file in the target's directory (``O_TMPFILE``, so it has no name
yet), write everything, fsync, then give it a name with ``linkat`` through
``/proc/self/fd``. When the target does not exist yet the file is linked straight to the
target's name; otherwise (``linkat`` cannot replace a name) it is linked to a hidden temp name
``.<target>.<24 hex digits>`` and renamed over the target. Then the directory is fsynced. The
rename (or the direct link) is the commit point: before it, any failure (an ``OSError``,
``KeyboardInterrupt``, the ``SystemExit`` a SIGTERM handler raises) removes the temp name and
leaves the old target as it was. Where ``O_TMPFILE`` or ``/proc`` is missing (vfat, old
kernels) the temp file is created by name instead (``O_CREAT|O_EXCL|O_NOFOLLOW``, exact mode).

No kill, not even SIGKILL, can leave a temp file behind for good:

- killed before the link: the anonymous file had no name and the kernel frees it;
- killed between the link to the temp name and the rename (or anywhere in the by-name
  fallback): a ``.<target>.<hex>`` file is stranded, and the next write or removal of that
  target deletes it. Every writer of a target holds the target's lock for as long as its temp
  name exists, so a temp name found under the lock belongs to a dead writer. Only names of
  exactly that pattern are deleted, only regular files owned by our effective uid (what we
  could have left), never following a symlink: a symlink of that name is someone else's and
  stays.

Output paths (``atomic_write``; ``check_output_file``/``check_output_dir`` say the same before
the platform is asked): an existing target must be a regular file; a symlink, FIFO, device or
directory is refused, never replaced (the SSH writer's ``write_at`` replaces a fragment symlink
instead: it runs as the user, inside the user's own directory). Missing directories are created
(0755) only under ``CREATABLE_ROOT`` (``/run``: ``/run/metadata`` may not exist yet when a unit
runs before tmpfiles); anywhere else a missing directory is an error, so a typo never creates a
tree. ``-``, ``/dev/stdout``, ``/proc/self/fd/1`` and ``/dev/fd/1`` mean standard output.

Everything works relative to a directory fd so the SSH writer can walk a user's home with
``O_NOFOLLOW`` on each component and reuse the same primitive. Two runs writing one target at
once serialise on an ``flock``: as root on a lock file in the root-only ``/run/cl-metadata``
named after the directory's device and inode and the target's name (any user can open
``/run/metadata`` and would otherwise be able to hold the lock; two spellings of one directory
share the lock), otherwise on the target's directory.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
import sys
import time
import zlib
from typing import Callable, Iterable, Iterator, Mapping, Optional, Tuple, Union

from cl_metadata.errors import OutputError

PathLike = Union[str, "os.PathLike[str]"]

DIR_MODE = 0o755
CREATABLE_ROOT = "/run"  # missing directories are created only below this one
STDOUT_NAMES = frozenset({"-", "/dev/stdout", "/proc/self/fd/1", "/dev/fd/1"})
LOCK_DIR = "/run/cl-metadata"  # root-only (tmpfiles.d creates it 0700); root's lock files
LOCK_TIMEOUT = 60.0  # seconds; a lock held longer (any reader can flock a directory) is an error
_LOCK_POLL = 0.1
_TEMP_ATTEMPTS = 32  # random names are 96 bits: a collision means someone planted files
_TEMP_HEX_DIGITS = 24  # temp_name's random part; the sweep matches exactly this shape

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_TEMP_FLAGS = os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC
_ANON_FLAGS = getattr(os, "O_TMPFILE", 0) | os.O_WRONLY | os.O_CLOEXEC  # linkable: no O_EXCL
# O_TMPFILE unknown to the kernel (EISDIR) or the filesystem (EOPNOTSUPP): create by name
_NO_ANON_FILE = frozenset({errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL})
# /proc/self/fd missing or hidden: the anonymous file cannot be linked, create by name
_NO_PROC_LINK = frozenset({errno.ENOENT, errno.ENOTDIR, errno.EACCES, errno.EPERM, errno.ELOOP,
                           errno.EOPNOTSUPP})
_KINDS = ((stat.S_ISLNK, "is a symbolic link; refusing to replace it", errno.ELOOP),
          (stat.S_ISDIR, "is a directory", errno.EISDIR),
          (stat.S_ISFIFO, "is a FIFO, not a regular file", errno.EINVAL),
          (stat.S_ISCHR, "is a character device, not a regular file", errno.EINVAL),
          (stat.S_ISBLK, "is a block device, not a regular file", errno.EINVAL),
          (stat.S_ISSOCK, "is a socket, not a regular file", errno.EINVAL))


class SymlinkRefused(OSError):
    """A directory we walk through is a symbolic link (``O_NOFOLLOW`` said ``ELOOP``)."""


def _fail(err: OSError, step: str) -> OSError:
    """The same error with the step that failed in ``strerror`` (no paths, no data)."""
    code = err.errno or errno.EIO
    return OSError(code, f"{step}: {os.strerror(code)}")


def describe(err: BaseException) -> str:
    """A one-line cause for an ``OutputError``."""
    if isinstance(err, OSError) and err.strerror:
        return err.strerror
    return str(err) or type(err).__name__


# --- directories -----------------------------------------------------------------------------

def open_dir(path: PathLike) -> int:
    """An fd for a directory given by a trusted path (symlinks in it are followed)."""
    return os.open(os.fspath(path), _DIR_FLAGS)


def open_dir_nofollow(name: str, dir_fd: int, *, create_mode: Optional[int] = None) -> int:
    """Open the directory ``name`` inside ``dir_fd`` without following a symlink.

    With ``create_mode`` a missing directory is created with that mode (reduced by the umask,
    never widened) and the parent fsynced. Raises ``SymlinkRefused`` for a symlink,
    ``NotADirectoryError`` for anything else that is not a directory, ``FileNotFoundError`` when
    missing and not to be created.
    """
    if not name or "/" in name or name in (".", ".."):
        raise ValueError(f"not a single path component: {name!r}")
    flags = _DIR_FLAGS | os.O_NOFOLLOW
    for _ in range(2):
        try:
            return os.open(name, flags, dir_fd=dir_fd)
        except FileNotFoundError:
            if create_mode is None:
                raise
            try:
                os.mkdir(name, create_mode, dir_fd=dir_fd)
            except FileExistsError:
                pass  # created concurrently: open whatever is there now, still without following
            else:
                os.fsync(dir_fd)
        except OSError as err:
            if err.errno not in (errno.ELOOP, errno.ENOTDIR):
                raise
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            if stat.S_ISLNK(st.st_mode):
                raise SymlinkRefused(errno.ELOOP, f"{name} is a symbolic link") from None
            raise NotADirectoryError(errno.ENOTDIR, f"{name} is not a directory") from None
    raise FileNotFoundError(errno.ENOENT, f"{name} disappeared while being created")


def create_parents(path: PathLike, mode: int = DIR_MODE) -> None:
    """``mkdir -p`` for the parent of ``path``; directories we create get exactly ``mode``."""
    parent = os.path.dirname(os.path.abspath(os.fspath(path)))
    missing = []
    while not os.path.isdir(parent):
        missing.append(parent)
        up = os.path.dirname(parent)
        if up == parent:
            break
        parent = up
    for directory in reversed(missing):
        try:
            os.mkdir(directory, mode)
        except FileExistsError:
            continue
        fd = os.open(directory, _DIR_FLAGS | os.O_NOFOLLOW)
        try:
            # Only an empty directory we just made: widening it past the umask exposes nothing.
            if stat.S_IMODE(os.fstat(fd).st_mode) != mode:
                os.fchmod(fd, mode)
        finally:
            os.close(fd)
        _fsync_path(os.path.dirname(directory))


def _fsync_path(directory: str) -> None:
    fd = os.open(directory, _DIR_FLAGS)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def dir_lock(dir_fd: int, *, timeout: float = LOCK_TIMEOUT,
             clock: Callable[[], float] = time.monotonic,
             sleep: Callable[[float], None] = time.sleep) -> Iterator[None]:
    """Hold an exclusive ``flock`` on an fd (a directory or a lock file) for the block.

    Polls instead of blocking, so waiting is bounded by ``timeout`` and ends in
    ``OSError(EAGAIN)``.
    """
    end = clock() + timeout
    while True:
        try:
            fcntl.flock(dir_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if clock() >= end:
                raise OSError(errno.EAGAIN,
                              f"another writer holds the lock (waited {timeout:g} s)"
                              ) from None
            sleep(_LOCK_POLL)
    try:
        yield
    finally:
        fcntl.flock(dir_fd, fcntl.LOCK_UN)


def _lock_fd(dir_fd: int, target: str) -> int:
    """The fd to ``flock`` for writing ``target``: see the module docstring for why."""
    if os.geteuid() != 0:
        return os.dup(dir_fd)
    os.makedirs(LOCK_DIR, mode=0o700, exist_ok=True)
    lock_dir = os.open(LOCK_DIR, _DIR_FLAGS | os.O_NOFOLLOW)
    try:
        st = os.fstat(lock_dir)
        if st.st_uid != 0 or st.st_mode & 0o077:
            raise OSError(errno.EPERM, f"{LOCK_DIR} is not a root-only directory")
        # The directory's identity, not its spelling: /var/run/x and /run/x are one target, and
        # its writers must exclude each other (the temp sweep relies on it). A cheap digest of
        # the name is enough: two targets sharing a lock only serialise needlessly.
        where = os.fstat(dir_fd)
        raw = os.path.basename(target).encode("utf-8", "surrogateescape")
        name = (f"{where.st_dev:x}-{where.st_ino:x}-{zlib.crc32(raw):08x}-"
                f"{zlib.adler32(raw):08x}-{len(raw)}")
        return os.open(name + ".lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                       0o600, dir_fd=lock_dir)
    finally:
        os.close(lock_dir)


@contextlib.contextmanager
def target_lock(dir_fd: int, target: str, *, timeout: float = LOCK_TIMEOUT) -> Iterator[None]:
    """Hold the lock every writer of ``target`` (a file in ``dir_fd``) takes."""
    fd = _lock_fd(dir_fd, os.path.abspath(target))
    try:
        with dir_lock(fd, timeout=timeout):
            yield
    finally:
        os.close(fd)


# --- files -----------------------------------------------------------------------------------

def temp_name(name: str) -> str:
    """``.<name>.<random>``: hidden, next to the target, unguessable."""
    # what secrets.token_hex does, without hashlib
    return f".{name}.{os.urandom(_TEMP_HEX_DIGITS // 2).hex()}"


def is_temp_name(entry: str, name: str) -> bool:
    """True when ``entry`` has exactly the shape ``temp_name(name)`` gives."""
    prefix = f".{name}."
    tail = entry[len(prefix):]
    return (entry.startswith(prefix) and len(tail) == _TEMP_HEX_DIGITS
            and all(c in "0123456789abcdef" for c in tail))


def sweep_stale_temps(dir_fd: int, name: str) -> int:
    """Delete the temp files a killed writer of ``name`` left in ``dir_fd``; how many went.

    Call it holding the target's lock (see the module docstring for why that makes every
    match stale). Only regular files of exactly the temp-name shape owned by our effective uid
    are deleted; a symlink is never followed, nor deleted. Best effort: housekeeping never fails
    a write (a directory we may write but not list is swept by nobody).
    """
    try:
        entries = os.listdir(dir_fd)
    except OSError:
        return 0
    euid = os.geteuid()
    removed = 0
    for entry in entries:
        if not is_temp_name(entry, name):
            continue
        try:
            st = os.stat(entry, dir_fd=dir_fd, follow_symlinks=False)
            if not stat.S_ISREG(st.st_mode) or st.st_uid != euid:
                continue
            # Swapped for a symlink since the stat? unlink removes the name, never a target.
            os.unlink(entry, dir_fd=dir_fd)
        except OSError:
            continue
        removed += 1
    return removed


def _create_temp(dir_fd: int, name: str, mode: int) -> Tuple[int, str]:
    for _ in range(_TEMP_ATTEMPTS):
        candidate = temp_name(name)
        try:
            fd = os.open(candidate, _TEMP_FLAGS, mode, dir_fd=dir_fd)
        except FileExistsError:
            continue  # planted or a collision: never reuse or follow it, pick another name
        except OSError as err:
            raise _fail(err, "creating a temporary file") from err
        return fd, candidate
    raise OSError(errno.EEXIST, "creating a temporary file: every random name was taken")


def _open_anonymous(dir_fd: int, mode: int) -> Optional[int]:
    """An ``O_TMPFILE`` fd in ``dir_fd``, or None where the kernel or filesystem has none."""
    if not _ANON_FLAGS & ~(os.O_WRONLY | os.O_CLOEXEC):
        return None  # this Python has no O_TMPFILE
    try:
        return os.open(".", _ANON_FLAGS, mode, dir_fd=dir_fd)
    except OSError as err:
        if err.errno in _NO_ANON_FILE:
            return None
        raise _fail(err, "creating a temporary file") from err


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _fill(fd: int, data: bytes, mode: int) -> None:
    """Exact mode, content, fsync: the file is complete before it gets its final name."""
    try:
        os.fchmod(fd, mode)  # exact mode despite the umask; the file is still empty
        _write_all(fd, data)
    except OSError as err:
        raise _fail(err, "writing") from err
    try:
        os.fsync(fd)
    except OSError as err:
        raise _fail(err, "syncing the file") from err


def _rename_into_place(dir_fd: int, tmp: str, name: str) -> None:
    """Rename ``tmp`` over ``name``; on any failure ``tmp`` is removed."""
    try:
        os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException as err:
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=dir_fd)
        if isinstance(err, OSError):
            raise _fail(err, "renaming into place") from err
        raise


def _publish(fd: int, dir_fd: int, name: str) -> bool:
    """Give the complete anonymous file ``fd`` the name ``name``; False if it cannot be linked.

    A missing target gets the file directly (no temp name ever exists); an existing one is
    replaced through a temp name, the one window a kill can strand a file in.
    """
    source = f"/proc/self/fd/{fd}"  # os.link follows it: linkat(AT_SYMLINK_FOLLOW)
    try:
        os.link(source, name, dst_dir_fd=dir_fd)
        return True
    except FileExistsError:
        pass
    except OSError as err:
        if err.errno in _NO_PROC_LINK:
            return False
        raise _fail(err, "linking the new file") from err
    for _ in range(_TEMP_ATTEMPTS):
        tmp = temp_name(name)
        try:
            os.link(source, tmp, dst_dir_fd=dir_fd)
        except FileExistsError:
            continue  # planted or a collision: pick another name
        except OSError as err:
            raise _fail(err, "linking the new file") from err
        _rename_into_place(dir_fd, tmp, name)
        return True
    raise OSError(errno.EEXIST, "creating a temporary file: every random name was taken")


def _write_named(dir_fd: int, name: str, data: bytes, mode: int) -> None:
    """The by-name fallback: temp file, fill, rename; the temp file is removed on failure."""
    fd, tmp = _create_temp(dir_fd, name, mode)
    try:
        _fill(fd, data, mode)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=dir_fd)
        raise
    os.close(fd)
    _rename_into_place(dir_fd, tmp, name)


def write_at(dir_fd: int, name: str, data: bytes, *, mode: int) -> None:
    """Atomically replace ``name`` inside ``dir_fd`` with ``data`` (the caller holds the lock).

    Stale temp files of ``name`` are swept first. Raises ``OSError`` whose ``strerror`` names
    the failed step. Until the commit nothing visible changes; on any exception no temp file is
    left. Whatever is at ``name`` (a symlink too) is replaced, never followed.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError("data must be bytes")
    if not name or "/" in name or name in (".", ".."):
        raise ValueError(f"not a single path component: {name!r}")
    sweep_stale_temps(dir_fd, name)
    fd = _open_anonymous(dir_fd, mode)
    if fd is None:
        published = False
    else:
        try:
            _fill(fd, data, mode)
            published = _publish(fd, dir_fd, name)
        finally:
            os.close(fd)  # unlinked or not, an anonymous file dies with its last fd
    if not published:
        _write_named(dir_fd, name, data, mode)
    try:
        os.fsync(dir_fd)
    except OSError as err:
        raise _fail(err, "syncing the directory (the new file is in place)") from err


def remove_at(dir_fd: int, name: str) -> bool:
    """Unlink ``name`` in ``dir_fd`` (a symlink itself, never its target). False if absent.

    Stale temp files of ``name`` go too (the caller holds the lock).
    """
    sweep_stale_temps(dir_fd, name)
    try:
        os.unlink(name, dir_fd=dir_fd)
    except FileNotFoundError:
        return False
    except OSError as err:
        raise _fail(err, "removing") from err
    try:
        os.fsync(dir_fd)
    except OSError as err:
        raise _fail(err, "syncing the directory") from err
    return True


# --- output paths ----------------------------------------------------------------------------

def is_stdout(path: PathLike) -> bool:
    """True for the spellings of standard output: ``-``, ``/dev/stdout``, ``/proc/self/fd/1``."""
    return os.fspath(path) in STDOUT_NAMES


def write_stdout(data: bytes) -> None:
    """Write ``data`` to standard output (fd 1) and nothing else; raises ``OutputError``."""
    try:
        sys.stdout.flush()
        _write_all(1, data)
    except (OSError, ValueError) as err:
        cause = describe(err) if isinstance(err, OSError) else "closed"
        raise OutputError(f"writing: {cause}", target="standard output") from err


def _refusal(st: os.stat_result) -> Optional[Tuple[int, str]]:
    """``(errno, why)`` when something of this kind must not be replaced, else None."""
    if stat.S_ISREG(st.st_mode):
        return None
    for test, why, code in _KINDS:
        if test(st.st_mode):
            return code, why
    return errno.EINVAL, "is not a regular file"


def _check_replaceable(dir_fd: int, name: str) -> None:
    """Raise ``OSError`` when ``name`` exists and is anything but a regular file."""
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return
    refusal = _refusal(st)
    if refusal is not None:
        raise OSError(*refusal)


def _nearest_existing(directory: str) -> str:
    """``directory`` or its closest ancestor that exists (symlinks followed)."""
    while not os.path.exists(directory):
        up = os.path.dirname(directory)
        if up == directory:
            break
        directory = up
    return directory


def _creatable(directory: str) -> bool:
    """True when a missing ``directory`` lies below ``CREATABLE_ROOT``, also once resolved."""
    root = os.path.abspath(CREATABLE_ROOT)
    if not os.path.abspath(directory).startswith(root.rstrip("/") + "/"):
        return False
    real_root = os.path.realpath(root)
    existing = os.path.realpath(_nearest_existing(directory))
    return existing == real_root or existing.startswith(real_root.rstrip("/") + "/")


def _directory_problem(directory: str) -> str:
    """Why files cannot be created in ``directory`` (missing ones only below /run), or ''."""
    if os.path.isdir(directory):
        existing = directory
    elif os.path.lexists(directory):
        return f"{directory} is not a directory"
    elif not _creatable(directory):
        return (f"directory {directory} does not exist (only directories below "
                f"{CREATABLE_ROOT} are created)")
    else:
        existing = _nearest_existing(directory)
        if not os.path.isdir(existing):
            return f"{existing} is not a directory"
    try:
        if os.statvfs(existing).f_flag & os.ST_RDONLY:
            return f"{existing} is on a read-only file system"
    except OSError as err:
        return f"{existing}: {os.strerror(err.errno or errno.EIO)}"
    if not os.access(existing, os.W_OK | os.X_OK, effective_ids=True):
        return f"cannot create files in {existing}: permission denied for uid {os.geteuid()}"
    return ""


def check_output_file(path: PathLike) -> None:
    """Refuse (``OutputError``) a file output this run could not write, before any fetching.

    Standard output is always fine. Otherwise the path must be missing or a regular file (not
    a symlink, FIFO, device or directory), and its directory must exist (below ``/run``: be
    creatable) and be writable with our effective ids.
    """
    if is_stdout(path):
        return
    target = os.fspath(path)
    try:
        st = os.lstat(target)
    except FileNotFoundError:
        st = None
    except OSError as err:
        raise OutputError(os.strerror(err.errno or errno.EIO), target=target) from None
    refusal = None if st is None else _refusal(st)
    if refusal is not None:
        raise OutputError(refusal[1], target=target)
    problem = _directory_problem(os.path.dirname(os.path.abspath(target)))
    if problem:
        raise OutputError(problem, target=target)


def check_output_dir(path: PathLike) -> None:
    """Refuse (``OutputError``) an output directory (network units) this run could not use.

    It must be a real directory (not a symlink) or missing; a missing one is created, its
    parent only below ``/run``. It must be writable with our effective ids.
    """
    target = os.fspath(path)
    if is_stdout(target):
        raise OutputError("a directory is needed, not standard output", target=target)
    try:
        st = os.lstat(target)
    except FileNotFoundError:
        st = None
    except OSError as err:
        raise OutputError(os.strerror(err.errno or errno.EIO), target=target) from None
    if st is not None and stat.S_ISLNK(st.st_mode):
        raise OutputError("is a symbolic link; refusing to follow it", target=target)
    if st is not None and not stat.S_ISDIR(st.st_mode):
        raise OutputError("is not a directory", target=target)
    absolute = os.path.abspath(target)
    problem = _directory_problem(absolute if st is not None else os.path.dirname(absolute))
    if problem:
        raise OutputError(problem, target=target)


def check_outputs(files: Iterable[Optional[PathLike]] = (),
                  directories: Iterable[Optional[PathLike]] = ()) -> None:
    """``check_output_file`` / ``check_output_dir`` for each path given (None skipped)."""
    for path in files:
        if path is not None:
            check_output_file(path)
    for path in directories:
        if path is not None:
            check_output_dir(path)


def make_output_dir(path: PathLike) -> None:
    """Make sure the output directory ``path`` exists: created 0755 (its parents only below
    ``/run``) when missing, refused when a symlink or not a directory. Raises ``OutputError``."""
    check_output_dir(path)
    target = os.fspath(path)
    if os.path.isdir(target):
        return
    try:
        create_parents(os.path.join(target, "x"))
    except OSError as err:
        raise OutputError(f"creating the directory: {os.strerror(err.errno or errno.EIO)}",
                          target=target) from err


def _ensure_parent(target: str, make_parents: bool) -> None:
    directory = os.path.dirname(os.path.abspath(target))
    if os.path.isdir(directory):
        return
    if not (make_parents and _creatable(directory)):
        raise OutputError(f"directory {directory} does not exist" + (
            f" (only directories below {CREATABLE_ROOT} are created)" if make_parents else ""),
            target=target)
    try:
        create_parents(target)
    except OSError as err:
        raise OutputError(
            f"creating parent directories: {os.strerror(err.errno or errno.EIO)}",
            target=target) from err


def atomic_write(path: PathLike, data: bytes, *, mode: int, make_parents: bool = True,
                 lock_timeout: float = LOCK_TIMEOUT) -> None:
    """Replace the file at ``path`` with ``data`` and ``mode``, atomically and durably.

    An existing target must be a regular file: a symlink, FIFO, device or directory is refused
    and left alone. Missing parent directories are created 0755 when ``make_parents`` and they
    lie below ``CREATABLE_ROOT``; elsewhere they are an error. Raises ``OutputError``
    (target = path); the old file is untouched unless the rename already happened.
    """
    target = os.fspath(path)
    directory, name = os.path.split(os.path.abspath(target))
    _ensure_parent(target, make_parents)
    try:
        dir_fd = open_dir(directory)
    except OSError as err:
        raise OutputError(f"cannot open the directory: {os.strerror(err.errno or errno.EIO)}",
                          target=target) from err
    try:
        with target_lock(dir_fd, target, timeout=lock_timeout):
            # Checked under the lock; a symlink planted after the check is replaced by the
            # rename, never followed.
            _check_replaceable(dir_fd, name)
            write_at(dir_fd, name, data, mode=mode)
    except OSError as err:
        raise OutputError(describe(err), target=target) from err
    finally:
        os.close(dir_fd)


def write_into_dir(directory: PathLike, files: Mapping[str, bytes], *, mode: int) -> None:
    """Each of ``files`` (name → bytes) atomically into the output directory ``directory``
    (``make_output_dir``'s rules), in name order. Files of earlier runs that are not named
    stay: the directory may hold an administrator's own."""
    target = os.fspath(directory)
    make_output_dir(target)
    for name in sorted(files):
        atomic_write(os.path.join(target, name), files[name], mode=mode)


def write_output(path: PathLike, data: bytes, *, mode: int) -> None:
    """``atomic_write``, or ``write_stdout`` when ``path`` spells standard output."""
    if is_stdout(path):
        write_stdout(data)
    else:
        atomic_write(path, data, mode=mode)


def remove(path: PathLike, *, lock_timeout: float = LOCK_TIMEOUT) -> bool:
    """Remove the file at ``path``; False when it (or its directory) does not exist."""
    target = os.fspath(path)
    directory, name = os.path.split(os.path.abspath(target))
    try:
        dir_fd = open_dir(directory)
    except FileNotFoundError:
        return False
    except OSError as err:
        raise OutputError(f"cannot open the directory: {os.strerror(err.errno or errno.EIO)}",
                          target=target) from err
    try:
        with target_lock(dir_fd, target, timeout=lock_timeout):
            return remove_at(dir_fd, name)
    except OSError as err:
        raise OutputError(describe(err), target=target) from err
    finally:
        os.close(dir_fd)
