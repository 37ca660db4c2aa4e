"""The OpenStack config-drive layout (``config-2``, providers.md §3.2) as ``powervs``,
``ibmcloud-classic`` and ``kubevirt`` read it: ``meta_data.json`` and ``network_data.json``.

``network_data.json`` gives one interface per link that carries networks: ``links[]`` (``id``,
``name``, ``type``, ``ethernet_mac_address``) matched by ``networks[].link``; a network of type
``ipv4``/``ipv6`` adds ``ip_address`` with ``netmask`` (dotted, prefix length or IPv6 mask) and
its ``routes[]`` (``network``, ``netmask``, ``gateway``), ``ipv4_dhcp``/``ipv6_dhcp`` turn on
DHCP; per-network ``dns_nameservers`` and ``services[]`` of type ``dns`` (for every interface)
give the nameservers. Bond and VLAN links cannot be expressed yet: skipped with a warning.
"""

from __future__ import annotations

import logging
from typing import Any, Dict, List, Optional

from cl_metadata import formats
from cl_metadata.model import NetworkInterface, Route
from cl_metadata.fields import Fields, dhcp_mode, unique

log = logging.getLogger("cl_metadata")

LABELS = ("config-2", "CONFIG-2")
META_DATA = "openstack/latest/meta_data.json"
NETWORK_DATA = "openstack/latest/network_data.json"


def parse_meta_data(body: bytes) -> Dict[str, Any]:
    return formats.json_object(body, META_DATA)


def meta_data_field(meta: Dict[str, Any], field: str) -> Optional[str]:
    return formats.string_field(meta, field, META_DATA)


def meta_data_keys(meta: Dict[str, Any]) -> List[str]:
    keys = formats.string_map(meta, "public_keys", META_DATA)
    # a JSON map has no meaningful order; sort by key name so runs are reproducible
    return [line for name in sorted(keys) for line in formats.key_lines(keys[name])]


def parse_network_data(body: Optional[bytes], *, priority: int = 10) -> List[NetworkInterface]:
    if body is None:
        return []
    fields = Fields(NETWORK_DATA)
    doc = fields.mapping(formats.json_document(body, NETWORK_DATA), "top level")
    links = _links(doc, fields)
    global_dns = [fields.ip(service.get("address"), f"services[{i}].address")
                  for i, service in _entries(doc, "services", fields)
                  if service.get("type") == "dns"]
    found: Dict[str, Dict[str, list]] = {}
    for i, net in _entries(doc, "networks", fields):
        at = f"networks[{i}]"
        link = fields.string(net.get("link"), at + ".link", required=True)
        if link not in links:
            log.warning("%s: %s: refers to no usable link; skipped", NETWORK_DATA, at)
            continue
        _add_network(found.setdefault(link, {"addresses": [], "routes": [], "dns": [],
                                             "dhcp": []}), net, fields, at)
    return [_interface(links[link_id], found[link_id], global_dns, fields, priority)
            for link_id in links if link_id in found]


def _entries(doc: Dict[str, Any], key: str, fields: Fields):
    return [(i, fields.mapping(entry, f"{key}[{i}]"))
            for i, entry in enumerate(fields.items(doc.get(key), key))]


def _links(doc: Dict[str, Any], fields: Fields) -> Dict[str, tuple]:
    links = {}
    for i, link in _entries(doc, "links", fields):
        at = f"links[{i}]"
        link_id = fields.string(link.get("id"), at + ".id", required=True)
        if link.get("type") in ("bond", "vlan"):
            log.warning("%s: %s: %s links are not supported; skipped", NETWORK_DATA, at,
                        link["type"])
            continue
        links[link_id] = (at, link)
    return links


def _add_network(state: Dict[str, list], net: Dict[str, Any], fields: Fields, at: str) -> None:
    kind = fields.string(net.get("type"), at + ".type", required=True)
    if kind in ("ipv4", "ipv6"):
        state["addresses"].append(fields.cidr(net.get("ip_address"), net.get("netmask"),
                                              at + ".ip_address", at + ".netmask"))
        for j, route in enumerate(fields.items(net.get("routes"), at + ".routes")):
            r = f"{at}.routes[{j}]"
            route = fields.mapping(route, r)
            state["routes"].append(Route(
                fields.destination(route.get("network"), route.get("netmask"), r + ".network",
                                   r + ".netmask"),
                fields.ip(route.get("gateway"), r + ".gateway")))
    elif kind in ("ipv4_dhcp", "ipv6_dhcp"):
        state["dhcp"].append(kind)
    else:  # ipv6_slaac and friends: networkd accepts router advertisements by default
        log.info("%s: %s: network type not configured by unit files", NETWORK_DATA, at)
    state["dns"] += fields.ips(net.get("dns_nameservers"), at + ".dns_nameservers")


def _interface(link: tuple, state: Dict[str, list], global_dns: List[str], fields: Fields,
               priority: int) -> NetworkInterface:
    at, link = link
    name, mac = link.get("name"), link.get("ethernet_mac_address")
    if name is None and mac is None:
        raise fields.error(at, "has neither a name nor an ethernet_mac_address")
    return NetworkInterface(
        name=fields.ifname(name, at + ".name") if name is not None else None,
        mac=fields.mac(mac, at + ".ethernet_mac_address") if mac is not None else None,
        priority=priority, addresses=unique(state["addresses"]), routes=unique(state["routes"]),
        nameservers=unique(state["dns"] + global_dns),
        dhcp=dhcp_mode("ipv4_dhcp" in state["dhcp"], "ipv6_dhcp" in state["dhcp"]))
