"""UpCloud metadata service.

Protocol (providers.md §2 "upcloud"): plain-text values under
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

from typing import Dict, List, Optional

from cl_metadata import formats
from cl_metadata.providers.base import ATTRIBUTES, HOSTNAME, SSH_KEYS, Provider

BASE = "http://169.254.169.254/metadata/v1/"
ATTRIBUTE_PATHS = {
    "UPCLOUD_HOSTNAME": "hostname",
    "UPCLOUD_INSTANCE_ID": "instance_id",
    "UPCLOUD_REGION": "region",
}


class UpCloudProvider(Provider):
    id = "upcloud"
    description = "UpCloud metadata service"
    source = "http"
    features = frozenset({ATTRIBUTES, SSH_KEYS, HOSTNAME})

    def attributes(self) -> Dict[str, str]:
        return formats.text_attributes(self.context.http, BASE, ATTRIBUTE_PATHS,
                                       empty_is_absent=True)

    def hostname(self) -> Optional[str]:
        return self._item("hostname")

    def ssh_keys(self) -> List[str]:
        return formats.key_lines(self._item("public_keys"))

    def _item(self, path: str) -> Optional[str]:
        return formats.text_items(self.context.http, BASE, [path], empty_is_absent=True)[path]
