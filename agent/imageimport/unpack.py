"""Streaming decompression of a verified image into an open file, with an output size cap.

The compression is the one the channel's file name says: ``.bz2``, ``.gz`` and ``.xz`` with
the standard library, ``.zst`` through the ``zstd`` command when it is installed (there is
no zstd module in Python's standard library, and the agent takes no new dependency); a name
without one of these suffixes is copied as it is. The output is hashed (SHA-256) while it is
written, so the hash is that of the bytes on disk.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import lzma
import shutil
import subprocess
import zlib
from typing import BinaryIO, Callable, Iterator, NamedTuple, Optional

from cl_metadata.imageimport.errors import ImageImportError

CHUNK = 1 << 20
SUFFIXES = {".bz2": "bz2", ".gz": "gzip", ".xz": "xz", ".zst": "zstd"}
QCOW2_MAGIC = b"QFI\xfb"


class Unpacked(NamedTuple):
    size: int
    sha256: str
    disk_format: str  # "qcow2" or "raw", from the first bytes


def compression(name: str) -> Optional[str]:
    for suffix, kind in SUFFIXES.items():
        if name.endswith(suffix):
            return kind
    return None


def unpacked_name(name: str) -> str:
    """``name`` without its compression suffix."""
    for suffix in SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[:-len(suffix)]
    return name


def unpack(src_path: str, out: BinaryIO, *, kind: Optional[str], limit: int,
           expired: Callable[[], bool] = lambda: False) -> Unpacked:
    """Decompresses ``src_path`` into ``out``; raises ImageImportError (source ``unpacking``)."""
    digest = hashlib.sha256()
    size = 0
    head = b""
    try:
        for chunk in _chunks(src_path, kind):
            size += len(chunk)
            if size > limit:
                raise ImageImportError(f"the image is larger than {limit} bytes once "
                                       "decompressed (--max-image-size)", source="unpacking")
            if expired():
                raise ImageImportError("deadline exceeded", source="unpacking")
            if len(head) < len(QCOW2_MAGIC):
                head += chunk[:len(QCOW2_MAGIC)]
            digest.update(chunk)
            out.write(chunk)
    except (OSError, EOFError, lzma.LZMAError, zlib.error) as err:
        if isinstance(err, OSError) and err.errno is not None:
            raise  # the output could not be written: the caller names the file
        raise ImageImportError(f"corrupt {kind} data", source="unpacking") from None
    if size == 0:
        raise ImageImportError("the image is empty", source="unpacking")
    disk_format = "qcow2" if head.startswith(QCOW2_MAGIC) else "raw"
    return Unpacked(size, digest.hexdigest(), disk_format)


def _chunks(src_path: str, kind: Optional[str]) -> Iterator[bytes]:
    if kind == "zstd":
        yield from _zstd_chunks(src_path)
        return
    opener = {"bz2": bz2.open, "gzip": gzip.open, "xz": lzma.open, None: open}[kind]
    with opener(src_path, "rb") as f:
        while True:
            chunk = f.read(CHUNK)
            if not chunk:
                return
            yield chunk


def _zstd_chunks(src_path: str) -> Iterator[bytes]:
    zstd = shutil.which("zstd")
    if zstd is None:
        raise ImageImportError("a .zst image needs the zstd command, which is not installed",
                               source="unpacking")
    proc = subprocess.Popen([zstd, "-d", "-c", "-q", "--no-progress", "--", src_path],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)
    try:
        while True:
            chunk = proc.stdout.read(CHUNK)
            if not chunk:
                break
            yield chunk
        if proc.wait() != 0:
            raise ImageImportError("corrupt zstd data (zstd failed)", source="unpacking")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
