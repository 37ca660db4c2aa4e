"""SSH keys: validate what the platform served, then write one fragment file as the user.

The fragment is ``~USER/.ssh/authorized_keys.d/<fragment>`` (sshd needs an ``AuthorizedKeysFile``
drop-in naming it); ``authorized_keys`` itself is never touched. It is replaced on every run, so
keys removed on the platform disappear and keys deleted locally come back next boot; zero keys
remove it.

Every file operation under the home runs with the user's credentials: as root we fork a child
that drops supplementary groups, gid and uid for good, so the kernel refuses whatever the user
could not do (a symlink planted towards ``/root/.ssh`` or ``/etc`` gains nothing). On top of that
``.ssh`` and ``authorized_keys.d`` are opened with ``O_NOFOLLOW`` relative to the previous
directory fd and a symlink is refused outright. Nothing is ever chmod-ed or chown-ed.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import logging
import os
import pwd
import re
import signal
import stat
import struct
from typing import Callable, Iterable, List, NamedTuple, Sequence, Tuple

from cl_metadata.outputs import fsutil

from cl_metadata import log
from cl_metadata.errors import OutputError

logger = logging.getLogger("cl_metadata")

KNOWN_TYPES = frozenset({
    "ssh-rsa",
    "ssh-dss",
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
})
MAX_KEY_LENGTH = 16 * 1024  # bytes of one key line (an 8192-bit RSA key is ~1.4 KiB)
DEFAULT_FRAGMENT = "cl-metadata"
SSH_DIR = ".ssh"
FRAGMENT_DIR = "authorized_keys.d"
DIR_MODE = 0o700
FILE_MODE = 0o600

_LINE_BREAK = re.compile(r"[\r\n]")
_CONTROL_NOT_TAB = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_FIELD_SEPARATOR = re.compile(r"[ \t]+")
_BASE64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")
_OPTION_HINT = re.compile(r'[=",]')
_FRAGMENT_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.@-]{0,127}")


class SshKey(NamedTuple):
    """One validated public key: ``type`` is a known key type, ``blob`` canonical base64."""

    type: str
    blob: str
    comment: str = ""

    def line(self) -> str:
        return f"{self.type} {self.blob} {self.comment}" if self.comment else \
            f"{self.type} {self.blob}"


# --- validation ------------------------------------------------------------------------------

def _check_blob(key_type: str, blob: str) -> None:
    if len(blob) % 4 or not _BASE64.fullmatch(blob):
        raise ValueError("key data is not valid base64")
    try:
        raw = base64.b64decode(blob, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("key data is not valid base64") from None
    if base64.b64encode(raw).decode("ascii") != blob:
        raise ValueError("key data is not canonical base64")
    if len(raw) < 4:
        raise ValueError("key data is too short")
    (length,) = struct.unpack(">I", raw[:4])
    if 4 + length > len(raw):
        raise ValueError("key data is truncated")
    if raw[4:4 + length] != key_type.encode("ascii"):
        raise ValueError("key data is for a different key type")
    if len(raw) == 4 + length:
        raise ValueError("key data holds no key after the type")


def parse_key(line: str) -> SshKey:
    """Parse one ``type base64 [comment]`` line; raises ``ValueError(reason)``.

    Surrounding spaces, tabs and line breaks are ignored (bodies often end in a newline);
    anything else that is not a single plain line is refused: embedded line breaks, NUL or other
    control characters, more than 16 KiB, key options (``command=…`` and friends), unknown
    types, base64 that is not strict and canonical, key data whose embedded type differs. Tabs
    inside the comment become spaces. The reason never contains the key text.
    """
    if not isinstance(line, str):
        raise ValueError("not text")
    if len(line.encode("utf-8", "surrogatepass")) > MAX_KEY_LENGTH:
        raise ValueError(f"longer than {MAX_KEY_LENGTH // 1024} KiB")
    text = line.strip(" \t\r\n")
    if not text:
        raise ValueError("empty")
    if _LINE_BREAK.search(text):
        raise ValueError("spans more than one line")
    if _CONTROL_NOT_TAB.search(text):
        raise ValueError("contains a NUL or control character")
    fields = _FIELD_SEPARATOR.split(text, maxsplit=2)
    key_type = fields[0]
    if key_type not in KNOWN_TYPES:
        later = _FIELD_SEPARATOR.split(text)[1:]
        if _OPTION_HINT.search(key_type) or any(tok in KNOWN_TYPES for tok in later):
            raise ValueError("key options are not allowed")
        raise ValueError("unknown key type")
    if len(fields) < 2:
        raise ValueError("no key data")
    _check_blob(key_type, fields[1])
    comment = fields[2].replace("\t", " ") if len(fields) == 3 else ""
    if not comment.isprintable():
        raise ValueError("comment has unprintable characters")
    return SshKey(key_type, fields[1], comment)


def validate_keys(lines: Iterable[str]) -> Tuple[List[SshKey], List[str]]:
    """Valid keys (first of each type+blob kept, order kept) and the warnings to log.

    A warning reads ``ssh key #N dropped: <reason>`` with N the 1-based position in ``lines``
    (blank and ``#`` entries count for the position); past the first five dropped entries one
    last line ``... and M more ssh keys dropped`` counts the rest, so a platform serving
    200,000 bad lines costs six log lines. Blank entries and ``#`` comment lines are skipped
    silently; duplicates are dropped silently. Each entry must be one key: a multi-line
    document has to be split by the provider.
    """
    from cl_metadata.dropped import DroppedItems

    keys: List[SshKey] = []
    dropped = DroppedItems("ssh keys")
    seen = set()
    for number, line in enumerate(lines, start=1):
        if isinstance(line, str) and (not line.strip() or line.lstrip().startswith("#")):
            continue
        try:
            key = parse_key(line)
        except ValueError as err:
            dropped.add(f"ssh key #{number} dropped: {err}")
            continue
        if (key.type, key.blob) in seen:
            continue
        seen.add((key.type, key.blob))
        keys.append(key)
    return keys, dropped.lines()


# --- the user --------------------------------------------------------------------------------

def _target(name: object) -> str:
    text = str(name)
    return f"ssh keys for {text if text.isprintable() else ascii(text)}"


def _home_path_problem(home: object) -> str:
    if not isinstance(home, str) or not home:
        return "the user has no home directory"
    if not os.path.isabs(home):
        return f"home directory {home!r} is not an absolute path"
    if os.path.normpath(home) in ("/", "//"):
        return "home directory is /"
    return ""


def lookup_user(name: str) -> pwd.struct_passwd:
    """The passwd entry of ``name``, refused (``OutputError``) when keys cannot go there safely:
    unknown user, another user while not running as root (the writer could not become them),
    no home, home ``/``, home missing, home not owned by the user."""
    target = _target(name)
    try:
        user = pwd.getpwnam(name)
    except (KeyError, ValueError, TypeError):
        raise OutputError("no such user", target=target) from None
    euid = os.geteuid()
    if euid not in (0, user.pw_uid):
        raise OutputError(f"must run as root to write keys for another user (running as uid "
                          f"{euid})", target=target)
    problem = _home_path_problem(user.pw_dir)
    if problem:
        raise OutputError(problem, target=target)
    try:
        st = os.stat(user.pw_dir)
    except FileNotFoundError:
        raise OutputError(f"home directory {user.pw_dir} does not exist", target=target) from None
    except OSError as err:
        raise OutputError(f"home directory {user.pw_dir}: {os.strerror(err.errno)}",
                          target=target) from None
    if not stat.S_ISDIR(st.st_mode):
        raise OutputError(f"home directory {user.pw_dir} is not a directory", target=target)
    if st.st_uid != user.pw_uid:
        raise OutputError(f"home directory {user.pw_dir} is not owned by {user.pw_name}",
                          target=target)
    return user


# --- the work, done as the user --------------------------------------------------------------

class _Refused(Exception):
    """A directory is not acceptable (symlink, wrong owner); the message says which."""


def _not_owned(shown: str, owner: int, uid: int) -> str:
    return f"{shown} is owned by uid {owner}, not by the user (uid {uid})"


def _why_denied(name: str, parent_fd: int, uid: int, shown: str) -> str:
    """The reason behind an EACCES on ``name``: the kernel's "Permission denied" alone does not
    say which directory, nor that it belongs to someone else (a root-owned ``~/.ssh``)."""
    try:
        st = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
    except FileNotFoundError:
        return f"cannot create {shown}: permission denied"  # the parent is not writable
    except OSError:
        return f"{shown}: permission denied"  # the parent is not searchable either
    if st.st_uid != uid:
        return _not_owned(shown, st.st_uid, uid)
    return f"{shown}: permission denied (mode {stat.S_IMODE(st.st_mode):04o})"


def _open_owned_dir(name: str, parent_fd: int, uid: int, shown: str, *, create: bool) -> int:
    try:
        fd = fsutil.open_dir_nofollow(name, parent_fd, create_mode=DIR_MODE if create else None)
    except fsutil.SymlinkRefused:
        raise _Refused(f"{shown} is a symbolic link; refusing to follow it") from None
    except NotADirectoryError:
        raise _Refused(f"{shown} is not a directory") from None
    except PermissionError:
        raise _Refused(_why_denied(name, parent_fd, uid, shown)) from None
    owner = os.fstat(fd).st_uid
    if owner != uid:
        os.close(fd)
        raise _Refused(_not_owned(shown, owner, uid))
    return fd


def _update_fragment(uid: int, home: str, fragment: str, data: "bytes | None") -> str:
    """Write (``data``) or remove (``None``) the fragment; runs with the user's credentials."""
    with contextlib.ExitStack() as fds:
        home_fd = fsutil.open_dir(home)  # a symlinked home (/home -> /var/home) is the admin's
        fds.callback(os.close, home_fd)
        if os.fstat(home_fd).st_uid != uid:
            raise _Refused(f"home directory {home} is not owned by the user")
        shown = f"{home.rstrip('/')}/{SSH_DIR}"
        try:
            ssh_fd = _open_owned_dir(SSH_DIR, home_fd, uid, shown, create=data is not None)
            fds.callback(os.close, ssh_fd)
            shown += f"/{FRAGMENT_DIR}"
            keys_fd = _open_owned_dir(FRAGMENT_DIR, ssh_fd, uid, shown, create=data is not None)
            fds.callback(os.close, keys_fd)
        except FileNotFoundError:
            if data is not None:
                raise
            return "absent"  # removing, and there is no directory: nothing to revoke
        with fsutil.dir_lock(keys_fd):
            if data is None:
                return "removed" if fsutil.remove_at(keys_fd, fragment) else "absent"
            fsutil.write_at(keys_fd, fragment, data, mode=FILE_MODE)
            return "written"


def _cause(err: BaseException) -> str:
    if isinstance(err, (KeyboardInterrupt, SystemExit)):
        return "interrupted"
    if isinstance(err, OSError):
        return fsutil.describe(err)
    if isinstance(err, _Refused):
        return str(err)
    return f"unexpected {type(err).__name__}"


def _drop_privileges(uid: int, gid: int) -> None:
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    if os.getresuid() != (uid, uid, uid) or os.getresgid() != (gid, gid, gid) or os.getgroups():
        raise _Refused("could not drop privileges")
    try:
        os.setresuid(0, 0, 0)
    except PermissionError:
        return
    raise _Refused("privileges could be regained after dropping them")


def _child(report_fd: int, uid: int, gid: int, work: Callable[[], str]) -> None:
    """Runs in the forked child and never returns."""
    status = 1
    try:
        try:
            _drop_privileges(uid, gid)
            os.umask(0o077)
            report = {"ok": True, "result": work()}
        except BaseException as err:  # noqa: B902 - a SIGTERM handler's SystemExit included
            report = {"ok": False, "cause": _cause(err)[:500]}
        os.write(report_fd, json.dumps(report).encode("utf-8"))
        status = 0
    finally:
        os._exit(status)


def _read_all(fd: int) -> bytes:
    chunks = []
    while True:
        chunk = os.read(fd, 4096)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _run_in_child(uid: int, gid: int, work: Callable[[], str], target: str) -> str:
    read_fd, write_fd = os.pipe()
    try:
        pid = os.fork()
    except OSError as err:
        os.close(read_fd)
        os.close(write_fd)
        raise OutputError(f"cannot start the key writer: {os.strerror(err.errno)}",
                          target=target) from None
    if pid == 0:
        os.close(read_fd)
        _child(write_fd, uid, gid, work)
    os.close(write_fd)
    try:
        raw = _read_all(read_fd)
        _, status = os.waitpid(pid, 0)
    except BaseException:
        # Interrupted (SIGTERM): the child cleans up its temp file on the same signal.
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGTERM)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
        raise
    finally:
        os.close(read_fd)
    try:
        report = json.loads(raw.decode("utf-8"))
    except ValueError:
        if os.WIFSIGNALED(status):
            cause = f"the key writer was killed by signal {os.WTERMSIG(status)}"
        else:
            cause = "the key writer exited without a report"
        raise OutputError(cause, target=target) from None
    if not report.get("ok"):
        raise OutputError(str(report.get("cause")), target=target)
    return str(report["result"])


