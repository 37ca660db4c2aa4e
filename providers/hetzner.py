"""Hetzner Cloud: YAML documents under ``/hetzner/v1/metadata``.

Protocol (docs/protocols.md "hetzner"): no headers, nothing 404-tolerant.

- ``GET …/metadata`` (YAML mapping): ``availability-zone``, ``hostname``, ``instance-id``,
  ``public-ipv4``, ``region`` → ``HETZNER_AVAILABILITY_ZONE``, ``_HOSTNAME``, ``_INSTANCE_ID``,
  ``_PUBLIC_IPV4``, ``_REGION`` (an empty value is written empty); ``HETZNER_PUBLIC_IPV6`` =
  address (without prefix) of the first ``ipv6: true`` subnet of the first ``physical`` entry
  of its ``network-config``.
- ``GET …/metadata/private-networks`` (YAML list): ``ip`` → ``HETZNER_PRIVATE_IPV4_<i>``.
- ``GET …/metadata/hostname`` (text, empty → none); ``GET …/metadata/public-keys`` (JSON list).
- ``GET …/metadata/network-config``: cloud-init network config v1, read by the NoCloud parser
  (``cl_metadata.sources.nocloud_format``): each ``physical`` entry is one unit of priority 20 (DHCP subnets, static
  addresses with a default route via their gateway, ``dns_nameservers``), matched by its
  ``mac_address`` when it has one (the renderer's rule: the platform's ``eth0`` is the name
  cloud-init would give the NIC, which may not be the name it has here).

YAML goes through the NoCloud parser's loader (``yaml.SafeLoader`` resolving no plain scalar
but null, so ``instance-id: 42`` and a MAC stay text) after the HTTP client's size cap, within
the shared bounds on nesting and alias expansion (``cl_metadata.parsing.documents``); a document whose
top level is not the expected mapping or list is refused.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

from cl_metadata.parsing import formats
from cl_metadata.errors import InvalidMetadata
from cl_metadata.model import NetworkInterface, VirtualNetDev
from cl_metadata.network.networkd import parse_ip
from cl_metadata.parsing.fields import Fields
from cl_metadata.sources.nocloud_format import load_yaml, parse_network_config
from cl_metadata.providers.base import (ATTRIBUTES, HOSTNAME, NETWORK_UNITS, SSH_KEYS, USER_DATA,
                                        Provider)

BASE = "http://169.254.169.254/hetzner/v1/metadata"
PRIVATE_NETWORKS = BASE + "/private-networks"
HOSTNAME_URL = BASE + "/hostname"
PUBLIC_KEYS = BASE + "/public-keys"
NETWORK_CONFIG = BASE + "/network-config"
NETWORK_PRIORITY = 20

ROOT_FIELDS = {
    "HETZNER_AVAILABILITY_ZONE": "availability-zone",
    "HETZNER_HOSTNAME": "hostname",
    "HETZNER_INSTANCE_ID": "instance-id",
    "HETZNER_PUBLIC_IPV4": "public-ipv4",
    "HETZNER_REGION": "region",
}


USER_DATA_URL = "http://169.254.169.254/hetzner/v1/userdata"  # raw; 404 = none


class HetznerProvider(Provider):
    id = "hetzner"
    description = "Hetzner Cloud metadata service"
    source = "http"
    features = frozenset({ATTRIBUTES, SSH_KEYS, HOSTNAME, NETWORK_UNITS, USER_DATA})
    user_data_source = "GET " + USER_DATA_URL

    def attributes(self) -> Dict[str, str]:
        root, networks = self.context.http.get_many([BASE, PRIVATE_NETWORKS])
        attributes = parse_root(yaml_document(root, "GET " + BASE, dict))
        source = "GET " + PRIVATE_NETWORKS
        for i, network in enumerate(yaml_document(networks, source, list) or []):
            if not isinstance(network, dict):
                raise InvalidMetadata(f"entry {i}: expected a mapping", source=source)
            ip = formats.string_field(network, "ip", source)
            if ip is not None:
                attributes[f"HETZNER_PRIVATE_IPV4_{i}"] = ip
        return attributes

    def hostname(self) -> Optional[str]:
        return formats.text(self.context.http.get(HOSTNAME_URL), "GET " + HOSTNAME_URL) or None

    def ssh_keys(self) -> List[str]:
        source = "GET " + PUBLIC_KEYS
        keys = formats.json_document(self.context.http.get(PUBLIC_KEYS), source)
        if not isinstance(keys, list) or not all(isinstance(key, str) for key in keys):
            raise InvalidMetadata("expected a JSON list of strings", source=source)
        return [line for key in keys for line in formats.key_lines(key)]

    def network(self) -> Tuple[List[NetworkInterface], List[VirtualNetDev]]:
        source = "GET " + NETWORK_CONFIG
        text = _decode(self.context.http.get(NETWORK_CONFIG), source)
        return parse_network_config(text, source, priority=NETWORK_PRIORITY)

    def user_data(self) -> Optional[bytes]:
        return self.context.http.get(USER_DATA_URL, optional=True)


def _decode(body: bytes, source: str) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as err:
        raise InvalidMetadata(f"not valid UTF-8 (byte {err.start})", source=source) from None


def yaml_document(body: bytes, source: str, expected: type) -> Any:
    """``body`` as bounded YAML (``load_yaml``); an empty document is None, else of ``expected``."""
    document = load_yaml(_decode(body, source), source)
    if document is not None and not isinstance(document, expected):
        kind = "a mapping" if expected is dict else "a list"
        raise InvalidMetadata(f"expected {kind} at the top level", source=source)
    return document


def parse_root(document: Optional[Dict[str, Any]]) -> Dict[str, str]:
    source = "GET " + BASE
    if document is None:
        raise InvalidMetadata("empty document", source=source)
    attributes = {}
    for name, field in ROOT_FIELDS.items():
        value = formats.string_field(document, field, source)
        if value is not None:
            attributes[name] = value
    ipv6 = public_ipv6(document.get("network-config"), source)
    if ipv6 is not None:
        attributes["HETZNER_PUBLIC_IPV6"] = ipv6
    return attributes


def public_ipv6(config: Any, source: str) -> Optional[str]:
    """Address of the first ``ipv6: true`` subnet of the first ``physical`` entry, no prefix."""
    fields = Fields(source)
    where = "network-config.config"
    entries = fields.items(fields.mapping(config, "network-config").get("config"), where)
    physical = [(f"{where}[{i}]", e) for i, e in enumerate(entries)
                if isinstance(e, dict) and e.get("type") == "physical"][:1]
    for at, entry in physical:
        for j, subnet in enumerate(fields.items(entry.get("subnets"), at + ".subnets")):
            at_subnet = f"{at}.subnets[{j}]"
            subnet = fields.mapping(subnet, at_subnet)
            if fields.flag(subnet.get("ipv6"), at_subnet + ".ipv6"):
                address = subnet.get("address")
                if address is None:
                    return None
                ip = address.partition("/")[0] if isinstance(address, str) else None
                return str(parse_ip(ip, field=at_subnet + ".address", source=source, version=6))
    return None
