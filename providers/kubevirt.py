"""KubeVirt: a ``config-2`` drive in the OpenStack layout, else a ``cidata`` NoCloud seed
(docs/protocols.md; upstream ``src/providers/kubevirt/``).

- ``config-2``: ``openstack/latest/meta_data.json`` ``uuid`` → ``KUBEVIRT_INSTANCE_ID``,
  ``hostname`` → ``KUBEVIRT_HOSTNAME`` (both required), optional ``instance_type`` →
  ``KUBEVIRT_INSTANCE_TYPE``; keys from ``public_keys``; interfaces from ``network_data.json``.
- ``cidata``: ``meta-data`` ``instance-id`` and ``local-hostname`` (required) give the same
  names; keys from meta-data ``public-keys`` and a ``#cloud-config`` user-data's
  ``ssh_authorized_keys``; interfaces from ``network-config`` (v1 or v2, YAML or JSON).

``KUBEVIRT_IPV4``/``_IPV6``: the first address of each family on the first interface with static
addresses. Units get priority 20, as upstream. No drive at all is normal for a VM without cloud
data: success, nothing written (the warning says so).
"""

from __future__ import annotations

import logging
from typing import Any, Dict, List, Optional

from cl_metadata.errors import ConfigDriveNotFound, InvalidMetadata, NoMetadataHere
from cl_metadata.sources import nocloud_format as nocloud
from cl_metadata.sources import openstack_drive as openstack
from cl_metadata.parsing.fields import Fields, first_addresses
from cl_metadata.providers.base import (ATTRIBUTES, HOSTNAME, NETWORK_UNITS, SSH_KEYS, USER_DATA,
                                        Provider)
from cl_metadata.sources.user_data import DriveUserData, as_text

log = logging.getLogger("cl_metadata")

LABELS = openstack.LABELS + nocloud.LABELS  # config-2 first, as upstream
DRIVE_WAIT = 1.0  # a missing drive is normal here: do not hold the boot for long
UNIT_PRIORITY = 20

META_DATA = {"config-2": openstack.META_DATA, "cidata": nocloud.META_DATA}
META_DATA_FIELDS = {  # layout → attribute → meta-data field
    "config-2": {"KUBEVIRT_INSTANCE_ID": "uuid", "KUBEVIRT_HOSTNAME": "hostname",
                 "KUBEVIRT_INSTANCE_TYPE": "instance_type"},
    "cidata": {"KUBEVIRT_INSTANCE_ID": "instance-id", "KUBEVIRT_HOSTNAME": "local-hostname"},
}
REQUIRED = ("KUBEVIRT_INSTANCE_ID", "KUBEVIRT_HOSTNAME")
USER_DATA_FILES = {"config-2": openstack.USER_DATA, "cidata": nocloud.USER_DATA}  # raw


class KubeVirtProvider(Provider):
    id = "kubevirt"
    description = "KubeVirt (config-2 drive, else cidata; none: nothing to do)"
    source = "config drive"
    features = frozenset({ATTRIBUTES, SSH_KEYS, HOSTNAME, NETWORK_UNITS, USER_DATA})
    user_data_source = (USER_DATA_FILES["config-2"] + " on the config-2 drive, else "
                        + USER_DATA_FILES["cidata"] + " on the cidata drive")

    def __init__(self, context):
        super().__init__(context)
        try:
            with context.config_drive(LABELS, wait=DRIVE_WAIT) as drive:
                if drive.exists(openstack.META_DATA):
                    self.layout = "config-2"
                    self.files = {path: drive.read(path, optional=path != openstack.META_DATA)
                                  for path in (openstack.META_DATA, openstack.NETWORK_DATA)}
                else:
                    self.layout = "cidata"
                    self.files = {path: drive.read_text(path, optional=path != nocloud.META_DATA)
                                  for path in (nocloud.META_DATA, nocloud.NETWORK_CONFIG)}
                self.user_data_file = DriveUserData(drive, [USER_DATA_FILES[self.layout]])
        except ConfigDriveNotFound:
            raise NoMetadataHere("no config-2 or cidata drive; nothing to do") from None

    def _meta_data(self) -> Dict[str, Any]:
        def load():
            if self.layout == "config-2":
                return openstack.parse_meta_data(self.files[openstack.META_DATA])
            return nocloud.parse_meta_data(self.files[nocloud.META_DATA], nocloud.META_DATA)
        return self.once("meta-data", load)

    def _values(self) -> Dict[str, Optional[str]]:
        """Attribute name → meta-data value (None when absent) for the drive's layout."""
        string = Fields(META_DATA[self.layout]).string
        return {name: string(self._meta_data().get(field), field)
                for name, field in META_DATA_FIELDS[self.layout].items()}

    def attributes(self) -> Dict[str, str]:
        values = self._values()
        for name in REQUIRED:
            if not values[name]:
                field = META_DATA_FIELDS[self.layout][name]
                raise InvalidMetadata(f"field {field!r} is missing or empty",
                                      source=META_DATA[self.layout])
        values["KUBEVIRT_IPV4"], values["KUBEVIRT_IPV6"] = first_addresses(self.network()[0])
        return {name: value for name, value in values.items() if value is not None}

    def hostname(self) -> Optional[str]:
        return self._values()["KUBEVIRT_HOSTNAME"] or None

    def ssh_keys(self) -> List[str]:
        if self.layout == "config-2":
            return openstack.meta_data_keys(self._meta_data())
        config = nocloud.parse_cloud_config(
            as_text(self.user_data_file.get(), nocloud.USER_DATA), nocloud.USER_DATA)
        return nocloud.seed_keys(self._meta_data(), config)

    def network(self):
        def load():
            if self.layout == "config-2":
                return openstack.parse_network_data(self.files[openstack.NETWORK_DATA],
                                                    priority=UNIT_PRIORITY)
            return nocloud.parse_network_config(self.files[nocloud.NETWORK_CONFIG],
                                                nocloud.NETWORK_CONFIG, priority=UNIT_PRIORITY)
        return self.once("network", load)

    def user_data(self) -> Optional[bytes]:
        return self.user_data_file.get()
