"""DigitalOcean: the droplet's one JSON document, ``/metadata/v1.json``.

Protocol (docs/protocols.md "digitalocean", docs/attributes.md): one GET, no headers,
not 404-tolerant; every part reads the same document (the HTTP client fetches it once a run).

- ``hostname``, ``region`` → ``DIGITALOCEAN_HOSTNAME``, ``DIGITALOCEAN_REGION`` (empty → ``NAME=``)
- ``interfaces.public[i]``: ``ipv4``, ``ipv6``, ``anchor_ipv4`` → ``DIGITALOCEAN_IPV4_PUBLIC_<i>``,
  ``_IPV6_PUBLIC_<i>``, ``_IPV4_ANCHOR_<i>``; ``interfaces.private[i]``: ``ipv4``, ``ipv6`` →
  ``_IPV4_PRIVATE_<i>``, ``_IPV6_PRIVATE_<i>``. ``<i>`` is the position in its list, so an
  interface without a family leaves a gap. Addresses are written in canonical form.
- ``public_keys[]`` → SSH keys; ``hostname`` → the hostname.
- Network units: one per MAC over both lists (addresses merged), priority 10: each address
  (``netmask`` → prefix for IPv4, ``cidr`` for IPv6), a route to its network via its
  ``gateway``, default routes (``0.0.0.0/0``, ``::/0``) via that gateway when ``type`` is
  ``public``, and ``dns.nameservers`` as DNS.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Dict, List, Optional, Tuple

from cl_metadata.parsing import formats
from cl_metadata.errors import InvalidMetadata
from cl_metadata.model import NetworkInterface, Route, VirtualNetDev
from cl_metadata.network.networkd import netmask_prefix, parse_ip
from cl_metadata.providers.base import (ATTRIBUTES, HOSTNAME, NETWORK_UNITS, SSH_KEYS, USER_DATA,
                                        Provider)

BASE = "http://169.254.169.254"
DOCUMENT = BASE + "/metadata/v1.json"
SOURCE = "GET " + DOCUMENT

# address blocks of an interface: JSON key → (IP version, attribute stem per list)
ADDRESS_BLOCKS = {
    "ipv4": (4, {"public": "DIGITALOCEAN_IPV4_PUBLIC", "private": "DIGITALOCEAN_IPV4_PRIVATE"}),
    "ipv6": (6, {"public": "DIGITALOCEAN_IPV6_PUBLIC", "private": "DIGITALOCEAN_IPV6_PRIVATE"}),
    "anchor_ipv4": (4, {"public": "DIGITALOCEAN_IPV4_ANCHOR"}),
}
DEFAULT_ROUTES = {4: "0.0.0.0/0", 6: "::/0"}


USER_DATA_URL = BASE + "/metadata/v1/user-data"  # raw; 404 = none


class DigitalOceanProvider(Provider):
    id = "digitalocean"
    description = "DigitalOcean droplet metadata (v1.json)"
    source = "http"
    features = frozenset({ATTRIBUTES, SSH_KEYS, HOSTNAME, NETWORK_UNITS, USER_DATA})
    user_data_source = "GET " + USER_DATA_URL

    def _document(self) -> Dict[str, Any]:
        return formats.json_object(self.context.http.get(DOCUMENT), SOURCE)

    def attributes(self) -> Dict[str, str]:
        return parse_attributes(self._document())

    def ssh_keys(self) -> List[str]:
        return parse_ssh_keys(self._document())

    def hostname(self) -> Optional[str]:
        return formats.string_field(self._document(), "hostname", SOURCE) or None

    def network(self) -> Tuple[List[NetworkInterface], List[VirtualNetDev]]:
        return parse_network(self._document()), []

    def user_data(self) -> Optional[bytes]:
        return self.context.http.get(USER_DATA_URL, optional=True)


def _objects(value: Any, field: str) -> List[Dict[str, Any]]:
    """A list of JSON objects (absent → empty)."""
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise InvalidMetadata(f"field {field!r}: expected a list of objects", source=SOURCE)
    return value


def _interfaces(document: Dict[str, Any], kind: str) -> List[Dict[str, Any]]:
    interfaces = document.get("interfaces")
    if interfaces is not None and not isinstance(interfaces, dict):
        raise InvalidMetadata("field 'interfaces': expected an object", source=SOURCE)
    return _objects((interfaces or {}).get(kind), f"interfaces.{kind}")


def _blocks(interface: Dict[str, Any], kind: str, index: int):
    """(JSON path, IP version, stem or None, block) for each address block present."""
    for key, (version, stems) in ADDRESS_BLOCKS.items():
        block = interface.get(key)
        path = f"interfaces.{kind}[{index}].{key}"
        if block is None:
            continue
        if not isinstance(block, dict):
            raise InvalidMetadata(f"field {path!r}: expected an object", source=SOURCE)
        yield path, version, stems.get(kind), block


def parse_attributes(document: Dict[str, Any]) -> Dict[str, str]:
    attributes = {}
    for name, field in (("DIGITALOCEAN_HOSTNAME", "hostname"), ("DIGITALOCEAN_REGION", "region")):
        value = formats.string_field(document, field, SOURCE)
        if value is not None:
            attributes[name] = value
    for kind in ("public", "private"):
        for i, interface in enumerate(_interfaces(document, kind)):
            for path, version, stem, block in _blocks(interface, kind, i):
                if stem is not None:
                    ip = parse_ip(block.get("ip_address"), field=path + ".ip_address",
                                  source=SOURCE, version=version)
                    attributes[f"{stem}_{i}"] = str(ip)
    return attributes


def parse_ssh_keys(document: Dict[str, Any]) -> List[str]:
    keys = document.get("public_keys") or []
    if not isinstance(keys, list) or not all(isinstance(key, str) for key in keys):
        raise InvalidMetadata("field 'public_keys': expected a list of strings", source=SOURCE)
    return [line for key in keys for line in formats.key_lines(key)]


def parse_network(document: Dict[str, Any]) -> List[NetworkInterface]:
    dns = document.get("dns") or {}
    servers = (dns.get("nameservers") or []) if isinstance(dns, dict) else None
    if not isinstance(servers, list):
        raise InvalidMetadata("field 'dns.nameservers': expected a list", source=SOURCE)
    nameservers = tuple(str(parse_ip(server, field=f"dns.nameservers[{i}]", source=SOURCE))
                        for i, server in enumerate(servers))
    by_mac: Dict[str, Tuple[List[str], List[Route]]] = {}  # insertion order = metadata order
    for kind in ("public", "private"):
        for i, interface in enumerate(_interfaces(document, kind)):
            mac = interface.get("mac")
            if not isinstance(mac, str):
                raise InvalidMetadata(f"field 'interfaces.{kind}[{i}].mac': expected a string",
                                      source=SOURCE)
            mac = mac.lower()  # the unit renderer validates it
            public = interface.get("type") == "public"
            addresses, routes = by_mac.setdefault(mac, ([], []))
            for path, version, _, block in _blocks(interface, kind, i):
                ip = parse_ip(block.get("ip_address"), field=path + ".ip_address",
                              source=SOURCE, version=version)
                address = ipaddress.ip_interface(f"{ip}/{_prefix(block, path, version)}")
                addresses.append(str(address))
                if block.get("gateway") is None:
                    continue
                gateway = str(parse_ip(block["gateway"], field=path + ".gateway",
                                       source=SOURCE, version=version))
                routes.append(Route(str(address.network), gateway))
                if public and not path.endswith("anchor_ipv4"):
                    routes.append(Route(DEFAULT_ROUTES[version], gateway))
    return [NetworkInterface(mac=mac, addresses=tuple(addresses), routes=tuple(routes),
                             nameservers=nameservers)
            for mac, (addresses, routes) in by_mac.items()]


def _prefix(block: Dict[str, Any], path: str, version: int) -> int:
    if version == 4:
        return netmask_prefix(block.get("netmask"), field=path + ".netmask", source=SOURCE,
                              version=4)
    cidr = block.get("cidr")
    if isinstance(cidr, bool) or not isinstance(cidr, int) or not 0 <= cidr <= 128:
        raise InvalidMetadata(f"field {path + '.cidr'!r}: expected a prefix length from 0 to 128",
                              source=SOURCE)
    return cidr
