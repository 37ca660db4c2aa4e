"""CloudStack config drive (docs/protocols.md "Config drives", docs/attributes.md).

The drive is labelled ``config-2`` (else ``CONFIG-2``), iso9660 or vfat; where CloudStack's own
tooling has already mounted it at ``/media/ConfigDrive`` (that directory holds
``cloudstack/metadata/``), the files are read there and nothing is mounted. One text file per
item in ``cloudstack/metadata/``:

    availability_zone.txt  CLOUDSTACK_AVAILABILITY_ZONE
    cloud_identifier.txt   CLOUDSTACK_CLOUD_IDENTIFIER
    instance_id.txt        CLOUDSTACK_INSTANCE_ID
    local_hostname.txt     CLOUDSTACK_LOCAL_HOSTNAME
    service_offering.txt   CLOUDSTACK_SERVICE_OFFERING
    vm_id.txt              CLOUDSTACK_VM_ID
    public_keys.txt        SSH keys, authorized_keys lines

Interfaces come from ``openstack/latest/network_data.json``, which CloudStack writes beside
(links, bonds and VLANs matched by MAC address, static and DHCP networks, routes, ``dns``
services; see :mod:`cl_metadata.sources.openstack_drive`); without it there are none.

A missing file leaves its attribute out (a missing ``public_keys.txt`` means no keys, as in Go);
an empty file is written as ``NAME=``. Values are stripped: upstream copied the file verbatim,
trailing newline included, which broke ``EnvironmentFile=`` consumers. No hostname.

ct's dynamic data turns ``{HOSTNAME}`` for this platform into the *unprefixed*
``${CLOUDSTACK_LOCAL_HOSTNAME}`` (docs/attributes.md, ct dynamic data), which no agent ever wrote:
``unprefixed_attributes`` asks the attributes writer to write that name without prefix too.
"""

from __future__ import annotations

import os
from typing import Dict, List, Optional

from cl_metadata.parsing import formats

from cl_metadata.sources import openstack_drive
from cl_metadata.errors import ConfigDriveError
from cl_metadata.providers.base import ATTRIBUTES, NETWORK_UNITS, SSH_KEYS, USER_DATA, Provider
from cl_metadata.sources.user_data import DriveUserData

LABELS = ("config-2", "CONFIG-2")
PREMOUNTED = "/media/ConfigDrive"
METADATA_DIR = "cloudstack/metadata"
DRIVE_WAIT = 5.0  # seconds for udev to show the label; the drive is the only source
UNIT_PRIORITY = 10

ATTRIBUTE_FILES = {
    "CLOUDSTACK_AVAILABILITY_ZONE": METADATA_DIR + "/availability_zone.txt",
    "CLOUDSTACK_CLOUD_IDENTIFIER": METADATA_DIR + "/cloud_identifier.txt",
    "CLOUDSTACK_INSTANCE_ID": METADATA_DIR + "/instance_id.txt",
    "CLOUDSTACK_LOCAL_HOSTNAME": METADATA_DIR + "/local_hostname.txt",
    "CLOUDSTACK_SERVICE_OFFERING": METADATA_DIR + "/service_offering.txt",
    "CLOUDSTACK_VM_ID": METADATA_DIR + "/vm_id.txt",
}
PUBLIC_KEYS = METADATA_DIR + "/public_keys.txt"
USER_DATA_FILE = "cloudstack/userdata/user_data.txt"  # raw; absent = none (Ignition's file)


class CloudStackConfigDriveProvider(Provider):
    id = "cloudstack-configdrive"
    description = "CloudStack config drive (or /media/ConfigDrive)"
    source = "config drive"
    features = frozenset({ATTRIBUTES, SSH_KEYS, NETWORK_UNITS, USER_DATA})
    user_data_source = USER_DATA_FILE + " on the config drive"
    unprefixed_attributes = ("CLOUDSTACK_LOCAL_HOSTNAME",)
    drive_wait = DRIVE_WAIT  # seconds for the label; `cloudstack` asks the service instead

    def __init__(self, context):
        super().__init__(context)
        premounted = ((PREMOUNTED,) if os.path.isdir(os.path.join(PREMOUNTED, METADATA_DIR))
                      else ())
        with context.config_drive(LABELS, wait=self.drive_wait, premounted=premounted) as drive:
            if not drive.exists(METADATA_DIR):
                raise ConfigDriveError("missing: not a CloudStack config drive",
                                       source=METADATA_DIR)
            self.files = {path: drive.read(path, optional=True)
                          for path in (*ATTRIBUTE_FILES.values(), PUBLIC_KEYS,
                                       openstack_drive.NETWORK_DATA)}
            self.user_data_file = DriveUserData(drive, [USER_DATA_FILE])

    def attributes(self) -> Dict[str, str]:
        attributes = {}
        for name, path in ATTRIBUTE_FILES.items():
            value = formats.text(self.files[path], path)
            if value is not None:
                attributes[name] = value
        return attributes

    def ssh_keys(self) -> List[str]:
        return formats.key_lines(formats.text(self.files[PUBLIC_KEYS], PUBLIC_KEYS))

    def network(self):
        return openstack_drive.parse_network_data(self.files[openstack_drive.NETWORK_DATA],
                                                  priority=UNIT_PRIORITY)

    def user_data(self) -> Optional[bytes]:
        return self.user_data_file.get()
