"""Attribute flavors: the names and file layout each family of consumers reads.

    coreos     COREOS_ names, each id's own stems (ec2 → COREOS_EC2_*, aws → COREOS_AWS_*):
               Container Linux's coreos-metadata. The default.
    flatcar    Flatcar's coreos-metadata: COREOS_ names with Flatcar's stems (aws and gcp are
               read as ec2 and gce: COREOS_EC2_*, COREOS_GCE_*), and ``coreos`` next to the
               attributes file made a symlink to it, so units reading /run/metadata/coreos and
               /run/metadata/flatcar both work.
    afterburn  Afterburn's: AFTERBURN_ names with Afterburn's stems (ec2 and gce are read as
               aws and gcp: AFTERBURN_AWS_*, AFTERBURN_GCP_*).

The link is replaced, never written through: a new symlink is made under a temporary name and
renamed over ``coreos`` (a regular file left there by an earlier run is replaced too); anything
else there (a directory, a device) is refused before the platform is asked.
"""

from __future__ import annotations

import os
import stat
from typing import Mapping, NamedTuple, Optional

from cl_metadata.errors import OutputError, UsageError

LINK_NAME = "coreos"


class Flavor(NamedTuple):
    prefix: str
    ids: Mapping[str, str]  # provider id → the id read instead
    link: Optional[str] = None  # name next to the attributes file made a symlink to it


FLAVORS: Mapping[str, Flavor] = {
    "coreos": Flavor("COREOS", {}),
    "flatcar": Flavor("COREOS", {"aws": "ec2", "gcp": "gce"}, link=LINK_NAME),
    "afterburn": Flavor("AFTERBURN", {"ec2": "aws", "gce": "gcp"}),
}


def get(name: str) -> Flavor:
    try:
        return FLAVORS[name]
    except KeyError:
        raise UsageError(f"unknown attributes flavor {name!r}; known: "
                         + ", ".join(FLAVORS)) from None


def link_path(flavor: Flavor, attributes_path: Optional[str]) -> Optional[str]:
    """Where the flavor's link goes for this attributes file (None: no link)."""
    from cl_metadata.outputs.fsutil import is_stdout

    if flavor.link is None or attributes_path is None or is_stdout(attributes_path):
        return None
    path = os.path.join(os.path.dirname(os.path.abspath(attributes_path)), flavor.link)
    return None if path == os.path.abspath(attributes_path) else path


def check_link(path: str) -> None:
    """Refuse, before any fetching, a link path holding something that must not be replaced."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as err:
        raise OutputError(os.strerror(err.errno or 5), target=path) from None
    if not (stat.S_ISLNK(st.st_mode) or stat.S_ISREG(st.st_mode)):
        raise OutputError("exists and is neither a symbolic link nor a regular file; "
                          "refusing to replace it", target=path)


def make_link(path: str, attributes_path: str) -> None:
    """Point ``path`` at the attributes file (relative: the directory may be bind-mounted)."""
    directory = os.path.dirname(path)
    target = os.path.basename(os.path.abspath(attributes_path))
    try:
        if os.readlink(path) == target:
            return
    except OSError:
        pass
    check_link(path)
    from cl_metadata.outputs.fsutil import temp_name  # secrets would import hashlib at boot

    temp = os.path.join(directory, temp_name(os.path.basename(path)))
    try:
        os.symlink(target, temp)
        os.replace(temp, path)
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as err:
        try:
            os.unlink(temp)
        except OSError:
            pass
        raise OutputError(f"cannot make the link: {os.strerror(err.errno or 5)}",
                          target=path) from None
