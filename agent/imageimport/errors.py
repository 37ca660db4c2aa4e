"""The one failure type of ``cl-metadata-import-image``: a one-line message and an exit status.

``source`` names what failed (``GET https://…/version.txt``, ``signature``, an output path) and
``cause`` why; neither ever carries the bytes of a downloaded file.
"""

from __future__ import annotations

from typing import Optional

from cl_metadata.errors import CLMetadataError


class ImageImportError(CLMetadataError):
    """A download, check or write failed; ``resumable`` keeps the partial image for a re-run."""

    def __init__(self, cause: str, *, source: Optional[str] = None, resumable: bool = False):
        super().__init__(cause)
        self.cause = cause
        self.source = source
        self.resumable = resumable

    def __str__(self) -> str:
        return f"{self.source}: {self.cause}" if self.source else self.cause
