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

from cl_metadata.providers.base import ATTRIBUTES, HOSTNAME, SSH_KEYS, TextTreeProvider

BASE = "http://169.254.169.254/metadata/v1/"
ATTRIBUTE_PATHS = {
    "UPCLOUD_HOSTNAME": "hostname",
    "UPCLOUD_INSTANCE_ID": "instance_id",
    "UPCLOUD_REGION": "region",
}


class UpCloudProvider(TextTreeProvider):
    id = "upcloud"
    description = "UpCloud metadata service"
    features = frozenset({ATTRIBUTES, SSH_KEYS, HOSTNAME})
    base = BASE
    attribute_paths = ATTRIBUTE_PATHS
    hostname_path = "hostname"
    keys_path = "public_keys"
    empty_is_absent = True
