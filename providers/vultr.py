"""Vultr metadata service.

Protocol (docs/protocols.md "vultr"): plain-text values under ``http://169.254.169.254/v1/``,
no special headers. Every item may be absent (404) and an empty value is absent too.

| path | attribute |
|---|---|
| ``hostname`` | ``VULTR_HOSTNAME`` (also the hostname) |
| ``instanceid`` | ``VULTR_INSTANCE_ID`` |
| ``region/regioncode`` | ``VULTR_REGION_CODE`` |

SSH keys: ``public-keys``, one key per line (the writer drops lines that are not keys).
"""

from __future__ import annotations

from typing import Optional

from cl_metadata.providers.base import ATTRIBUTES, HOSTNAME, SSH_KEYS, USER_DATA, TextTreeProvider

BASE = "http://169.254.169.254/v1/"
ATTRIBUTE_PATHS = {
    "VULTR_HOSTNAME": "hostname",
    "VULTR_INSTANCE_ID": "instanceid",
    "VULTR_REGION_CODE": "region/regioncode",
}


USER_DATA_URL = "http://169.254.169.254/user-data/user-data"  # raw; 404 = none


class VultrProvider(TextTreeProvider):
    id = "vultr"
    description = "Vultr metadata service"
    features = frozenset({ATTRIBUTES, SSH_KEYS, HOSTNAME, USER_DATA})
    user_data_source = "GET " + USER_DATA_URL
    base = BASE
    attribute_paths = ATTRIBUTE_PATHS
    hostname_path = "hostname"
    keys_path = "public-keys"
    empty_is_absent = True

    def user_data(self) -> Optional[bytes]:
        return self.context.http.get(USER_DATA_URL, optional=True)
