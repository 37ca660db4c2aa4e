"""OpenStack: the config drive when the VM has one, else the metadata service.

Config drive (docs/protocols.md "Config drives", docs/attributes.md): label ``config-2`` (or ``CONFIG-2``),
iso9660 or vfat. ``openstack/latest/meta_data.json`` gives the UUID, hostname and the
``public_keys`` map; the optional ``ec2/latest/meta-data.json`` gives the instance id, type and
addresses; the optional ``openstack/latest/network_data.json`` the interfaces (static or DHCP
networks, bonds and VLANs, matched by MAC address). The drive is read once at construction and
unmounted at once. No drive, or one that cannot be mounted, means the metadata service
(``openstack-metadata``) answers instead, interfaces included.
"""

from __future__ import annotations

import logging
from typing import Dict, List, Optional

from cl_metadata.parsing import formats

from cl_metadata.sources import openstack_drive
from cl_metadata.errors import ConfigDriveError, ConfigDriveNotFound
from cl_metadata.providers.base import (ATTRIBUTES, HOSTNAME, NETWORK_UNITS, SSH_KEYS, USER_DATA,
                                        Provider)
from cl_metadata.sources.user_data import DriveUserData
from cl_metadata.providers.openstack_metadata import UNIT_PRIORITY, OpenStackMetadataProvider

log = logging.getLogger("cl_metadata")

LABELS = ("config-2", "CONFIG-2")
OPENSTACK_META_DATA = "openstack/latest/meta_data.json"
EC2_META_DATA = "ec2/latest/meta-data.json"
USER_DATA_FILE = openstack_drive.USER_DATA

EC2_FIELDS = {
    "OPENSTACK_INSTANCE_ID": "instance-id",
    "OPENSTACK_INSTANCE_TYPE": "instance-type",
    "OPENSTACK_IPV4_LOCAL": "local-ipv4",
    "OPENSTACK_IPV4_PUBLIC": "public-ipv4",
}


class OpenStackProvider(Provider):
    id = "openstack"
    description = "OpenStack config drive, else the metadata service"
    source = "config drive, else http"
    features = frozenset({ATTRIBUTES, SSH_KEYS, HOSTNAME, NETWORK_UNITS, USER_DATA})
    user_data_source = (USER_DATA_FILE + " on the config drive, else GET "
                        + OpenStackMetadataProvider.user_data_source[4:])

    def __init__(self, context):
        super().__init__(context)
        self.service: Optional[OpenStackMetadataProvider] = None
        try:
            with context.config_drive(LABELS) as drive:
                self.meta_data = formats.json_object(drive.read(OPENSTACK_META_DATA),
                                                     OPENSTACK_META_DATA)
                ec2 = drive.read(EC2_META_DATA, optional=True)
                self.ec2_meta_data = formats.json_object(ec2, EC2_META_DATA) if ec2 else {}
                self.network_data = drive.read(openstack_drive.NETWORK_DATA, optional=True)
                self.user_data_file = DriveUserData(drive, [USER_DATA_FILE])
        except ConfigDriveNotFound:
            log.info("openstack: no config drive; using the metadata service")
            self.service = OpenStackMetadataProvider(context)
        except ConfigDriveError as err:
            log.warning("openstack: config drive unusable (%s); using the metadata service", err)
            self.service = OpenStackMetadataProvider(context)

    def attributes(self) -> Dict[str, str]:
        if self.service:
            return self.service.attributes()
        attributes = {}
        for name, field in EC2_FIELDS.items():
            value = formats.string_field(self.ec2_meta_data, field, EC2_META_DATA)
            if value is not None:
                attributes[name] = value
        for name, field in (("OPENSTACK_INSTANCE_UUID", "uuid"), ("OPENSTACK_HOSTNAME", "hostname")):
            value = formats.string_field(self.meta_data, field, OPENSTACK_META_DATA)
            if value is not None:
                attributes[name] = value
        return attributes

    def hostname(self) -> Optional[str]:
        if self.service:
            return self.service.hostname()
        return formats.string_field(self.meta_data, "hostname", OPENSTACK_META_DATA) or None

    def ssh_keys(self) -> List[str]:
        if self.service:
            return self.service.ssh_keys()
        keys = formats.string_map(self.meta_data, "public_keys", OPENSTACK_META_DATA)
        # a JSON map has no meaningful order; sort by key name so runs are reproducible
        return [line for name in sorted(keys) for line in formats.key_lines(keys[name])]

    def network(self):
        if self.service:
            return self.service.network()
        return openstack_drive.parse_network_data(self.network_data, priority=UNIT_PRIORITY)

    def user_data(self) -> Optional[bytes]:
        if self.service:
            return self.service.user_data()
        return self.user_data_file.get()
