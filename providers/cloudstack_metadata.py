"""Apache CloudStack metadata service on the virtual router, found through DHCP.

Protocol (docs/protocols.md "cloudstack-metadata", docs/attributes.md): the server is the DHCP
server identifier of this machine's lease (``cl_metadata.sources.dhcp``: systemd-networkd,
NetworkManager or dhclient files); no lease naming one is an error, never a reason to probe.
Plain-text items under ``http://<server>/latest/meta-data/``, no headers; every item may be
absent (404) and an empty value is written as ``NAME=``. ``CLOUDSTACK_HOSTNAME`` repeats
``local-hostname`` as the Go coreos-metadata did. Keys: the ``public-keys`` body, one per line.
No hostname output, deliberately (upstream returns none although ``local-hostname`` exists).
"""

from __future__ import annotations

import logging
from typing import Dict, List, Optional

from cl_metadata.sources import dhcp

from cl_metadata.parsing import formats
from cl_metadata.errors import MetadataError
from cl_metadata.providers.base import ATTRIBUTES, SSH_KEYS, USER_DATA, Provider

ATTRIBUTE_PATHS = {
    "CLOUDSTACK_INSTANCE_ID": "instance-id",
    "CLOUDSTACK_LOCAL_HOSTNAME": "local-hostname",
    "CLOUDSTACK_PUBLIC_HOSTNAME": "public-hostname",
    "CLOUDSTACK_AVAILABILITY_ZONE": "availability-zone",
    "CLOUDSTACK_IPV4_PUBLIC": "public-ipv4",
    "CLOUDSTACK_IPV4_LOCAL": "local-ipv4",
    "CLOUDSTACK_SERVICE_OFFERING": "service-offering",
    "CLOUDSTACK_CLOUD_IDENTIFIER": "cloud-identifier",
    "CLOUDSTACK_VM_ID": "vm-id",
    "CLOUDSTACK_HOSTNAME": "local-hostname",  # Go v0.14 name; the same item, asked once
}
KEYS_PATH = "public-keys"

log = logging.getLogger("cl_metadata")


USER_DATA_PATH = "/latest/user-data"  # on the same server; raw, 404 = none


class CloudStackMetadataProvider(Provider):
    id = "cloudstack-metadata"
    description = "Apache CloudStack metadata service (server from the DHCP lease)"
    source = "http"
    features = frozenset({ATTRIBUTES, SSH_KEYS, USER_DATA})
    user_data_source = "GET http://<DHCP server>" + USER_DATA_PATH

    def attributes(self) -> Dict[str, str]:
        return formats.text_attributes(self.context.http, self._base(), ATTRIBUTE_PATHS)

    def ssh_keys(self) -> List[str]:
        url = self._base() + KEYS_PATH
        return formats.key_lines(formats.text(self.context.http.get(url, optional=True),
                                              "GET " + url))

    def _base(self) -> str:
        return "http://" + self.once("server", self._find_server) + "/latest/meta-data/"

    def _find_server(self) -> str:
        found = dhcp.server_identifier(deadline=self.context.deadline)
        if found is None:
            raise MetadataError(
                "no DHCP lease names a server identifier (read systemd-networkd, "
                "NetworkManager and dhclient lease files); the metadata server is unknown",
                source="DHCP leases")
        log.info("cloudstack-metadata: metadata server %s, the DHCP server of %s",
                 found.value, found.source)
        return found.value

    def user_data(self) -> Optional[bytes]:
        url = "http://" + self.once("server", self._find_server) + USER_DATA_PATH
        return self.context.http.get(url, optional=True)
