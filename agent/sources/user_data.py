"""User-data on a drive, read while the drive is mounted and reported only when asked for.

Drive providers read every file at construction and unmount at once. User-data is read with
the rest, but a problem with it (an oversized or unreadable file) must fail only a run that
asked for ``--user-data``: the outcome is kept, and raised by :meth:`DriveUserData.get`.
"""

from __future__ import annotations

from typing import Optional, Sequence

from cl_metadata.errors import InvalidMetadata, MetadataError


class DriveUserData:
    """The first of ``relpaths`` present on ``drive`` (``None`` when none is), or the error
    reading it raised."""

    def __init__(self, drive, relpaths: Sequence[str]):
        self._body: Optional[bytes] = None
        self._error: Optional[MetadataError] = None
        try:
            for relpath in relpaths:
                self._body = drive.read(relpath, optional=True)
                if self._body is not None:
                    break
        except MetadataError as err:
            self._error = err

    def get(self) -> Optional[bytes]:
        if self._error is not None:
            raise self._error
        return self._body



def as_text(body: Optional[bytes], source: str) -> Optional[str]:
    """NoCloud ``user-data`` as the metadata parts read it (``#cloud-config``): strict UTF-8,
    decoded only when they ask. The ``--user-data`` output takes the bytes as they are."""
    if body is None:
        return None
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as err:
        raise InvalidMetadata(f"not valid UTF-8 (byte {err.start})", source=source) from None
