"""Alibaba Cloud ECS metadata service.

Protocol (docs/protocols.md "aliyun"): plain-text values under
``http://100.100.100.200/latest/meta-data/`` (Alibaba's own link-local address, not
169.254.169.254), no special headers. Every item may be absent (404) and an empty value is
absent too. ``hostname`` is also the hostname.

SSH keys: ``public-keys/`` lists key ids one per line (``0/``, ``my-key/``); each id's key is
``public-keys/<id>/openssh-key``, a listed key that is missing is an error (as upstream).
Ids are checked before they go into a URL. Keys are de-duplicated, first occurrence kept
(upstream: a sorted set).
"""

from __future__ import annotations

import re
from typing import Dict, List, Optional

from cl_metadata.parsing import formats
from cl_metadata.errors import InvalidMetadata
from cl_metadata.providers.base import ATTRIBUTES, HOSTNAME, SSH_KEYS, USER_DATA, Provider

BASE = "http://100.100.100.200/latest/meta-data/"
KEY_INDEX = "public-keys/"
_KEY_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")

ATTRIBUTE_PATHS = {
    "ALIYUN_EIPV4": "eipv4",
    "ALIYUN_HOSTNAME": "hostname",
    "ALIYUN_IMAGE_ID": "image-id",
    "ALIYUN_INSTANCE_ID": "instance-id",
    "ALIYUN_INSTANCE_TYPE": "instance/instance-type",
    "ALIYUN_IPV4_PRIVATE": "private-ipv4",
    "ALIYUN_IPV4_PUBLIC": "public-ipv4",
    "ALIYUN_REGION_ID": "region-id",
    "ALIYUN_VPC_ID": "vpc-id",
    "ALIYUN_ZONE_ID": "zone-id",
}


USER_DATA_URL = "http://100.100.100.200/latest/user-data"  # raw; 404 = none


class AliyunProvider(Provider):
    id = "aliyun"
    description = "Alibaba Cloud ECS metadata service"
    source = "http"
    features = frozenset({ATTRIBUTES, SSH_KEYS, HOSTNAME, USER_DATA})
    user_data_source = "GET " + USER_DATA_URL

    def attributes(self) -> Dict[str, str]:
        return formats.text_attributes(self.context.http, BASE, ATTRIBUTE_PATHS,
                                       empty_is_absent=True)

    def hostname(self) -> Optional[str]:
        return self._items(["hostname"])["hostname"]

    def ssh_keys(self) -> List[str]:
        listing = self._items([KEY_INDEX])[KEY_INDEX]
        paths = [f"{KEY_INDEX}{key_id}/openssh-key" for key_id in parse_key_ids(listing)]
        keys: List[str] = []
        for value in self._items(paths, optional=False).values():
            keys.extend(line for line in formats.key_lines(value) if line not in keys)
        return keys

    def _items(self, paths: List[str], optional: bool = True) -> Dict[str, Optional[str]]:
        return formats.text_items(self.context.http, BASE, paths, optional=optional,
                                  empty_is_absent=True)

    def user_data(self) -> Optional[bytes]:
        return self.context.http.get(USER_DATA_URL, optional=True)


def parse_key_ids(listing: Optional[str]) -> List[str]:
    """Key ids from the ``public-keys/`` listing (trailing ``/`` removed)."""
    ids = []
    for number, line in enumerate(formats.key_lines(listing), 1):
        key_id = line.rstrip("/")
        if not _KEY_ID.fullmatch(key_id):
            raise InvalidMetadata(f"line {number} is not a key id",
                                  source="GET " + BASE + KEY_INDEX)
        ids.append(key_id)
    return ids
