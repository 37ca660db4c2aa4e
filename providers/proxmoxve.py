"""Proxmox VE: a ``cidata`` NoCloud seed written by Proxmox's cloud-init support (docs/protocols.md; upstream ``src/providers/proxmoxve/``).

``meta-data`` ``instance-id`` → ``PROXMOXVE_INSTANCE_ID`` (required); ``user-data`` is used
only when it starts with ``#cloud-config`` (``hostname`` → ``PROXMOXVE_HOSTNAME`` and the
hostname, ``ssh_authorized_keys`` → keys), other user-data is ignored with a warning;
``network-config`` (Proxmox writes v1; v2 is read too) → networkd units, priority 20;
``PROXMOXVE_IPV4``/``_IPV6``: the first address of each family on the first interface with
static addresses. A VM without the drive is normal: success, nothing written
(coreos/afterburn#1126 made that an emergency shell).
"""

from __future__ import annotations

import logging
from typing import Any, Dict, List, Optional

from cl_metadata.errors import ConfigDriveNotFound, NoMetadataHere
from cl_metadata.sources import nocloud_format as nocloud
from cl_metadata.parsing.fields import Fields, first_addresses
from cl_metadata.providers.base import (ATTRIBUTES, HOSTNAME, NETWORK_UNITS, SSH_KEYS, USER_DATA,
                                        Provider)
from cl_metadata.sources.user_data import as_text

log = logging.getLogger("cl_metadata")

DRIVE_WAIT = 1.0  # a missing drive is normal here: do not hold the boot for long
UNIT_PRIORITY = 20


class ProxmoxVEProvider(Provider):
    id = "proxmoxve"
    description = "Proxmox VE (cidata drive; none: nothing to do)"
    source = "config drive"
    features = frozenset({ATTRIBUTES, SSH_KEYS, HOSTNAME, NETWORK_UNITS, USER_DATA})
    user_data_source = nocloud.USER_DATA + " on the cidata drive"

    def __init__(self, context):
        super().__init__(context)
        self.files: Optional[Dict[str, Optional[str]]] = None
        self.user_data_body: Optional[bytes] = None
        try:
            with context.config_drive(nocloud.LABELS, wait=DRIVE_WAIT) as drive:
                self.files = {
                    nocloud.META_DATA: drive.read_text(nocloud.META_DATA),
                    nocloud.NETWORK_CONFIG: drive.read_text(nocloud.NETWORK_CONFIG, optional=True),
                }
                self.user_data_body = drive.read(nocloud.USER_DATA)  # any bytes
        except ConfigDriveNotFound:
            raise NoMetadataHere("no cidata drive; nothing to do") from None

    def _meta_data(self) -> Dict[str, Any]:
        return self.once("meta-data", lambda: nocloud.parse_meta_data(
            self.files[nocloud.META_DATA], nocloud.META_DATA))

    def _cloud_config(self) -> Optional[Dict[str, Any]]:
        def load():
            config = nocloud.parse_cloud_config(as_text(self.user_data_body, nocloud.USER_DATA),
                                                nocloud.USER_DATA)
            if config is None:
                log.warning("%s: user-data does not start with #cloud-config; ignored", self.id)
            return config
        return self.once("user-data", load)

    def attributes(self) -> Dict[str, str]:
        instance_id = Fields(nocloud.META_DATA).string(self._meta_data().get("instance-id"),
                                                       "instance-id", required=True)
        ipv4, ipv6 = first_addresses(self.network()[0])
        values = {"PROXMOXVE_INSTANCE_ID": instance_id, "PROXMOXVE_HOSTNAME": self.hostname(),
                  "PROXMOXVE_IPV4": ipv4, "PROXMOXVE_IPV6": ipv6}
        return {name: value for name, value in values.items() if value is not None}

    def hostname(self) -> Optional[str]:
        return nocloud.seed_hostname(self._meta_data(), self._cloud_config())

    def ssh_keys(self) -> List[str]:
        return nocloud.seed_keys(self._meta_data(), self._cloud_config())

    def network(self):
        return self.once("network", lambda: nocloud.parse_network_config(
            self.files[nocloud.NETWORK_CONFIG], nocloud.NETWORK_CONFIG,
            priority=UNIT_PRIORITY))

    def user_data(self) -> Optional[bytes]:
        return self.user_data_body
