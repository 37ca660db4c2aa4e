"""A Container Linux style release channel: where its files are, and its ``version.txt``.

A channel directory (``https://stable.release.example/amd64-usr/current/``) holds the newest
release; each release also has a directory of its own named after its version, next to
``current/``. ``version.txt`` is shell-style ``NAME=value`` lines (``FLATCAR_VERSION=3815.2.0``,
``COREOS_VERSION_ID=…``). It is read as data, never executed, and it is not signed: the
importer reads the version in ``current/``, then downloads the image, its signature and that
release's own ``version.txt`` from the versioned directory, and requires that second file to
name the same version. A label therefore names the directory the signed image was published
in, and two version files that disagree stop the import.
"""

from __future__ import annotations

import re
from typing import Dict, Optional
from urllib.parse import urljoin

from cl_metadata.imageimport.errors import ImageImportError

VERSION_FILE = "version.txt"
# The names a version may be given under, most specific first (Flatcar kept CoreOS's names).
VERSION_ID_KEYS = ("FLATCAR_VERSION_ID", "COREOS_VERSION_ID")
VERSION_KEYS = ("FLATCAR_VERSION", "COREOS_VERSION")
# A version becomes a path component of the download URL: digits and dots only.
_VERSION = re.compile(r"[0-9]{1,9}(\.[0-9]{1,9}){1,3}")
_LINE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)=(.*)")
_PLAIN_VALUE = re.compile(r"[A-Za-z0-9_.,:/@%+=~-]*")
# A file name in the channel: no path, no hidden name.
_FILE_NAME = re.compile(r"[A-Za-z0-9_+-][A-Za-z0-9._+-]{0,199}")


def is_version(text: str) -> bool:
    return _VERSION.fullmatch(text) is not None


def is_file_name(text: str) -> bool:
    return _FILE_NAME.fullmatch(text) is not None and ".." not in text


def parse_version_file(data: bytes, source: str) -> Dict[str, str]:
    """The ``NAME=value`` pairs of a version file; raises ImageImportError on anything else.

    Values may be wrapped in one pair of single or double quotes; any other shell syntax
    (expansions, several words, a name given twice with two values) is refused rather than
    interpreted.
    """

    def bad(cause: str, number: int) -> ImageImportError:
        return ImageImportError(f"line {number}: {cause}", source=source)

    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ImageImportError("not UTF-8 text", source=source) from None
    pairs: Dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = _LINE.fullmatch(line)
        if match is None:
            raise bad("not NAME=value", number)
        name, value = match.groups()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        if _PLAIN_VALUE.fullmatch(value) is None:
            raise bad(f"{name} is not a plain value", number)
        if pairs.get(name, value) != value:
            raise bad(f"{name} given twice with different values", number)
        pairs[name] = value
    return pairs


def release_version(pairs: Dict[str, str], source: str) -> str:
    """The one version a version file states; every name it is given under must agree."""
    named = [k for k in VERSION_ID_KEYS + VERSION_KEYS if k in pairs]
    if not named:
        raise ImageImportError(f"no {' or '.join(VERSION_ID_KEYS + VERSION_KEYS)} line",
                               source=source)
    versions = {pairs[k] for k in named}
    if len(versions) > 1:
        raise ImageImportError(f"{', '.join(named)} disagree", source=source)
    version = versions.pop()
    if not is_version(version):
        raise ImageImportError("the version is not of the form 1234.5.6", source=source)
    return version


def channel_directory(url: str) -> str:
    """``url`` as a directory URL (one trailing slash)."""
    return url if url.endswith("/") else url + "/"


def release_directory(channel_url: str, version: str) -> str:
    """The directory of ``version``: the channel directory's sibling of that name."""
    return urljoin(channel_directory(channel_url), f"../{version}/")


def distro(pairs: Dict[str, str]) -> Optional[str]:
    """``flatcar`` or ``coreos``, after the names the version file uses."""
    if any(k.startswith("FLATCAR_") for k in pairs):
        return "flatcar"
    if any(k.startswith("COREOS_") for k in pairs):
        return "coreos"
    return None
