"""Vultr metadata service.

Protocol (providers.md §2 "vultr"): plain-text values under ``http://169.254.169.254/v1/``,
no special headers. Every item may be absent (404) and an empty value is absent too.

| path | attribute |
|---|---|
| ``hostname`` | ``VULTR_HOSTNAME`` (also the hostname) |
| ``instanceid`` | ``VULTR_INSTANCE_ID`` |
| ``region/regioncode`` | ``VULTR_REGION_CODE`` |

SSH keys: ``public-keys``, one key per line (the writer drops lines that are not keys).
"""

from __future__ import annotations

from typing import Dict, List, Optional

from cl_metadata import formats
from cl_metadata.providers.base import ATTRIBUTES, HOSTNAME, SSH_KEYS, Provider

BASE = "http://169.254.169.254/v1/"
ATTRIBUTE_PATHS = {
    "VULTR_HOSTNAME": "hostname",
    "VULTR_INSTANCE_ID": "instanceid",
    "VULTR_REGION_CODE": "region/regioncode",
}


class VultrProvider(Provider):
    id = "vultr"
    description = "Vultr metadata service"
    source = "http"
    features = frozenset({ATTRIBUTES, SSH_KEYS, HOSTNAME})

    def attributes(self) -> Dict[str, str]:
        return formats.text_attributes(self.context.http, BASE, ATTRIBUTE_PATHS,
                                       empty_is_absent=True)

    def hostname(self) -> Optional[str]:
        return self._item("hostname")

    def ssh_keys(self) -> List[str]:
        return formats.key_lines(self._item("public-keys"))

    def _item(self, path: str) -> Optional[str]:
        return formats.text_items(self.context.http, BASE, [path], empty_is_absent=True)[path]
