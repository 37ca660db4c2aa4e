"""proxmoxve: the NoCloud seed Proxmox VE writes for a VM's cloud-init drive (``cidata``,
docs/protocols.md); no HTTP.

Proxmox generates every file itself: ``meta-data`` holds only ``instance-id``; ``user-data`` is
a ``#cloud-config`` with ``hostname`` (first label), ``fqdn``, ``manage_etc_hosts`` and
``ssh_authorized_keys`` (the instance's own ``#cloud-config`` user-data is not used; other
user-data, a custom ``cicustom`` file, replaces it as given); ``network-config`` is v1
(address + netmask); ``vendor-data`` is empty.
"""

from __future__ import annotations

from typing import Dict, List

from ..instance import Instance
from . import Route
from ._nocloud import CLOUD_CONFIG, dump, keys_in_user_data, network_config

PLATFORMS = ("proxmoxve",)
DRIVE_LABEL = "cidata"


def routes(instance: Instance) -> List[Route]:
    return []


def drive_files(instance: Instance) -> Dict[str, bytes]:
    config: dict = {}
    if instance.hostname:
        config.update(hostname=instance.hostname.split(".")[0], fqdn=instance.hostname,
                      manage_etc_hosts=True)
    config["ssh_authorized_keys"] = [key.key for key in instance.ssh_keys]
    files = {
        "meta-data": dump({"instance-id": instance.instance_id}),
        "user-data": ((CLOUD_CONFIG + "\n").encode("utf-8") + dump(config)
                      if keys_in_user_data(instance) else instance.user_data_bytes()),
        "vendor-data": b"",
    }
    network = network_config(instance, 1)
    if network is not None:
        files["network-config"] = network
    return files
