"""Hand-off to systemd: sd_notify messages and structured journal entries.

systemd-python (``systemd.daemon``, ``systemd.journal``) is used when it is importable; it is
optional (an sdist needing a compiler and libsystemd), so each path has a pure-Python fallback:

* notify: one ``AF_UNIX``/``SOCK_DGRAM`` datagram to ``$NOTIFY_SOCKET`` (a leading ``@`` names
  the abstract namespace). No socket → nothing is sent and nothing fails.
* journal: when ``$JOURNAL_STREAM`` says stderr already is the journal and journald's socket
  exists, entries in journald's native datagram protocol (``KEY=value`` lines; a value with a
  newline as ``KEY``, newline, 64-bit little-endian length, bytes, newline), so ``MESSAGE_ID``
  and the other fields arrive either way. Without the socket, or when a send fails, plain
  lines with a ``<N>`` syslog priority prefix (journald's SyslogLevelPrefix= convention).

systemd-python is imported only when the environment says we run under systemd, so an
interactive run does not pay for the import.
"""

from __future__ import annotations

import importlib
import logging
import os
import re
import socket
import struct
from typing import Any, Dict, Mapping, Optional

SYSLOG_IDENTIFIER = "cl-metadata"

# Stable ids for the milestones other tools look for (journalctl MESSAGE_ID=…, console hints).
# Ours were generated once with `systemd-id128 new`; the SSH-key ids are Afterburn's own, which
# Fedora CoreOS's console login helper looks for to say whether keys were installed. Never
# change them.
MESSAGE_IDS: Dict[str, str] = {
    "attributes-written": "15ee4fb08adb4087abc53ef8c5f78735",
    "ssh-keys-written": "0f7d7a502f2d433caa1323440a6b4190",  # Afterburn: wrote keys
    "ssh-keys-removed": "f8b91c53f5544868a3a10d0dcf68e9ea",  # Afterburn: removed keys
    "check-in-sent": "c10609fa69d34b3cb3f384ab520c2dbc",
}
# Afterburn's fields on its SSH-key entries, filled from ours (user → AFTERBURN_USER_NAME, …)
AFTERBURN_FIELDS: Dict[str, Dict[str, str]] = {
    kind: {"user": "AFTERBURN_USER_NAME", "path": "AFTERBURN_PATH"}
    for kind in ("ssh-keys-written", "ssh-keys-removed")
}

# Event fields become journal fields CL_METADATA_<NAME> (user, path, provider: names, never values)
FIELD_PREFIX = "CL_METADATA_"
EVENT_FIELD = "CL_METADATA_EVENT"
_FIELD_NAME = re.compile(r"[a-z][a-z0-9_]{0,40}\Z")

# syslog priorities for the "<N>" prefix and the native PRIORITY field
_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, 25: 5, logging.WARNING: 4, logging.ERROR: 3,
             logging.CRITICAL: 2}  # 25: cl_metadata.log.NOTICE

# libsystemd's fixed journal socket; sd_journal_send drops entries silently when it is missing
JOURNALD_SOCKET = "/run/systemd/journal/socket"

# sd_notify is best effort: never hold up a boot unit because systemd's queue is full
_NOTIFY_SEND_TIMEOUT = 2.0

_native_modules: Dict[str, Any] = {}


def syslog_priority(levelno: int) -> int:
    """The syslog priority (0–7) for a ``logging`` level; unknown levels count as info."""
    return _PRIORITY.get(levelno, 6)


def load_native(name: str) -> Optional[Any]:
    """systemd-python's ``systemd.daemon`` or ``systemd.journal``, or None when not importable.

    Cached per process. A module that imports but lacks the expected function (an unrelated
    PyPI distribution also called ``systemd``) counts as missing.
    """
    if name not in _native_modules:
        required = {"systemd.daemon": "notify", "systemd.journal": "send"}[name]
        try:
            module = importlib.import_module(name)
        except Exception:  # ImportError, or a broken build (missing libsystemd.so)
            module = None
        if module is not None and not callable(getattr(module, required, None)):
            module = None
        _native_modules[name] = module
    return _native_modules[name]


# --- sd_notify --------------------------------------------------------------------------------

def notify(message: str) -> bool:
    """Send one sd_notify message (``"STATUS=…"``, ``"READY=1"``, newline-joined assignments).

    Returns True when the message was handed to systemd. Never raises: without
    ``$NOTIFY_SOCKET``, or when the send fails, nothing happens and False is returned.
    """
    address = os.environ.get("NOTIFY_SOCKET", "")
    if not address:
        return False
    daemon = load_native("systemd.daemon")
    if daemon is not None:
        try:
            return bool(daemon.notify(message))
        except Exception:
            return False
    return send_notify_datagram(address, message.encode("utf-8"))


