"""Oracle Cloud Infrastructure instance metadata service, version 2.

Protocol (docs/protocols.md "oraclecloud", docs/hardening.md): one JSON document,
``GET http://169.254.169.254/opc/v2/instance`` with ``Authorization: Bearer Oracle`` (v1 needs
no header; v2 does, which keeps SSRF-style requests out). Not 404-tolerant: a 404 is an error.
Every output reads the same document (the HTTP client fetches it once per run).

Mapping (camelCase fields): ``availabilityDomain``, ``compartmentId``, ``faultDomain``,
``hostname`` (also the hostname), ``id``, ``shape``, ``canonicalRegionName`` →
``ORACLECLOUD_AVAILABILITY_DOMAIN``, ``_COMPARTMENT_ID``, ``_FAULT_DOMAIN``, ``_HOSTNAME``,
``_INSTANCE_ID``, ``_INSTANCE_SHAPE``, ``_REGION_ID``. Upstream requires all seven fields; here
a missing one is an absent attribute and an empty one is written as ``NAME=``.
SSH keys: ``metadata.ssh_authorized_keys``, one string of newline-separated keys; missing or
``null`` → zero keys; any other type is an error naming the type, never the value.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from cl_metadata.parsing import formats
from cl_metadata.errors import InvalidMetadata
from cl_metadata.parsing.encodings import strict_base64
from cl_metadata.providers.base import ATTRIBUTES, HOSTNAME, SSH_KEYS, USER_DATA, Provider

INSTANCE_URL = "http://169.254.169.254/opc/v2/instance"
HEADERS = {"Authorization": "Bearer Oracle"}
SOURCE = "GET " + INSTANCE_URL

ATTRIBUTE_FIELDS = {
    "ORACLECLOUD_AVAILABILITY_DOMAIN": "availabilityDomain",
    "ORACLECLOUD_COMPARTMENT_ID": "compartmentId",
    "ORACLECLOUD_FAULT_DOMAIN": "faultDomain",
    "ORACLECLOUD_HOSTNAME": "hostname",
    "ORACLECLOUD_INSTANCE_ID": "id",
    "ORACLECLOUD_INSTANCE_SHAPE": "shape",
    "ORACLECLOUD_REGION_ID": "canonicalRegionName",
}


USER_DATA_URL = INSTANCE_URL + "/metadata/user_data"  # base64 of the user's bytes; 404 = none


class OracleCloudProvider(Provider):
    id = "oraclecloud"
    description = "Oracle Cloud Infrastructure instance metadata (v2)"
    source = "http"
    features = frozenset({ATTRIBUTES, SSH_KEYS, HOSTNAME, USER_DATA})
    user_data_source = "GET " + USER_DATA_URL
    user_data_encoding = "base64"
    # The service's addresses, IPv4 (the one URLs name) first.
    endpoints = ("http://169.254.169.254", "http://[fd00:c1::a9fe:a9fe]")

    def _document(self) -> Dict[str, Any]:
        return formats.json_object(self.context.http.get(INSTANCE_URL, headers=HEADERS), SOURCE)

    def attributes(self) -> Dict[str, str]:
        return parse_attributes(self._document())

    def hostname(self) -> Optional[str]:
        return formats.string_field(self._document(), "hostname", SOURCE) or None

    def ssh_keys(self) -> List[str]:
        return parse_ssh_keys(self._document())

    def user_data(self) -> Optional[bytes]:
        body = self.context.http.get(USER_DATA_URL, optional=True, headers=HEADERS)
        return None if body is None else strict_base64(body, "GET " + USER_DATA_URL)


def parse_attributes(document: Dict[str, Any]) -> Dict[str, str]:
    attributes = {}
    for name, field in ATTRIBUTE_FIELDS.items():
        value = formats.string_field(document, field, SOURCE)
        if value is not None:
            attributes[name] = value
    return attributes


def parse_ssh_keys(document: Dict[str, Any]) -> List[str]:
    metadata = document.get("metadata")
    if metadata is None:
        return []
    if not isinstance(metadata, dict):
        raise InvalidMetadata(f"field 'metadata': expected an object, got {_type(metadata)}",
                              source=SOURCE)
    keys = metadata.get("ssh_authorized_keys")
    if keys is None:
        return []
    if not isinstance(keys, str):
        raise InvalidMetadata("field 'metadata.ssh_authorized_keys': expected a string, got "
                              f"{_type(keys)}", source=SOURCE)
    return formats.key_lines(keys)


def _type(value: Any) -> str:
    return {dict: "an object", list: "a list", bool: "a boolean"}.get(type(value), "a number")
