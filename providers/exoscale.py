"""Exoscale metadata service: CloudStack's API at a link-local address.

Protocol (docs/protocols.md "exoscale", docs/attributes.md): plain-text items under
``http://169.254.169.254/1.0/meta-data/``, no headers, the same paths as CloudStack with the
words of the names in another order. **Not** 404-tolerant, as upstream: a missing item (keys
included) fails the run. An empty value is written as ``NAME=``. The hostname is
``local-hostname`` (empty → none); keys are the ``public-keys`` body, one per line.
"""

from __future__ import annotations

from typing import Optional

from cl_metadata.providers.base import ATTRIBUTES, HOSTNAME, SSH_KEYS, USER_DATA, TextTreeProvider

META_DATA = "http://169.254.169.254/1.0/meta-data/"

ATTRIBUTE_PATHS = {
    "EXOSCALE_INSTANCE_ID": "instance-id",
    "EXOSCALE_LOCAL_HOSTNAME": "local-hostname",
    "EXOSCALE_PUBLIC_HOSTNAME": "public-hostname",
    "EXOSCALE_AVAILABILITY_ZONE": "availability-zone",
    "EXOSCALE_PUBLIC_IPV4": "public-ipv4",
    "EXOSCALE_LOCAL_IPV4": "local-ipv4",
    "EXOSCALE_SERVICE_OFFERING": "service-offering",
    "EXOSCALE_CLOUD_IDENTIFIER": "cloud-identifier",
    "EXOSCALE_VM_ID": "vm-id",
}
HOSTNAME_PATH = "local-hostname"
KEYS_PATH = "public-keys"


USER_DATA_URL = "http://169.254.169.254/1.0/user-data"  # raw; 404 = none


class ExoscaleProvider(TextTreeProvider):
    id = "exoscale"
    description = "Exoscale metadata service"
    features = frozenset({ATTRIBUTES, SSH_KEYS, HOSTNAME, USER_DATA})
    user_data_source = "GET " + USER_DATA_URL
    base = META_DATA
    attribute_paths = ATTRIBUTE_PATHS
    hostname_path = HOSTNAME_PATH
    keys_path = KEYS_PATH
    optional = False

    def user_data(self) -> Optional[bytes]:
        return self.context.http.get(USER_DATA_URL, optional=True)
