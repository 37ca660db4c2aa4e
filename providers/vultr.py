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

    def _values(self, paths: List[str]) -> List[Optional[str]]:
        """Stripped values; None when absent (404) or empty."""
        bodies = self.context.http.get_many([(BASE + p, {"optional": True}) for p in paths])
        return [formats.text(body, "GET " + BASE + path) or None
                for path, body in zip(paths, bodies)]

    def attributes(self) -> Dict[str, str]:
        values = self._values(list(ATTRIBUTE_PATHS.values()))
        return {name: value for name, value in zip(ATTRIBUTE_PATHS, values) if value is not None}

    def hostname(self) -> Optional[str]:
        return self._values(["hostname"])[0]

    def ssh_keys(self) -> List[str]:
        return formats.key_lines(self._values(["public-keys"])[0])
