"""The attributes file that units read with ``EnvironmentFile=`` (and shells with ``.``).

Upstream wrote ``KEY=value`` unquoted, so a value with a newline, a trailing backslash or a
leading ``#`` changed what consumers saw. Here every value either consists of characters that
need no quoting anywhere (written bare, so ``COREOS_EC2_IPV4_LOCAL=10.0.0.5`` stays greppable)
or is double-quoted with exactly the four characters both POSIX sh and systemd unescape inside
double quotes (``\\ " $ ```) backslash-escaped. Both then read the value back byte for byte.
Values with control characters cannot be represented that way and are dropped, with a warning
that names the attribute (never the value). Lines are sorted by name.

Sizes are capped so that every consumer can still take the file in. The kernel refuses an
``execve`` whose single environment string exceeds ``MAX_ARG_STRLEN`` (128 KiB: systemd then
fails the unit, sh says "Argument list too long"), and guarantees arguments and environment
together no more than 128 KiB either (``ARG_MAX``'s floor). So a value over
``MAX_VALUE_BYTES`` (4 KiB: attributes are ids, addresses, host names, zones and URLs; a DNS
name is at most 253 bytes) is dropped with a warning giving its length, and when the file would
exceed ``MAX_FILE_BYTES`` (64 KiB, half of that floor, leaving the consumer's own arguments and
environment the rest) the attributes with the longest lines are dropped, longest first (ties by
name), until it fits. Warnings past the first five are summarised in one line.
"""

from __future__ import annotations

import logging
import os
import re
from typing import Iterable, List, Mapping, Tuple

from cl_metadata.outputs import fsutil

from cl_metadata import log
from cl_metadata.dropped import DroppedItems

logger = logging.getLogger("cl_metadata")

FILE_MODE = 0o644
MAX_VALUE_BYTES = 4 * 1024  # of one value, UTF-8, before quoting
MAX_FILE_BYTES = 64 * 1024  # of the whole file
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
    """Why ``value`` cannot be written (lengths only, never the value), or ``""``."""
    if not isinstance(value, str):
        return "the value is not text"
    if _CONTROL.search(value):
        return "the value contains a control character"
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        return "the value is not valid Unicode"
    if size > MAX_VALUE_BYTES:
        return f"the value is {size} bytes, over the {MAX_VALUE_BYTES}-byte cap"
    return ""


def _over_file_cap(sizes: Mapping[str, int]) -> List[str]:
    """The attributes to leave out so the rest fit ``MAX_FILE_BYTES``: longest lines first,
    ties by name, so the same metadata always loses the same names."""
    total = sum(sizes.values())
    left_out = []
    for full in sorted(sizes, key=lambda full: (-sizes[full], full)):
        if total <= MAX_FILE_BYTES:
            break
        left_out.append(full)
        total -= sizes[full]
    return left_out


def render(attributes: Mapping[str, str], prefix: str,
           unprefixed: Iterable[str] = ()) -> Tuple[bytes, List[str]]:
    """The file's bytes and the attribute names (as given, without prefix) that were dropped.

    Each name in ``unprefixed`` that ``attributes`` holds is written a second time without the
    prefix (checked the same way). Dropped attributes are warned about by name, never value.
    """
    lines = {}  # full name → the attribute's lines (two with the bare copy)
    given = {}  # full name → the name as given
    dropped = []
    warnings = DroppedItems("attributes")
    also_bare = set(unprefixed)
    for name, value in attributes.items():
        full = f"{prefix}_{name}" if isinstance(name, str) and name else None
        if full is None or not _NAME.fullmatch(full):
            warnings.add(f"attribute {_printable_name(name)} dropped: not a valid variable name")
            dropped.append(name)
            continue
        reason = _why_unwritable(value)
        if reason:
            warnings.add(f"attribute {full} dropped: {reason}")
            dropped.append(name)
            continue
        written = (full, name) if name in also_bare and _NAME.fullmatch(name) else (full,)
        lines[full] = [(each, f"{each}={quote(value)}\n".encode("utf-8")) for each in written]
        given[full] = name
    sizes = {full: sum(len(line) for _, line in pairs) for full, pairs in lines.items()}
    for full in _over_file_cap(sizes):
        warnings.add(f"attribute {full} dropped: the file would exceed {MAX_FILE_BYTES} bytes "
                     f"(its lines are {sizes[full]} bytes, the longest left)")
        dropped.append(given[full])
        del lines[full]
    warnings.log(logger)
    kept = sorted(pair for pairs in lines.values() for pair in pairs)
    return b"".join(line for _, line in kept), dropped


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
