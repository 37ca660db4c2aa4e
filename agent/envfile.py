"""The attributes file that units read with ``EnvironmentFile=`` (and shells with ``.``).

Upstream wrote ``KEY=value`` unquoted, so a value with a newline, a trailing backslash or a
leading ``#`` changed what consumers saw. Here every value either consists of characters that
need no quoting anywhere (written bare, so ``COREOS_EC2_IPV4_LOCAL=10.0.0.5`` stays greppable)
or is double-quoted with exactly the four characters both POSIX sh and systemd unescape inside
double quotes (``\\ " $ ```) backslash-escaped. Both then read the value back byte for byte.
Values with control characters cannot be represented that way and are dropped, with a warning
that names the attribute (never the value). Lines are sorted by name.
"""

from __future__ import annotations

import logging
import os
import re
from typing import Iterable, List, Mapping, Tuple

from cl_metadata import fsutil, log

logger = logging.getLogger("cl_metadata")

FILE_MODE = 0o644
_NAME = re.compile(r"[A-Z][A-Z0-9_]*")
_BARE = re.compile(r"[A-Za-z0-9_.,:/@%+=-]*")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_NEEDS_BACKSLASH = re.compile(r'([\\"$`])')


def _printable_name(name: object) -> str:
    """An attribute name safe for a log line (names come from code, but be sure)."""
    text = name if isinstance(name, str) else repr(name)
    return text if text.isprintable() and len(text) <= 100 else ascii(text)[:100]


def quote(value: str) -> str:
    """The value as it appears after ``NAME=``; the caller has rejected control characters."""
    if _BARE.fullmatch(value):
        return value
    return '"' + _NEEDS_BACKSLASH.sub(r"\\\1", value) + '"'


def _why_unwritable(value: object) -> str:
    if not isinstance(value, str):
        return "the value is not text"
    if _CONTROL.search(value):
        return "the value contains a control character"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "the value is not valid Unicode"
    return ""


def render(attributes: Mapping[str, str], prefix: str,
           unprefixed: Iterable[str] = ()) -> Tuple[bytes, List[str]]:
    """The file's bytes and the attribute names (as given, without prefix) that were dropped.

    Each name in ``unprefixed`` that ``attributes`` holds is written a second time without the
    prefix (checked the same way).
    """
    lines = []
    dropped = []
    also_bare = set(unprefixed)
    for name, value in attributes.items():
        full = f"{prefix}_{name}" if isinstance(name, str) and name else None
        if full is None or not _NAME.fullmatch(full):
            logger.warning("attribute %s dropped: not a valid variable name",
                           _printable_name(name))
            dropped.append(name)
            continue
        reason = _why_unwritable(value)
        if reason:
            logger.warning("attribute %s dropped: %s", full, reason)
            dropped.append(name)
            continue
        for written in (full, name) if name in also_bare and _NAME.fullmatch(name) else (full,):
            lines.append((written, f"{written}={quote(value)}\n"))
    lines.sort()
    return "".join(line for _, line in lines).encode("utf-8"), dropped


def write(path: "os.PathLike[str] | str", attributes: Mapping[str, str], prefix: str,
          unprefixed: Iterable[str] = ()) -> int:
    """Render and atomically replace ``path`` (mode 0644); returns how many lines were written.

    ``-`` (or ``/dev/stdout``, ``/proc/self/fd/1``) prints the same bytes to standard output
    instead. An empty mapping still writes an empty file: consumers test for the file, not its
    lines. Raises ``OutputError``; the previous file stays as it was.
    """
    data, dropped = render(attributes, prefix, unprefixed)
    fsutil.write_output(path, data, mode=FILE_MODE)
    count = data.count(b"\n")
    shown = "standard output" if fsutil.is_stdout(path) else os.fspath(path)
    log.event("attributes-written", f"wrote {count} attributes to {shown}",
              path=os.fspath(path))
    return count
