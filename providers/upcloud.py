"""UpCloud metadata service.

Protocol (docs/protocols.md "upcloud"): plain-text values under
``http://169.254.169.254/metadata/v1/`` (note the underscores in the paths), no special headers.
Every item may be absent (404) and an empty value is absent too.

| path | attribute |
|---|---|
| ``hostname`` | ``UPCLOUD_HOSTNAME`` (also the hostname) |
| ``instance_id`` | ``UPCLOUD_INSTANCE_ID`` |
| ``region`` | ``UPCLOUD_REGION`` |

SSH keys: ``public_keys``, one key per line (the writer drops lines that are not keys).
"""

from __future__ import annotations

from typing import Optional

from cl_metadata.providers.base import ATTRIBUTES, HOSTNAME, SSH_KEYS, USER_DATA, TextTreeProvider

BASE = "http://169.254.169.254/metadata/v1/"
ATTRIBUTE_PATHS = {
    "UPCLOUD_HOSTNAME": "hostname",
    "UPCLOUD_INSTANCE_ID": "instance_id",
    "UPCLOUD_REGION": "region",
}


USER_DATA_URL = BASE + "user_data"  # raw; 404 = none


class UpCloudProvider(TextTreeProvider):
    id = "upcloud"
    description = "UpCloud metadata service"
    features = frozenset({ATTRIBUTES, SSH_KEYS, HOSTNAME, USER_DATA})
    user_data_source = "GET " + USER_DATA_URL
    base = BASE
    attribute_paths = ATTRIBUTE_PATHS
    hostname_path = "hostname"
    keys_path = "public_keys"
    empty_is_absent = True

    def user_data(self) -> Optional[bytes]:
        return self.context.http.get(USER_DATA_URL, optional=True)
