"""The hostname file: one validated host name and a newline, replaced atomically.

Afterburn cut names longer than ``HOST_NAME_MAX`` (64) to 64 bytes and then to the first label
(coreos/afterburn#509); here a long name is cut to its first label first, then to the 63-byte
label limit, and whatever remains must be a valid host name.
"""

from __future__ import annotations

import logging
import os
import re
from typing import Optional

from cl_metadata.outputs import fsutil
from cl_metadata.errors import InvalidMetadata

logger = logging.getLogger("cl_metadata")

HOST_NAME_MAX = 64
LABEL_MAX = 63
FILE_MODE = 0o644
_LABEL_CHARS = re.compile(r"[A-Za-z0-9-]+")


def _invalid(reason: str) -> InvalidMetadata:
    return InvalidMetadata(f"not a valid host name ({reason})", source="hostname")


def _check(name: str) -> None:
    for number, label in enumerate(name.split("."), start=1):
        if not label:
            raise _invalid(f"label {number} is empty")
        if len(label) > LABEL_MAX:
            raise _invalid(f"label {number} is longer than {LABEL_MAX} characters")
        if not _LABEL_CHARS.fullmatch(label):
            # do not echo the character: it may be a control character
            raise _invalid(f"label {number} has a character other than letters, digits and '-'")
        if label.startswith("-") or label.endswith("-"):
            raise _invalid(f"label {number} starts or ends with '-'")


def normalize(name: str) -> Optional[str]:
    """The host name to write, ``None`` when the platform gave none; raises ``InvalidMetadata``."""
    if not isinstance(name, str):
        raise _invalid("not text")
    name = name.strip()
    if name.endswith("."):
        name = name[:-1]
    if not name:
        return None
    if len(name) > HOST_NAME_MAX:
        short = name.split(".", 1)[0]
        cut = len(short) > LABEL_MAX
        if cut:
            short = short[:LABEL_MAX].rstrip("-")
        # lengths only: the name is metadata, and may be a megabyte long
        logger.warning("host name of %d characters is longer than %d, using its first label%s "
                       "(%d characters)", len(name), HOST_NAME_MAX,
                       f" cut to {LABEL_MAX}" if cut else "", len(short))
        name = short
    _check(name)
    return name


def write(path: "os.PathLike[str] | str", name: str) -> None:
    """Write ``<name>\\n`` atomically (mode 0644), normalising ``name`` first; ``-`` (or
    ``/dev/stdout``, ``/proc/self/fd/1``) prints it to standard output instead.

    Raises ``InvalidMetadata`` for an empty or invalid name, ``OutputError`` when writing fails.
    """
    normalized = normalize(name)
    if normalized is None:
        raise _invalid("empty")
    fsutil.write_output(path, (normalized + "\n").encode("ascii"), mode=FILE_MODE)
    logger.info("wrote host name to %s",
                "standard output" if fsutil.is_stdout(path) else os.fspath(path))
