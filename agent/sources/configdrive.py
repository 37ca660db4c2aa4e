"""Config drives: find one by label, mount it read-only in a private directory, read files
strictly inside it, and always unmount.

Improvements over upstream (``docs/protocols.md``, ``docs/hardening.md``): every label and
fs type the caller lists is tried; the mount is ``ro,nosuid,nodev,noexec``; no symlink on the
drive is ever followed; exactly the mount root is unmounted and its directory removed on every
path out, including KeyboardInterrupt/SystemExit.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import stat
import time
from typing import Callable, Iterator, List, Optional, Sequence, Tuple

from cl_metadata.context import CONFIG_DRIVE_ENV
from cl_metadata.sources.deadline import Deadline
from cl_metadata.sources.labels import probe as probe_block_devices
from cl_metadata.errors import ConfigDriveError, ConfigDriveNotFound, InvalidMetadata, UsageError

log = logging.getLogger("cl_metadata")

DEFAULT_MAX_BYTES = 1 << 20
MOUNT_OPTIONS = "ro,nosuid,nodev,noexec"
MOUNT_PREFIX = "cl-metadata-drive-"
POLL_INTERVAL = 0.1  # seconds between looks at /dev/disk/by-label while udev catches up
# seconds between reads of the devices' own labels: a device node appears once its driver
# (loaded by the initrd unit) has found the disk, a second or so for a SATA CD-ROM drive
PROBE_INTERVAL = 1.0
COMMAND_TIMEOUT = 30.0  # per mount/umount call; a wedged CD-ROM must not hang the boot forever
# mount(8) error text in English whatever the image's locale; fixed PATH, no inherited env
_COMMAND_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"}

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: opening a FIFO must not wait for a writer before fstat() can refuse it
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY
_SYMLINK = "symlinks are not followed on a config drive"

# (labels, deadline) -> (device, label) or None: how devices udev has not linked yet are found
LabelProbe = Callable[[Sequence[str], Optional[Deadline]], Optional[Tuple[str, str]]]


class ConfigDrive:
    """Read-only access to the files under one root directory (a mount point or a plain dir)."""

    def __init__(self, root: str, source: str):
        self.root = root
        self.source = source
        self._closed = False

    def read(self, relpath: str, *, optional: bool = False,
             max_bytes: int = DEFAULT_MAX_BYTES) -> Optional[bytes]:
        """The file's bytes; ``None`` if it is missing and ``optional``."""
        with self._parent(relpath) as found:
            if found is None:
                return self._missing(relpath, optional)
            dir_fd, name = found
            try:
                fd = os.open(name, _FILE_FLAGS, dir_fd=dir_fd)
            except FileNotFoundError:
                return self._missing(relpath, optional)
            except OSError as exc:
                raise _open_error(relpath, exc) from None
        try:
            return _read_regular(fd, relpath, max_bytes)
        finally:
            os.close(fd)

    def read_text(self, relpath: str, *, optional: bool = False,
                  max_bytes: int = DEFAULT_MAX_BYTES) -> Optional[str]:
        data = self.read(relpath, optional=optional, max_bytes=max_bytes)
        return None if data is None else _decode(data, relpath)

    def read_json(self, relpath: str, *, optional: bool = False,
                  max_bytes: int = DEFAULT_MAX_BYTES) -> object:
        text = self.read_text(relpath, optional=optional, max_bytes=max_bytes)
        return None if text is None else _parse_json(text, relpath)

    def exists(self, relpath: str) -> bool:
        """True when ``relpath`` names a file or directory; a symlink is an error, not an answer."""
        with self._parent(relpath) as found:
            if found is None:
                return False
            dir_fd, name = found
            try:
                st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            except FileNotFoundError:
                return False
            except OSError as exc:
                raise _open_error(relpath, exc) from None
        if stat.S_ISLNK(st.st_mode):
            raise ConfigDriveError(_SYMLINK, source=relpath)
        return True

    def close(self) -> None:
        self._closed = True

    @contextlib.contextmanager
    def _parent(self, relpath: str) -> Iterator[Optional[Tuple[int, str]]]:
        """Yield (fd of the parent directory, final name), or None when a directory is missing.

        Each component is opened relative to the previous one with O_NOFOLLOW, so neither a
        symlink nor ``..`` can lead outside the root.
        """
        if self._closed:
            raise ConfigDriveError(f"{self.source} is no longer open", source=relpath)
        parts = _split(relpath)
        try:
            dir_fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise ConfigDriveError(f"cannot open {self.source}: {exc.strerror}",
                                   source=relpath) from None
        try:
            for name in parts[:-1]:
                try:
                    next_fd = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
                except FileNotFoundError:
                    yield None
                    return
                except OSError as exc:
                    if exc.errno == errno.ENOTDIR and not _is_symlink(name, dir_fd):
                        raise ConfigDriveError(f"{name} is not a directory",
                                               source=relpath) from None
                    raise _open_error(relpath, exc) from None
                os.close(dir_fd)
                dir_fd = next_fd
            yield dir_fd, parts[-1]
        finally:
            os.close(dir_fd)

    @staticmethod
    def _missing(relpath: str, optional: bool) -> None:
        if optional:
            return None
        raise ConfigDriveError("missing", source=relpath)


