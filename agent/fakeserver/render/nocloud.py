"""nocloud: a cloud-init NoCloud seed on a ``cidata`` drive (docs/protocols.md); no HTTP.

Files: see ``_nocloud.py``. ``platform-data: {nocloud: {network-config-version: 1}}`` writes
network config v1 instead of the default v2. KubeVirt's NoCloud branch reads the same files:
write a KubeVirt ``cidata`` drive with ``--platform nocloud``.
"""

from __future__ import annotations

from typing import Dict, List

from ..instance import Instance
from . import Route
from ._nocloud import seed_files

PLATFORMS = ("nocloud",)
DRIVE_LABEL = "cidata"


def routes(instance: Instance) -> List[Route]:
    return []


def drive_files(instance: Instance) -> Dict[str, bytes]:
    version = int(instance.extra("nocloud").get("network-config-version", 2))
    return seed_files(instance, network_version=version)