def _run_in_process(work: Callable[[], str], target: str) -> str:
    old_umask = os.umask(0o077)
    try:
        return work()
    except (OSError, _Refused) as err:
        raise OutputError(_cause(err), target=target) from None
    finally:
        os.umask(old_umask)


def _run_as_user(user, work: Callable[[], str], target: str) -> str:
    euid = os.geteuid()
    if euid == user.pw_uid:
        return _run_in_process(work, target)
    if euid != 0:
        raise OutputError("must run as root to write keys for another user", target=target)
    return _run_in_child(user.pw_uid, user.pw_gid, work, target)


def write_fragment(user, keys: Sequence[SshKey], *, fragment: str = DEFAULT_FRAGMENT) -> str:
    """Make ``~/.ssh/authorized_keys.d/<fragment>`` hold exactly ``keys``, as the user.

    ``user`` is a ``pwd.struct_passwd`` (or anything with ``pw_name``, ``pw_uid``, ``pw_gid``,
    ``pw_dir``). Missing ``.ssh`` / ``authorized_keys.d`` are created 0700, the fragment 0600, all
    owned by the user. Zero keys remove the fragment. Returns ``"written"``, ``"removed"`` or
    ``"absent"`` (zero keys and no fragment). Raises ``OutputError`` (target ``ssh keys for
    USER``); a failed write leaves the previous fragment as it was.
    """
    target = _target(user.pw_name)
    if not isinstance(fragment, str) or not _FRAGMENT_NAME.fullmatch(fragment):
        raise OutputError("invalid fragment file name", target=target)
    problem = _home_path_problem(user.pw_dir)
    if problem:
        raise OutputError(problem, target=target)
    for number, key in enumerate(keys, start=1):
        try:
            valid = isinstance(key, SshKey) and parse_key(key.line()) == key
        except ValueError:
            valid = False
        if not valid:
            raise OutputError(f"ssh key #{number} is not a validated key; refusing to write it",
                              target=target)
    data = "".join(key.line() + "\n" for key in keys).encode("utf-8") if keys else None
    home = user.pw_dir
    path = f"{home.rstrip('/')}/{SSH_DIR}/{FRAGMENT_DIR}/{fragment}"

    def work() -> str:
        return _update_fragment(user.pw_uid, home, fragment, data)

    outcome = _run_as_user(user, work, target)
    if outcome == "written":
        log.event("ssh-keys-written", f"wrote {len(keys)} ssh keys for {user.pw_name} to {path}",
                  user=user.pw_name, path=path)
    elif outcome == "removed":
        log.event("ssh-keys-removed", f"removed {path}: no ssh keys for {user.pw_name}",
                  user=user.pw_name, path=path)
    else:
        logger.debug("no ssh keys for %s and no %s to remove", user.pw_name, path)
    return outcome