def send_notify_datagram(address: str, payload: bytes) -> bool:
    """The fallback: one datagram to a ``$NOTIFY_SOCKET`` path or ``@abstract`` name."""
    if address.startswith("@"):
        target: Any = b"\0" + os.fsencode(address[1:])
    elif address.startswith("/"):
        target = os.fsencode(address)
    else:
        return False  # other transports (vsock:…) are left to libsystemd
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.settimeout(_NOTIFY_SEND_TIMEOUT)
            sock.sendto(payload, target)
    except OSError:
        return False
    return True


# --- journal ----------------------------------------------------------------------------------

def stderr_is_journal(environ: Mapping[str, str], stream: Any) -> bool:
    """True when ``stream`` is the journal stream ``$JOURNAL_STREAM`` names (device:inode)."""
    value = environ.get("JOURNAL_STREAM", "")
    try:
        device, inode = (int(part) for part in value.split(":"))
        st = os.fstat(stream.fileno())
    except (ValueError, OSError, AttributeError):
        return False
    return (st.st_dev, st.st_ino) == (device, inode)


def native_journal() -> Optional[Any]:
    """Something with ``send(MESSAGE, **fields)`` when journald's socket exists, else None:
    ``systemd.journal`` when importable, else ``SocketJournal``."""
    if not os.path.exists(JOURNALD_SOCKET):
        return None
    return load_native("systemd.journal") or SocketJournal(JOURNALD_SOCKET)


class SocketJournal:
    """journald's native protocol without systemd-python: one datagram per entry.

    ``send`` has ``systemd.journal.send``'s shape and raises ``OSError`` when journald cannot
    take the entry (the handler then writes the line to stderr instead).
    """

    def __init__(self, path: str):
        self.path = path

    def send(self, MESSAGE: str, **fields: Any) -> None:  # noqa: N803 (systemd's field name)
        entry = dict(fields, MESSAGE=MESSAGE)
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.settimeout(_NOTIFY_SEND_TIMEOUT)
            sock.sendto(encode_entry(entry), os.fsencode(self.path))


def encode_entry(fields: Mapping[str, Any]) -> bytes:
    """A native-protocol datagram; a value holding a newline gets the length-prefixed form."""
    parts = []
    for key, value in fields.items():
        data = str(value).encode("utf-8", "replace")
        name = key.encode("ascii")
        if b"\n" in data:
            parts.append(name + b"\n" + struct.pack("<Q", len(data)) + data + b"\n")
        else:
            parts.append(name + b"=" + data + b"\n")
    return b"".join(parts)


def event_fields(kind: Optional[str], fields: Mapping[str, Any]) -> Dict[str, str]:
    """Journal fields for a milestone: MESSAGE_ID (known kinds), the kind, CL_METADATA_<NAME>,
    and for the SSH-key milestones Afterburn's AFTERBURN_USER_NAME and AFTERBURN_PATH too.

    Field names that are not plain lower-case identifiers are dropped rather than mangled.
    """
    result: Dict[str, str] = {}
    if kind:
        result[EVENT_FIELD] = kind
        if kind in MESSAGE_IDS:
            result["MESSAGE_ID"] = MESSAGE_IDS[kind]
    for name, value in fields.items():
        if _FIELD_NAME.match(name) and value is not None:
            result[FIELD_PREFIX + name.upper()] = str(value)
            alias = AFTERBURN_FIELDS.get(kind or "", {}).get(name)
            if alias:
                result[alias] = str(value)
    return result


class JournalHandler(logging.Handler):
    """Sends records to journald through ``systemd.journal.send`` with structured fields.

    Records carrying ``cl_metadata_event`` / ``cl_metadata_fields`` (see ``cl_metadata.log``)
    get their MESSAGE_ID and CL_METADATA_* fields. If journald cannot be reached the record goes
    to ``fallback`` (the ``<N>``-prefixed stderr handler) instead of being lost.
    """

    def __init__(self, journal_module: Any, fallback: logging.Handler):
        super().__init__()
        self.journal = journal_module
        self.fallback = fallback
        self.setFormatter(logging.Formatter("%(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            fields = event_fields(getattr(record, "cl_metadata_event", None),
                                  getattr(record, "cl_metadata_fields", None) or {})
            self.journal.send(
                self.format(record),
                PRIORITY=str(syslog_priority(record.levelno)),
                SYSLOG_IDENTIFIER=SYSLOG_IDENTIFIER,
                CODE_FILE=record.pathname,
                CODE_LINE=record.lineno,  # systemd-python formats it with {:d}
                CODE_FUNC=record.funcName,
                **fields,
            )
        except Exception:
            self.fallback.handle(record)
