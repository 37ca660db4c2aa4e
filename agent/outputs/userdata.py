"""The user-data file: the end user's configuration exactly as they gave it to the platform.

The provider has undone the platform's transport encoding (base64 and the like); a gzip stream
(recognised by its magic bytes, as Ignition does) is inflated here, incrementally and never past
``MAX_INFLATED`` bytes: a small "gzip bomb" is refused with an error, not held in memory.
Concatenated gzip members (``cat a.gz b.gz``) inflate to the concatenation, as ``gunzip`` does.

The file is replaced atomically (``fsutil``: the output-path rules of every other output), mode
0600: user-data often carries secrets. It is owned by the user the agent runs as — root under the
units; a run as another user writes a file that user owns. No user-data (or an empty one) means
no file: one left by an earlier boot is removed. No byte of the user-data ever reaches a log
line or an error message; lengths only.
"""

from __future__ import annotations

import logging
import os
import zlib
from typing import Optional

from cl_metadata.errors import InvalidMetadata
from cl_metadata.outputs import fsutil
from cl_metadata.parsing.encodings import is_gzip

logger = logging.getLogger("cl_metadata")

FILE_MODE = 0o600
# Platforms take at most a few hundred KiB of user-data (EC2 16 KiB, Azure 64 KiB, GCE 256 KiB)
# and the sources read at most 1 MiB; 16 MiB leaves room for any honest compression ratio.
MAX_INFLATED = 16 << 20
_CHUNK = 64 * 1024


def inflate(data: bytes, source: str, *, limit: int = MAX_INFLATED) -> bytes:
    """``data`` itself, or its content when it is gzip-compressed. Raises ``InvalidMetadata``
    (naming ``source``) for a corrupt or truncated stream or one inflating past ``limit``."""
    if not is_gzip(data):
        return data
    out = bytearray()
    pending = data
    while pending:
        inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)  # gzip framing only
        while True:
            try:
                # never more than the room left (+1 to notice going over) per step
                chunk = inflater.decompress(pending, min(_CHUNK, limit + 1 - len(out)))
            except zlib.error:
                raise InvalidMetadata("gzip-compressed user-data is corrupt",
                                      source=source) from None
            out += chunk
            if len(out) > limit:
                raise InvalidMetadata(f"gzip-compressed user-data inflates to more than "
                                      f"{limit} bytes", source=source)
            pending = inflater.unconsumed_tail
            if inflater.eof or (not pending and not chunk):
                break
        if not inflater.eof:
            raise InvalidMetadata("gzip-compressed user-data is truncated", source=source)
        pending = inflater.unused_data
        if pending and not is_gzip(pending):  # trailing bytes that start no member: gunzip
            break                             # warns and ignores them too
    return bytes(out)


def write(path: "os.PathLike[str] | str", data: bytes) -> None:
    """Write ``data`` (already inflated) atomically, mode 0600; ``-`` (or ``/dev/stdout``…)
    prints it to standard output. Raises ``OutputError``."""
    fsutil.write_output(path, data, mode=FILE_MODE)
    logger.info("wrote user-data (%d bytes) to %s", len(data),
                "standard output" if fsutil.is_stdout(path) else os.fspath(path))


def remove_stale(path: "os.PathLike[str] | str", provider_id: str) -> None:
    """The platform holds no user-data: remove the file an earlier boot wrote, if any."""
    if fsutil.is_stdout(path):
        logger.info("%s: the platform holds no user-data; nothing printed", provider_id)
    elif fsutil.remove(path):
        logger.info("%s: the platform holds no user-data; removed %s", provider_id,
                    os.fspath(path))
    else:
        logger.info("%s: the platform holds no user-data; %s not written", provider_id,
                    os.fspath(path))


def prepare(data: Optional[bytes], source: str) -> Optional[bytes]:
    """What to write: ``None`` for no user-data (absent or empty), else ``data`` inflated."""
    if not data:
        return None
    return inflate(data, source)
