"""qemu: the QEMU firmware config entry ``opt/org.cl-metadata/meta-data`` (providers/qemu.py);
no HTTP, no drive.

``drive_files`` gives one file, ``opt/org.cl-metadata/meta-data/raw``, a YAML mapping:
``instance-id``, ``local-hostname``, ``public-keys`` (list) and ``attributes`` (``IPV4_LOCAL``,
``IPV4_PUBLIC``, ``IPV6`` from the instance, plus ``platform-data: {qemu: {attributes: {…}}}``).
``--write-drive DIR`` (format ``dir``) writes it where the provider's test override looks
(``CL_METADATA_CONFIG_DRIVE=DIR``), and the same file boots a guest; the instance's user-data
goes to Ignition's entry, ``opt/com.coreos/config/raw``:

    qemu-system-x86_64 … \\
        -fw_cfg name=opt/org.cl-metadata/meta-data,file=DIR/opt/org.cl-metadata/meta-data/raw
"""

from __future__ import annotations

from typing import Dict, List

from ..instance import Instance
from . import Route, user_data_body
from ._nocloud import dump

PLATFORMS = ("qemu",)
DRIVE_LABEL = "fw_cfg"  # no filesystem: only the "dir" format makes sense
FW_CFG_NAME = "opt/org.cl-metadata/meta-data"
FILE = FW_CFG_NAME + "/raw"
USER_DATA_FILE = "opt/com.coreos/config/raw"


def routes(instance: Instance) -> List[Route]:
    return []


def document(instance: Instance) -> dict:
    attributes = {"IPV4_LOCAL": instance.local_ipv4, "IPV4_PUBLIC": instance.public_ipv4,
                  "IPV6": instance.ipv6}
    attributes = {name: value for name, value in attributes.items() if value is not None}
    attributes.update(instance.extra("qemu").get("attributes", {}))
    doc = {"instance-id": instance.instance_id, "local-hostname": instance.hostname,
           "public-keys": [key.key for key in instance.ssh_keys], "attributes": attributes}
    return {key: value for key, value in doc.items() if value is not None}


def drive_files(instance: Instance) -> Dict[str, bytes]:
    files = {FILE: dump(document(instance))}
    if instance.user_data is not None:  # Ignition's entry, the bytes as given
        files[USER_DATA_FILE] = user_data_body(instance)
    return files
