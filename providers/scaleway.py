"""Scaleway: the instance document ``/conf?format=json`` at ``169.254.42.42``.

Protocol (docs/protocols.md "scaleway", docs/attributes.md): one GET, no headers, not
404-tolerant. Attribute names are the ones Afterburn's code writes (its docs spell the last three
``SCALEWAY_PRIVATE_IPV4``, ``_PUBLIC_IPV4``, ``_PUBLIC_IPV6``; consumers see the code's names):

- ``hostname`` → ``SCALEWAY_HOSTNAME``, ``id`` → ``SCALEWAY_INSTANCE_ID``, ``commercial_type`` →
  ``SCALEWAY_INSTANCE_TYPE``, ``location.zone_id`` → ``SCALEWAY_ZONE_ID``, ``private_ip`` →
  ``SCALEWAY_IPV4_PRIVATE``, ``public_ip.address`` → ``SCALEWAY_IPV4_PUBLIC``, ``ipv6.address``
  → ``SCALEWAY_IPV6_PUBLIC``. A missing or ``null`` item is absent; an empty one is written empty.
- ``ssh_public_keys[].key`` → SSH keys; ``hostname`` → the hostname.
- Check-in (``--check-in``, every boot): ``PATCH /state`` with exactly
  ``{"state_detail":"booted"}`` and a JSON content type.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from cl_metadata.parsing import formats
from cl_metadata.errors import InvalidMetadata
from cl_metadata.providers.base import (ATTRIBUTES, CHECK_IN, HOSTNAME, SSH_KEYS, USER_DATA,
                                        Provider)

BASE = "http://169.254.42.42"
CONF = BASE + "/conf?format=json"
STATE = BASE + "/state"
SOURCE = "GET " + CONF
BOOTED = b'{"state_detail":"booted"}'
CHECK_IN_HEADERS = {"Content-Type": "application/json"}

ATTRIBUTE_FIELDS = {  # attribute → path of keys in the document
    "SCALEWAY_HOSTNAME": ("hostname",),
    "SCALEWAY_INSTANCE_ID": ("id",),
    "SCALEWAY_INSTANCE_TYPE": ("commercial_type",),
    "SCALEWAY_ZONE_ID": ("location", "zone_id"),
    "SCALEWAY_IPV4_PRIVATE": ("private_ip",),
    "SCALEWAY_IPV4_PUBLIC": ("public_ip", "address"),
    "SCALEWAY_IPV6_PUBLIC": ("ipv6", "address"),
}


# raw; 404 = none. Scaleway answers it only to a privileged source port (below 1024: only root
# can be asking); Ignition binds one at random, the shared HTTP client does not yet.
USER_DATA_URL = BASE + "/user_data/cloud-init"


class ScalewayProvider(Provider):
    id = "scaleway"
    description = "Scaleway instance metadata"
    source = "http"
    features = frozenset({ATTRIBUTES, SSH_KEYS, HOSTNAME, CHECK_IN, USER_DATA})
    user_data_source = "GET " + USER_DATA_URL
    # The service's addresses, IPv4 (the one URLs name) first: an IPv6-only instance has
    # only the second.
    endpoints = (BASE, "http://[fd00:42::42]")

    def _document(self) -> Dict[str, Any]:
        return formats.json_object(self.context.http.get(CONF), SOURCE)

    def attributes(self) -> Dict[str, str]:
        document = self._document()
        attributes = {}
        for name, path in ATTRIBUTE_FIELDS.items():
            value = field_at(document, path)
            if value is not None:
                attributes[name] = value
        return attributes

    def ssh_keys(self) -> List[str]:
        entries = self._document().get("ssh_public_keys") or []
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise InvalidMetadata("field 'ssh_public_keys': expected a list of objects",
                                  source=SOURCE)
        keys: List[str] = []
        for i, entry in enumerate(entries):
            key = entry.get("key")
            if not isinstance(key, str):
                raise InvalidMetadata(f"field 'ssh_public_keys[{i}].key': expected a string",
                                      source=SOURCE)
            keys.extend(formats.key_lines(key))
        return keys

    def hostname(self) -> Optional[str]:
        return formats.string_field(self._document(), "hostname", SOURCE) or None

    def check_in(self) -> None:
        self.context.http.request("PATCH", STATE, headers=CHECK_IN_HEADERS, data=BOOTED)

    def user_data(self) -> Optional[bytes]:
        return self.context.http.get(USER_DATA_URL, optional=True)


def field_at(document: Dict[str, Any], path: tuple) -> Optional[str]:
    """The string at ``path`` (``("public_ip", "address")``); None when any level is absent."""
    parent = document
    for depth, key in enumerate(path[:-1]):
        parent = parent.get(key)
        if parent is None:
            return None
        if not isinstance(parent, dict):
            raise InvalidMetadata(f"field {'.'.join(path[:depth + 1])!r}: expected an object",
                                  source=SOURCE)
    return formats.string_field(parent, path[-1], SOURCE)
