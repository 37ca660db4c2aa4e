"""Transport encodings platforms wrap user-data in, undone strictly.

A platform that cannot carry arbitrary bytes (a JSON field, a text-only metadata item, a
VMware guestinfo value) asks for base64. Decoding is strict: any byte outside the standard
alphabet, or bad padding, is an error naming the source, never the data. Whitespace between
the characters is dropped first (line-wrapped base64 is common and means the same bytes).
"""

from __future__ import annotations

import base64
import binascii

from cl_metadata.errors import InvalidMetadata

GZIP_MAGIC = b"\x1f\x8b"


def strict_base64(body: bytes, source: str) -> bytes:
    """``body`` base64-decoded (standard alphabet, padding required); raises InvalidMetadata."""
    try:
        return base64.b64decode(b"".join(body.split()), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidMetadata("user-data is not valid base64", source=source) from None


def is_gzip(data: bytes) -> bool:
    """Whether ``data`` starts like a gzip stream (RFC 1952 magic bytes)."""
    return data[:2] == GZIP_MAGIC
