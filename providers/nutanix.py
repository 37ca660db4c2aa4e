"""Nutanix AHV: an OpenStack-layout ``config-2`` drive, and nothing else.

AHV attaches the drive when the VM is created with guest customization; there is no metadata
service, so unlike ``openstack`` the agent never falls back to HTTP (that would only wait for
an address nobody answers). The drive carries ``openstack/latest/meta_data.json`` but no
``ec2/`` tree:

    uuid         → NUTANIX_INSTANCE_UUID
    hostname     → NUTANIX_HOSTNAME and the hostname
    public_keys  → SSH keys, sorted by key name

and ``openstack/latest/network_data.json``, the interfaces (static or DHCP networks, bonds and
VLANs, matched by MAC address), when AHV writes one.

No drive (a VM created without customization) is a success with nothing to write, as for
``kubevirt`` and ``proxmoxve``; the warning says so.
"""

from __future__ import annotations

import logging
from typing import Dict, List, Optional

from cl_metadata.sources import openstack_drive as openstack
from cl_metadata.errors import ConfigDriveNotFound, NoMetadataHere
from cl_metadata.providers.base import (ATTRIBUTES, HOSTNAME, NETWORK_UNITS, SSH_KEYS, USER_DATA,
                                        Provider)
from cl_metadata.sources.user_data import DriveUserData

log = logging.getLogger("cl_metadata")

DRIVE_WAIT = 5.0  # seconds for udev to show the label
UNIT_PRIORITY = 10
USER_DATA_FILE = openstack.USER_DATA

META_DATA_FIELDS = {
    "NUTANIX_INSTANCE_UUID": "uuid",
    "NUTANIX_HOSTNAME": "hostname",
}


class NutanixProvider(Provider):
    id = "nutanix"
    description = "Nutanix AHV config-2 drive (none: nothing to do)"
    source = "config drive"
    features = frozenset({ATTRIBUTES, SSH_KEYS, HOSTNAME, NETWORK_UNITS, USER_DATA})
    user_data_source = USER_DATA_FILE + " on the config drive"

    def __init__(self, context):
        super().__init__(context)
        self.meta_data_body: Optional[bytes] = None
        self.network_data_body: Optional[bytes] = None
        try:
            with context.config_drive(openstack.LABELS, wait=DRIVE_WAIT) as drive:
                self.meta_data_body = drive.read(openstack.META_DATA)
                self.network_data_body = drive.read(openstack.NETWORK_DATA, optional=True)
                self.user_data_file = DriveUserData(drive, [USER_DATA_FILE])
        except ConfigDriveNotFound:
            raise NoMetadataHere("no config-2 drive; nothing to do") from None

    def _meta_data(self):
        return self.once("meta_data", lambda: openstack.parse_meta_data(self.meta_data_body))

    def attributes(self) -> Dict[str, str]:
        values = {name: openstack.meta_data_field(self._meta_data(), field)
                  for name, field in META_DATA_FIELDS.items()}
        return {name: value for name, value in values.items() if value is not None}

    def hostname(self) -> Optional[str]:
        return openstack.meta_data_field(self._meta_data(), "hostname") or None

    def ssh_keys(self) -> List[str]:
        return openstack.meta_data_keys(self._meta_data())

    def network(self):
        return openstack.parse_network_data(self.network_data_body, priority=UNIT_PRIORITY)

    def user_data(self) -> Optional[bytes]:
        return self.user_data_file.get()
