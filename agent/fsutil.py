"""Crash-safe file replacement and directory-fd walking for every file the agent writes.

A write is: random temp name in the target's directory (``O_CREAT|O_EXCL|O_NOFOLLOW``, exact
mode), write everything, fsync, rename over the target, fsync the directory. The rename is the
commit point: before it, any failure (an ``OSError``, ``KeyboardInterrupt``, the ``SystemExit``
a SIGTERM handler raises) removes the temp file and leaves the old target as it was. Renaming
replaces a symlink planted at the target name instead of following it.

Everything works relative to a directory fd so the SSH writer can walk a user's home with
``O_NOFOLLOW`` on each component and reuse the same primitive. Two runs writing one target at
once serialise on an ``flock``: as root on a lock file in the root-only ``/run/cl-metadata``
(any user can open ``/run/metadata`` and would otherwise be able to hold the lock), otherwise on
the target's directory.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
import time
import zlib
from typing import Callable, Iterator, Optional, Tuple, Union

from cl_metadata.errors import OutputError

PathLike = Union[str, "os.PathLike[str]"]

DIR_MODE = 0o755
LOCK_DIR = "/run/cl-metadata"  # root-only (tmpfiles.d creates it 0700); root's lock files
LOCK_TIMEOUT = 60.0  # seconds; a lock held longer (any reader can flock a directory) is an error
_LOCK_POLL = 0.1
_TEMP_ATTEMPTS = 32  # random names are 96 bits: a collision means someone planted files

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_TEMP_FLAGS = os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC


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
        # a cheap digest is enough: two targets sharing a lock only serialise needlessly
        raw = target.encode("utf-8", "surrogateescape")
        name = f"{zlib.crc32(raw):08x}-{zlib.adler32(raw):08x}-{len(raw)}"
        return os.open(name + ".lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                       0o600, dir_fd=lock_dir)
    finally:
        os.close(lock_dir)


@contextlib.contextmanager
def target_lock(dir_fd: int, target: str, *, timeout: float = LOCK_TIMEOUT) -> Iterator[None]:
    fd = _lock_fd(dir_fd, os.path.abspath(target))
    try:
        with dir_lock(fd, timeout=timeout):
            yield
    finally:
        os.close(fd)


# --- files -----------------------------------------------------------------------------------

def temp_name(name: str) -> str:
    """``.<name>.<random>``: hidden, next to the target, unguessable."""
    return f".{name}.{os.urandom(12).hex()}"  # what secrets.token_hex does, without hashlib


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


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def write_at(dir_fd: int, name: str, data: bytes, *, mode: int) -> None:
    """Atomically replace ``name`` inside ``dir_fd`` with ``data`` (the caller holds the lock).

    Raises ``OSError`` whose ``strerror`` names the failed step. Until the rename nothing visible
    changes; on any exception the temp file is removed.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError("data must be bytes")
    if not name or "/" in name or name in (".", ".."):
        raise ValueError(f"not a single path component: {name!r}")
    fd = -1
    tmp = None
    renamed = False
    try:
        fd, tmp = _create_temp(dir_fd, name, mode)
        try:
            os.fchmod(fd, mode)  # exact mode despite the umask; the file is still empty
            _write_all(fd, data)
        except OSError as err:
            raise _fail(err, "writing") from err
        try:
            os.fsync(fd)
        except OSError as err:
            raise _fail(err, "syncing the file") from err
        os.close(fd)
        fd = -1
        try:
            os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except OSError as err:
            raise _fail(err, "renaming into place") from err
        renamed = True
        try:
            os.fsync(dir_fd)
        except OSError as err:
            raise _fail(err, "syncing the directory (the new file is in place)") from err
    except BaseException:
        if fd >= 0:
            os.close(fd)
        if tmp is not None and not renamed:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=dir_fd)
        raise


def remove_at(dir_fd: int, name: str) -> bool:
    """Unlink ``name`` in ``dir_fd`` (a symlink itself, never its target). False if absent."""
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


def atomic_write(path: PathLike, data: bytes, *, mode: int, make_parents: bool = True,
                 lock_timeout: float = LOCK_TIMEOUT) -> None:
    """Replace the file at ``path`` with ``data`` and ``mode``, atomically and durably.

    Missing parent directories are created 0755 when ``make_parents``. Raises ``OutputError``
    (target = path); the old file is untouched unless the rename already happened.
    """
    target = os.fspath(path)
    directory, name = os.path.split(os.path.abspath(target))
    if make_parents:
        try:
            create_parents(target)
        except OSError as err:
            raise OutputError(
                f"creating parent directories: {os.strerror(err.errno or errno.EIO)}",
                target=target) from err
    try:
        dir_fd = open_dir(directory)
    except OSError as err:
        raise OutputError(f"cannot open the directory: {os.strerror(err.errno or errno.EIO)}",
                          target=target) from err
    try:
        with target_lock(dir_fd, target, timeout=lock_timeout):
            write_at(dir_fd, name, data, mode=mode)
    except OSError as err:
        raise OutputError(describe(err), target=target) from err
    finally:
        os.close(dir_fd)


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
