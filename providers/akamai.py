"""Akamai Connected Cloud (Linode) metadata service.

Protocol (docs/protocols.md "akamai"): ``PUT http://169.254.169.254/v1/token`` with
``Metadata-Token-Expiry-Seconds: 300`` answers a token; every GET carries it as
``Metadata-Token`` with ``Accept: application/json``. Every document may be absent (404).
The token is PUT once per run (parts share it) and never appears in a message or log line.

``/v1/instance``: ``id``, ``host_uuid``, ``label``, ``region``, ``type``, ``tags`` (joined
with ``:``) → ``AKAMAI_INSTANCE_ID``, ``_INSTANCE_HOST_UUID``, ``_INSTANCE_LABEL``,
``_INSTANCE_REGION``, ``_INSTANCE_TYPE``, ``_INSTANCE_TAGS``. ``/v1/network``: ``ipv4.public[]``,
``.private[]``, ``.shared[]`` → ``AKAMAI_PUBLIC_IPV4_<i>``, ``_PRIVATE_IPV4_<i>``,
``_SHARED_IPV4_<i>``; ``ipv6.slaac``, ``.link_local`` → ``AKAMAI_IPV6_SLAAC``,
``_IPV6_LINK_LOCAL``; ``ipv6.ranges[]``, ``.shared_ranges[]`` → ``AKAMAI_IPV6_RANGE_<i>``,
``_IPV6_SHARED_RANGE_<i>``. Addresses keep their prefix (``/32``, ``/128``).
``/v1/ssh-keys``: ``{"users": {"<user>": ["key", …]}}``, every user's keys to the target user,
users in name order (upstream: map order). No hostname, no check-in.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from cl_metadata.parsing import formats
from cl_metadata.errors import InvalidMetadata
from cl_metadata.parsing.encodings import strict_base64
from cl_metadata.providers.base import ATTRIBUTES, SSH_KEYS, USER_DATA, Provider

BASE = "http://169.254.169.254/v1/"
TOKEN_URL = BASE + "token"
TOKEN_TTL = {"Metadata-Token-Expiry-Seconds": "300"}
INSTANCE, NETWORK, SSH_KEYS_DOC = BASE + "instance", BASE + "network", BASE + "ssh-keys"
INSTANCE_FIELDS = {"ID": "id", "HOST_UUID": "host_uuid", "LABEL": "label", "REGION": "region",
                   "TYPE": "type"}


USER_DATA_URL = BASE + "user-data"  # base64 of the user's bytes; 404 = none


class AkamaiProvider(Provider):
    id = "akamai"
    description = "Akamai Connected Cloud (Linode) metadata service"
    source = "http"
    features = frozenset({ATTRIBUTES, SSH_KEYS, USER_DATA})
    user_data_source = "GET " + USER_DATA_URL
    user_data_encoding = "base64"
    # The service's addresses, IPv4 (the one URLs name) first.
    endpoints = ("http://169.254.169.254", "http://[fd00:a9fe:a9fe::1]")

    def _get_many(self, urls: List[str]) -> List[Optional[Dict[str, Any]]]:
        token = self.once("token", self._put_token)
        headers = {"Metadata-Token": token, "Accept": "application/json"}
        bodies = self.context.http.get_many(
            [(url, {"optional": True, "headers": headers}) for url in urls])
        return [None if body is None else formats.json_object(body, "GET " + url)
                for url, body in zip(urls, bodies)]

    def _put_token(self) -> str:
        response = self.context.http.request("PUT", TOKEN_URL, headers=TOKEN_TTL)
        token = formats.text(response.body, "PUT " + TOKEN_URL)
        if not token or not token.isascii() or not token.isprintable() or " " in token:
            raise InvalidMetadata("the token is empty or not one word of printable ASCII",
                                  source="PUT " + TOKEN_URL)
        return token

    def attributes(self) -> Dict[str, str]:
        instance, network = self._get_many([INSTANCE, NETWORK])
        attributes = parse_instance(instance) if instance is not None else {}
        if network is not None:
            attributes.update(parse_network(network))
        return attributes

    def ssh_keys(self) -> List[str]:
        document = self._get_many([SSH_KEYS_DOC])[0]
        return parse_ssh_keys(document) if document is not None else []

    def user_data(self) -> Optional[bytes]:
        token = self.once("token", self._put_token)
        body = self.context.http.get(USER_DATA_URL, optional=True,
                                     headers={"Metadata-Token": token, "Accept": "*/*"})
        return None if body is None else strict_base64(body, "GET " + USER_DATA_URL)


def parse_instance(document: Dict[str, Any]) -> Dict[str, str]:
    source = "GET " + INSTANCE
    attributes = {}
    for name, field in INSTANCE_FIELDS.items():
        value = formats.string_field(document, field, source)
        if value is not None:
            attributes[f"AKAMAI_INSTANCE_{name}"] = value
    attributes["AKAMAI_INSTANCE_TAGS"] = ":".join(_strings(document, "tags", source))
    return attributes


def parse_network(document: Dict[str, Any]) -> Dict[str, str]:
    source = "GET " + NETWORK
    ipv4, ipv6 = (_object(document, family, source) for family in ("ipv4", "ipv6"))
    attributes = {}
    for kind in ("public", "private", "shared"):
        for i, address in enumerate(_strings(ipv4, kind, source, "ipv4.")):
            attributes[f"AKAMAI_{kind.upper()}_IPV4_{i}"] = address
    for field, name in (("slaac", "SLAAC"), ("link_local", "LINK_LOCAL")):
        value = _string(ipv6, field, source, "ipv6.")
        if value is not None:
            attributes[f"AKAMAI_IPV6_{name}"] = value
    for field, name in (("ranges", "RANGE"), ("shared_ranges", "SHARED_RANGE")):
        for i, prefix in enumerate(_strings(ipv6, field, source, "ipv6.")):
            attributes[f"AKAMAI_IPV6_{name}_{i}"] = prefix
    return attributes


def parse_ssh_keys(document: Dict[str, Any]) -> List[str]:
    source = "GET " + SSH_KEYS_DOC
    users = _object(document, "users", source)
    keys: List[str] = []
    for user in sorted(users):
        keys.extend(key for key in _strings(users, user, source, "users.") if key)
    return keys


def _string(document: Dict[str, Any], field: str, source: str, parent: str) -> Optional[str]:
    return formats.string_field({parent + field: document.get(field)}, parent + field, source)


def _object(document: Dict[str, Any], field: str, source: str) -> Dict[str, Any]:
    value = document.get(field)
    if value is not None and not isinstance(value, dict):
        raise InvalidMetadata(f"field {field!r}: expected an object", source=source)
    return value or {}


def _strings(document: Dict[str, Any], field: str, source: str, parent: str = "") -> List[str]:
    value = document.get(field)
    if value is not None and not (isinstance(value, list)
                                  and all(isinstance(item, str) for item in value)):
        raise InvalidMetadata(f"field {parent + field!r}: expected a list of strings",
                              source=source)
    return [item.strip() for item in value or []]
