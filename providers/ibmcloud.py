"""IBM Cloud VPC (Gen2): a NoCloud seed on a ``cidata`` drive (docs/protocols.md,
docs/attributes.md).

``meta-data`` (``key: value`` lines): ``instance-id`` → ``IBMCLOUD_INSTANCE_ID``,
``local-hostname`` → ``IBMCLOUD_LOCAL_HOSTNAME`` and the hostname. SSH keys come from
``vendor-data``, a MIME multipart document: the last ``text/cloud-config`` part mentioning
``ssh_authorized_keys`` gives them; no such part (or no vendor-data) means no keys, as in
Afterburn since 5.4.0. ``user-data`` (Ignition's) is read only for ``--user-data``, as is.

Afterburn splits ``meta-data`` into ``key: value`` lines; YAML reads such lines the same way
and keeps values as written (an id ``0717`` stays ``0717``). An absent key leaves its attribute
out. Upstream mounts iso9660 only; vfat and ``CIDATA`` work here too. The drive is the only
source: a missing drive is an error, and it is unmounted before any output is written.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from cl_metadata.sources import nocloud_format as nocloud
from cl_metadata.parsing.fields import Fields
from cl_metadata.providers.base import ATTRIBUTES, HOSTNAME, SSH_KEYS, USER_DATA, Provider
from cl_metadata.sources.user_data import DriveUserData

DRIVE_WAIT = 5.0  # seconds for udev to show the label; the drive is the only source

META_DATA_FIELDS = {
    "IBMCLOUD_INSTANCE_ID": "instance-id",
    "IBMCLOUD_LOCAL_HOSTNAME": "local-hostname",
}


class IBMCloudProvider(Provider):
    id = "ibmcloud"
    description = "IBM Cloud VPC (cidata drive)"
    source = "config drive"
    features = frozenset({ATTRIBUTES, SSH_KEYS, HOSTNAME, USER_DATA})
    user_data_source = nocloud.USER_DATA + " on the cidata drive"

    def __init__(self, context):
        super().__init__(context)
        with context.config_drive(nocloud.LABELS, wait=DRIVE_WAIT) as drive:
            self.meta_data_text = drive.read_text(nocloud.META_DATA)
            self.vendor_data = drive.read(nocloud.VENDOR_DATA, optional=True)
            self.user_data_file = DriveUserData(drive, [nocloud.USER_DATA])

    def _meta_data(self) -> Dict[str, Any]:
        return self.once("meta-data", lambda: nocloud.parse_meta_data(self.meta_data_text,
                                                                       nocloud.META_DATA))

    def _field(self, field: str) -> Optional[str]:
        return Fields(nocloud.META_DATA).string(self._meta_data().get(field), field)

    def attributes(self) -> Dict[str, str]:
        values = {name: self._field(field) for name, field in META_DATA_FIELDS.items()}
        return {name: value for name, value in values.items() if value is not None}

    def hostname(self) -> Optional[str]:
        return self._field("local-hostname") or None

    def ssh_keys(self) -> List[str]:
        return nocloud.vendor_data_keys(self.vendor_data, nocloud.VENDOR_DATA)

    def user_data(self) -> Optional[bytes]:
        return self.user_data_file.get()