def _split(relpath: str) -> List[str]:
    if not isinstance(relpath, str) or not relpath.strip("/") or "\0" in relpath:
        raise ConfigDriveError("not a usable path on a config drive", source=repr(relpath))
    if relpath.startswith("/"):
        raise ConfigDriveError("absolute paths are not allowed on a config drive", source=relpath)
    parts = [p for p in relpath.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ConfigDriveError("'..' is not allowed on a config drive", source=relpath)
    return parts


def _is_symlink(name: str, dir_fd: int) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


def _open_error(relpath: str, exc: OSError) -> ConfigDriveError:
    # O_NOFOLLOW gives ELOOP for a final symlink; O_DIRECTORY turns a symlinked directory into
    # ENOTDIR, which the caller has already told apart from a plain file.
    if exc.errno in (errno.ELOOP, errno.ENOTDIR):
        return ConfigDriveError(_SYMLINK, source=relpath)
    return ConfigDriveError(f"cannot read: {exc.strerror}", source=relpath)


def _read_regular(fd: int, relpath: str, max_bytes: int) -> bytes:
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        raise ConfigDriveError("not a regular file", source=relpath)
    if st.st_size > max_bytes:
        raise ConfigDriveError(f"exceeds {max_bytes} bytes", source=relpath)
    chunks = []
    total = 0
    while total <= max_bytes:  # the size can lie (or grow): stop at max_bytes + 1 regardless
        try:
            chunk = os.read(fd, min(1 << 16, max_bytes + 1 - total))
        except OSError as exc:
            raise ConfigDriveError(f"cannot read: {exc.strerror}", source=relpath) from None
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    if total > max_bytes:
        raise ConfigDriveError(f"exceeds {max_bytes} bytes", source=relpath)
    return b"".join(chunks)


def _decode(data: bytes, relpath: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidMetadata(f"not valid UTF-8 (byte {exc.start})", source=relpath) from None


def _parse_json(text: str, relpath: str) -> object:
    """The one bounded JSON parser every metadata reader shares (size, nesting, constants)."""
    from cl_metadata.parsing import documents
    return documents.parse_json(text, relpath)


# --- finding a drive ---------------------------------------------------------------------------

def find_labelled_device(labels: Sequence[str], *, by_label_dir: str = "/dev/disk/by-label",
                         wait: float = 0.0, deadline: Optional[Deadline] = None,
                         sleep: Callable[[float], None] = time.sleep,
                         clock: Callable[[], float] = time.monotonic,
                         probe: Optional[LabelProbe] = None) -> Tuple[str, str]:
    """(device path, label) of the first label present under ``by_label_dir``.

    Polls every POLL_INTERVAL for up to ``wait`` seconds (never past ``deadline``). While a
    label is missing there, ``probe`` (when given: ``labels.probe``) reads the labels off the
    block devices themselves, once at first and then every PROBE_INTERVAL, and once more at
    the end of the wait: in the initrd udev has made no link yet, although the device is there.
    """
    budget = max(0.0, wait if deadline is None else deadline.cap(wait))
    end = clock() + budget
    next_probe = clock()
    while True:
        for label in labels:
            link = os.path.join(by_label_dir, label)
            if os.path.exists(link):  # follows the udev symlink: a dangling one is not a drive
                return os.path.realpath(link), label
        left = end - clock()
        if probe is not None and (left <= 0 or clock() >= next_probe):
            found = probe(labels, deadline)
            if found is not None:
                log.info("config drive: %s carries label %s (read from the device; no %s link)",
                         found[0], found[1], by_label_dir)
                return found
            next_probe = clock() + PROBE_INTERVAL
        if left <= 0:
            break
        sleep(min(POLL_INTERVAL, left))
    looked_for = " or ".join(labels) if labels else "(no labels given)"
    # the budget is what was left of the deadline (2.98491…): hundredths are plenty
    raise ConfigDriveNotFound(f"no drive labelled {looked_for} (waited {round(budget, 2):g} s)",
                              source=by_label_dir)


# --- mounting ----------------------------------------------------------------------------------

def _run(args: Sequence[str]) -> Tuple[int, str]:
    """Run a mount/umount command: (exit status, last line of its error output)."""
    import subprocess  # only a drive that must be mounted needs it

    try:
        proc = subprocess.run(list(args), stdin=subprocess.DEVNULL, capture_output=True,
                              env=_COMMAND_ENV, timeout=COMMAND_TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        return 124, f"timed out after {COMMAND_TIMEOUT:g} s"
    except OSError as exc:
        return 127, f"cannot run {args[0]}: {exc.strerror}"
    lines = proc.stderr.decode("utf-8", "replace").strip().splitlines()
    return proc.returncode, (lines[-1].strip() if lines else f"exit status {proc.returncode}")


def _mount(device: str, mountpoint: str, fs_types: Sequence[str]) -> str:
    last_error = "no filesystem types given"
    for fs_type in fs_types:
        status, last_error = _run(["mount", "-t", fs_type, "-o", MOUNT_OPTIONS, device,
                                   mountpoint])
        if status == 0:
            return fs_type
        log.debug("config drive: mount -t %s %s failed: %s", fs_type, device, last_error)
    raise ConfigDriveError(f"cannot mount (tried {', '.join(fs_types) or 'nothing'}): "
                           f"{last_error}", source=device)


def _unmount(mountpoint: str) -> bool:
    status, detail = _run(["umount", mountpoint])
    if status == 0:
        log.debug("config drive: unmounted %s", mountpoint)
        return True
    log.warning("config drive: umount %s failed (%s); detaching it lazily", mountpoint, detail)
    status, detail = _run(["umount", "-l", mountpoint])
    if status == 0:
        log.warning("config drive: lazily unmounted %s", mountpoint)
        return True
    log.error("config drive: cannot unmount %s: %s", mountpoint, detail)
    return False


def _release(mountpoint: str, mounted: bool) -> bool:
    """Unmount (if mounted) and remove the mount point; False when something stayed behind."""
    if (mounted or os.path.ismount(mountpoint)) and not _unmount(mountpoint):
        return False
    try:
        os.rmdir(mountpoint)
    except OSError as exc:
        log.error("config drive: cannot remove %s: %s", mountpoint, exc.strerror)
        return False
    return True


@contextlib.contextmanager
def _mounted(device: str, fs_types: Sequence[str], label: Optional[str]) -> Iterator[ConfigDrive]:
    import tempfile  # only a drive that must be mounted needs it

    mountpoint = tempfile.mkdtemp(prefix=MOUNT_PREFIX)  # mode 0700, unpredictable name
    mounted = False
    drive: Optional[ConfigDrive] = None
    try:
        fs_type = _mount(device, mountpoint, fs_types)
        mounted = True
        detail = f"{fs_type}, label {label}" if label else fs_type
        log.info("config drive: mounted %s (%s)", device, detail)
        drive = ConfigDrive(mountpoint, f"{device} (label {label})" if label else device)
        yield drive
    except BaseException:
        # also KeyboardInterrupt/SystemExit/GeneratorExit: the original error wins
        if drive is not None:
            drive.close()
        _release(mountpoint, mounted)
        raise
    drive.close()
    if not _release(mountpoint, mounted):
        raise ConfigDriveError(f"could not unmount {mountpoint}", source=device)


@contextlib.contextmanager
def _directory(path: str) -> Iterator[ConfigDrive]:
    log.info("config drive: using directory %s", path)
    drive = ConfigDrive(path, f"directory {path}")
    try:
        yield drive
    finally:
        drive.close()


def _require_block_device(device: str, link: str) -> None:
    try:
        is_block = stat.S_ISBLK(os.stat(device).st_mode)
    except OSError as exc:
        raise ConfigDriveError(f"{device}: {exc.strerror}", source=link) from None
    if not is_block:
        raise ConfigDriveError(f"points to {device}, not a block device", source=link)


def _choose(labels: Sequence[str], override: Optional[str], wait: float,
            premounted: Sequence[str], deadline: Optional[Deadline], fs_types: Sequence[str],
            by_label_dir: str, probe: Optional[LabelProbe]):
    if override is not None:
        path = os.path.abspath(override)
        if os.path.isdir(path):
            return _directory(path)
        try:
            is_block = stat.S_ISBLK(os.stat(path).st_mode)
        except OSError:
            is_block = False
        if not is_block:
            raise UsageError(f"{CONFIG_DRIVE_ENV}={override}: not a directory or a block device")
        return _mounted(path, fs_types, None)
    for directory in premounted:
        if os.path.isdir(directory):
            return _directory(directory)
    device, label = find_labelled_device(labels, by_label_dir=by_label_dir, wait=wait,
                                         deadline=deadline, probe=probe)
    _require_block_device(device, os.path.join(by_label_dir, label))
    return _mounted(device, fs_types, label)


@contextlib.contextmanager
def open_config_drive(labels: Sequence[str], *, override: Optional[str] = None,
                      wait: float = 0.0, premounted: Sequence[str] = (),
                      deadline: Optional[Deadline] = None,
                      fs_types: Sequence[str] = ("iso9660", "vfat"),
                      by_label_dir: str = "/dev/disk/by-label",
                      probe: Optional[LabelProbe] = probe_block_devices
                      ) -> Iterator[ConfigDrive]:
    """A context manager yielding a ``ConfigDrive``.

    Order: ``override`` (a directory or a block device, from $CL_METADATA_CONFIG_DRIVE), then
    the first existing ``premounted`` directory, then the first of ``labels`` found under
    ``by_label_dir`` (waiting up to ``wait`` seconds), or read off a block device by ``probe``
    while udev has not linked it (``None``: links only). Raises ``ConfigDriveNotFound`` when no
    drive is found, ``ConfigDriveError`` when one cannot be mounted, ``UsageError`` for a bad
    override.
    """
    with _choose(labels, override, wait, premounted, deadline, fs_types, by_label_dir,
                 probe) as drive:
        yield drive
