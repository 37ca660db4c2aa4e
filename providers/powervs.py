"""IBM Power Virtual Server: an OpenStack-layout ``config-2`` drive (docs/protocols.md;
upstream ``src/providers/powervs/mod.rs``).

``openstack/latest/meta_data.json`` is the only file read:

    uuid         → POWERVS_INSTANCE_ID
    name         → POWERVS_LOCAL_HOSTNAME and the hostname (``hostname`` holds the FQDN)
    public_keys  → SSH keys, sorted by key name (upstream used the map's random order)

An absent field leaves its attribute out; an empty one is written as ``NAME=``. Upstream mounts
iso9660 with the lower-case label only; ``CONFIG-2`` and vfat work here too. The drive is the
platform's only source, so a missing drive is an error (after a short wait for udev), and the
drive is unmounted before any output is written.
"""

from __future__ import annotations

from typing import Dict, List, Optional

from cl_metadata.sources import openstack_drive as openstack
from cl_metadata.providers.base import ATTRIBUTES, HOSTNAME, SSH_KEYS, USER_DATA, Provider
from cl_metadata.sources.user_data import DriveUserData

DRIVE_WAIT = 5.0  # seconds for udev to show the label; the drive is the only source
USER_DATA_FILE = openstack.USER_DATA

META_DATA_FIELDS = {
    "POWERVS_INSTANCE_ID": "uuid",
    "POWERVS_LOCAL_HOSTNAME": "name",
}


class PowerVSProvider(Provider):
    id = "powervs"
    description = "IBM Power Virtual Server (config-2 drive)"
    source = "config drive"
    features = frozenset({ATTRIBUTES, SSH_KEYS, HOSTNAME, USER_DATA})
    user_data_source = USER_DATA_FILE + " on the config drive"

    def __init__(self, context):
        super().__init__(context)
        with context.config_drive(openstack.LABELS, wait=DRIVE_WAIT) as drive:
            self.meta_data_body = drive.read(openstack.META_DATA)
            self.user_data_file = DriveUserData(drive, [USER_DATA_FILE])

    def _meta_data(self):
        return self.once("meta_data", lambda: openstack.parse_meta_data(self.meta_data_body))

    def attributes(self) -> Dict[str, str]:
        values = {name: openstack.meta_data_field(self._meta_data(), field)
                  for name, field in META_DATA_FIELDS.items()}
        return {name: value for name, value in values.items() if value is not None}

    def hostname(self) -> Optional[str]:
        return openstack.meta_data_field(self._meta_data(), "name") or None

    def ssh_keys(self) -> List[str]:
        return openstack.meta_data_keys(self._meta_data())

    def user_data(self) -> Optional[bytes]:
        return self.user_data_file.get()
