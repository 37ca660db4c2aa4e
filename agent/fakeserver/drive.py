"""Write a platform's config-drive files as a directory or a filesystem image.

Images are built from a staging directory with the usual userland tools, never by mounting
(the QEMU tests' recipe, tests/e2e/): vfat ``mkfs.vfat`` + ``mcopy``, iso9660 ``xorriso -as mkisofs``, ext4
``mkfs.ext4 -d``. The image is built beside the destination and renamed into place.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path, PurePosixPath
from typing import List, Mapping, Optional, Union

from ..errors import CLMetadataError, UsageError

FORMATS = ("dir", "vfat", "iso", "ext4")
TOOL_PACKAGES = {  # tool -> Debian package
    "mkfs.vfat": "dosfstools",
    "mcopy": "mtools",
    "xorriso": "xorriso",
    "mkfs.ext4": "e2fsprogs",
}
FORMAT_TOOLS = {"vfat": ("mkfs.vfat", "mcopy"), "iso": ("xorriso",), "ext4": ("mkfs.ext4",)}
SBIN_DIRS = ("/usr/local/sbin", "/usr/sbin", "/sbin")  # mkfs.* live here, often off a user's PATH
VFAT_KIB = 1024
EXT4_BYTES = 8 * 1024 * 1024


class DriveError(CLMetadataError):
    """A drive could not be written: a tool is missing or failed, or the target is unusable."""


def find_tool(name: str, search_path: Optional[str] = None) -> str:
    if search_path is None:
        search_path = os.pathsep.join([os.environ.get("PATH", os.defpath), *SBIN_DIRS])
    found = shutil.which(name, path=search_path)
    if found is None:
        raise DriveError(f"{name} not found: install the Debian package {TOOL_PACKAGES[name]}")
    return found


def _safe_relpath(relpath: str) -> PurePosixPath:
    path = PurePosixPath(relpath)
    if path.is_absolute() or not path.parts or ".." in path.parts:
        raise DriveError(f"refusing drive file path {relpath!r}")
    return path


def write_tree(files: Mapping[str, bytes], root: Path) -> None:
    """Write ``files`` (relative path -> content) under ``root``, which must be new or empty."""
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise DriveError(f"{root}: exists and is not an empty directory")
    root.mkdir(parents=True, exist_ok=True)
    for relpath, content in sorted(files.items()):
        target = root.joinpath(*_safe_relpath(relpath).parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)


def _run(argv: List[str]) -> None:
    tool = Path(argv[0]).name
    try:
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise DriveError(f"{tool}: could not run: {err}") from None
    if done.returncode != 0:
        detail = done.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or [""]
        raise DriveError(f"{tool} failed with exit status {done.returncode}: {detail[0]}")


def _build_image(fmt: str, staging: Path, image: Path, label: str, tools: Mapping[str, str]) -> None:
    if fmt == "vfat":
        _run([tools["mkfs.vfat"], "-n", label, "-C", str(image), str(VFAT_KIB)])
        entries = sorted(str(p) for p in staging.iterdir())
        if entries:
            _run([tools["mcopy"], "-s", "-i", str(image), *entries, "::/"])
    elif fmt == "iso":
        _run([tools["xorriso"], "-as", "mkisofs", "-quiet", "-V", label, "-J", "-r",
              "-o", str(image), str(staging)])
    elif fmt == "ext4":
        with image.open("wb") as sparse:
            sparse.truncate(EXT4_BYTES)
        _run([tools["mkfs.ext4"], "-q", "-F", "-L", label, "-d", str(staging), str(image)])
    else:
        raise AssertionError(fmt)


def write_drive(files: Mapping[str, bytes], dest: Union[str, Path], fmt: str, label: str, *,
                search_path: Optional[str] = None) -> Path:
    """Write the drive ``files`` to ``dest`` as a directory or a ``vfat``/``iso``/``ext4`` image."""
    if fmt not in FORMATS:
        raise UsageError(f"unknown drive format {fmt!r}; known: {', '.join(FORMATS)}")
    dest = Path(dest)
    if fmt == "dir":
        write_tree(files, dest)
        return dest
    tools = {name: find_tool(name, search_path) for name in FORMAT_TOOLS[fmt]}
    if dest.is_dir():
        raise DriveError(f"{dest}: is a directory, expected an image file path")
    if not dest.parent.is_dir():
        raise DriveError(f"{dest.parent}: no such directory")
    with tempfile.TemporaryDirectory(prefix=".drive-", dir=dest.parent) as tmp:
        staging = Path(tmp) / "tree"
        write_tree(files, staging)
        image = Path(tmp) / "image"
        _build_image(fmt, staging, image, label, tools)
        os.replace(image, dest)
    return dest
