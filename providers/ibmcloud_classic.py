"""IBM Cloud Classic: an OpenStack-layout ``config-2`` drive, vfat (docs/protocols.md,
docs/attributes.md).

``openstack/latest/meta_data.json``: ``uuid`` → ``IBMCLOUD_CLASSIC_INSTANCE_ID`` and ``name`` →
``IBMCLOUD_CLASSIC_LOCAL_HOSTNAME``, both required and non-empty as upstream; the hostname is
``name`` (``hostname`` holds the FQDN). ``network_data.json`` → networkd units (priority 10).
SSH keys are deliberately unsupported upstream although ``public_keys`` exists: a warning, no
keys. Upstream mounts only a lower-case label as vfat; both labels and fs types work here.
"""

from __future__ import annotations

import logging
from typing import Dict, List, Optional

from cl_metadata.errors import InvalidMetadata
from cl_metadata.sources import openstack_drive as openstack
from cl_metadata.providers.base import ATTRIBUTES, HOSTNAME, NETWORK_UNITS, USER_DATA, Provider
from cl_metadata.sources.user_data import DriveUserData

log = logging.getLogger("cl_metadata")

DRIVE_WAIT = 5.0  # seconds for udev to show the label; the drive is the only source
UNIT_PRIORITY = 10
USER_DATA_FILE = openstack.USER_DATA

META_DATA_FIELDS = {
    "IBMCLOUD_CLASSIC_INSTANCE_ID": "uuid",
    "IBMCLOUD_CLASSIC_LOCAL_HOSTNAME": "name",
}


class IBMCloudClassicProvider(Provider):
    id = "ibmcloud-classic"
    description = "IBM Cloud Classic (vfat config-2 drive)"
    source = "config drive"
    features = frozenset({ATTRIBUTES, HOSTNAME, NETWORK_UNITS, USER_DATA})
    user_data_source = USER_DATA_FILE + " on the config drive"

    def __init__(self, context):
        super().__init__(context)
        with context.config_drive(openstack.LABELS, wait=DRIVE_WAIT) as drive:
            self.meta_data_body = drive.read(openstack.META_DATA)
            self.network_data_body = drive.read(openstack.NETWORK_DATA, optional=True)
            self.user_data_file = DriveUserData(drive, [USER_DATA_FILE])

    def _required(self, field: str) -> str:
        meta = self.once("meta_data", lambda: openstack.parse_meta_data(self.meta_data_body))
        value = openstack.meta_data_field(meta, field)
        if not value:
            raise InvalidMetadata(f"field {field!r} is missing or empty",
                                  source=openstack.META_DATA)
        return value

    def attributes(self) -> Dict[str, str]:
        return {name: self._required(field) for name, field in META_DATA_FIELDS.items()}

    def hostname(self) -> Optional[str]:
        return self._required("name")

    def ssh_keys(self) -> List[str]:
        log.warning("%s: SSH keys are not supported on this platform; none written", self.id)
        return []

    def network(self):
        return openstack.parse_network_data(self.network_data_body, priority=UNIT_PRIORITY)

    def user_data(self) -> Optional[bytes]:
        return self.user_data_file.get()
