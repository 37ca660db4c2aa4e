"""NoCloud: cloud-init's seed drive, labelled ``cidata`` (or ``CIDATA``), iso9660 or vfat
(docs/protocols.md). No Container Linux agent read it; the names below are this project's.

    meta-data       instance-id            → NOCLOUD_INSTANCE_ID
                    local-hostname         → the hostname, unless user-data names one
                    public-keys            → SSH keys
    user-data       #cloud-config only: hostname, else fqdn → NOCLOUD_HOSTNAME and the
                    hostname; ssh_authorized_keys → SSH keys (after meta-data's, each once)
    network-config  v1 or v2 → networkd units (priority 10); the first address of each family
                    on the first interface with static addresses → NOCLOUD_IPV4, NOCLOUD_IPV6

``meta-data`` is required (as for cloud-init); the other files are optional. The drive is
trusted only because the platform was chosen explicitly (docs/hardening.md: cloud-init re-ran
first-boot configuration from a seed attached later); this agent never probes for it.
"""

from __future__ import annotations

import logging
from typing import Any, Dict, List, Optional

from cl_metadata.sources import nocloud_format as nocloud
from cl_metadata.parsing.fields import Fields, first_addresses
from cl_metadata.providers.base import (ATTRIBUTES, HOSTNAME, NETWORK_UNITS, SSH_KEYS, USER_DATA,
                                        Provider)
from cl_metadata.sources.user_data import as_text

log = logging.getLogger("cl_metadata")

DRIVE_WAIT = 5.0  # seconds for udev to show the label; the drive is the only source
UNIT_PRIORITY = 10


class NoCloudProvider(Provider):
    id = "nocloud"
    description = "cloud-init NoCloud seed (cidata drive)"
    source = "config drive"
    features = frozenset({ATTRIBUTES, SSH_KEYS, HOSTNAME, NETWORK_UNITS, USER_DATA})
    user_data_source = nocloud.USER_DATA + " on the cidata drive"

    def __init__(self, context):
        super().__init__(context)
        with context.config_drive(nocloud.LABELS, wait=DRIVE_WAIT) as drive:
            self.files = {
                nocloud.META_DATA: drive.read_text(nocloud.META_DATA),
                nocloud.USER_DATA: drive.read(nocloud.USER_DATA, optional=True),  # any bytes
                nocloud.NETWORK_CONFIG: drive.read_text(nocloud.NETWORK_CONFIG, optional=True),
            }

    def _meta_data(self) -> Dict[str, Any]:
        return self.once("meta-data", lambda: nocloud.parse_meta_data(
            self.files[nocloud.META_DATA], nocloud.META_DATA))

    def _cloud_config(self) -> Optional[Dict[str, Any]]:
        return self.once("user-data", lambda: nocloud.parse_cloud_config(
            as_text(self.files[nocloud.USER_DATA], nocloud.USER_DATA),
            nocloud.USER_DATA))

    def attributes(self) -> Dict[str, str]:
        instance_id = Fields(nocloud.META_DATA).string(self._meta_data().get("instance-id"),
                                                       "instance-id")
        ipv4, ipv6 = first_addresses(self.network()[0])
        values = {"NOCLOUD_INSTANCE_ID": instance_id, "NOCLOUD_HOSTNAME": self.hostname(),
                  "NOCLOUD_IPV4": ipv4, "NOCLOUD_IPV6": ipv6}
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
        return self.files[nocloud.USER_DATA]
