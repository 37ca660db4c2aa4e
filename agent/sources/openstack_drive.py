"""The OpenStack config-drive layout (``config-2``) as ``openstack``, ``powervs``,
``ibmcloud-classic``, ``kubevirt``, ``nutanix`` and ``cloudstack-configdrive`` read it:
``meta_data.json`` and ``network_data.json`` (the metadata service serves the same
``network_data.json``).

``network_data.json``: ``links[]`` (``id``, ``name``, ``type``, ``ethernet_mac_address``) are
NICs, bonds (``bond_links`` naming member link ids, ``bond_mode``, ``bond_miimon``,
``bond_xmit_hash_policy``) or VLANs (``vlan_link``, ``vlan_id``, ``vlan_mac_address``);
``networks[]`` attach to a link through ``link``: type ``ipv4``/``ipv6`` adds ``ip_address`` with
``netmask`` (dotted, prefix length or IPv6 mask), ``ipv4_dhcp``/``ipv6_dhcp`` turn on DHCP, and
every network's ``routes[]`` (``network``, ``netmask``, ``gateway``) and ``dns_nameservers``
count, DHCP or not; ``services[]`` of type ``dns`` go to every link that carries a network. A NIC
gets a unit when a network, a bond or a VLAN uses it.
"""

from __future__ import annotations

import logging
from typing import Any, Dict, List, Optional, Tuple

from cl_metadata.parsing import formats
from cl_metadata.model import BondOptions, NetworkInterface, Route, VirtualNetDev
from cl_metadata.parsing.fields import Fields, dhcp_mode, unique
from cl_metadata.network.topology import BOND_SETTINGS, Topology, read_options

log = logging.getLogger("cl_metadata")

LABELS = ("config-2", "CONFIG-2")
META_DATA = "openstack/latest/meta_data.json"
NETWORK_DATA = "openstack/latest/network_data.json"
USER_DATA = "openstack/latest/user_data"  # raw; absent = none (the file Ignition reads)

Network = Tuple[List[NetworkInterface], List[VirtualNetDev]]


def parse_meta_data(body: bytes) -> Dict[str, Any]:
    return formats.json_object(body, META_DATA)


def meta_data_field(meta: Dict[str, Any], field: str) -> Optional[str]:
    return formats.string_field(meta, field, META_DATA)


def meta_data_keys(meta: Dict[str, Any]) -> List[str]:
    keys = formats.string_map(meta, "public_keys", META_DATA)
    # a JSON map has no meaningful order; sort by key name so runs are reproducible
    return [line for name in sorted(keys) for line in formats.key_lines(keys[name])]


def parse_network_data(body: Optional[bytes], *, priority: int = 10,
                       source: str = NETWORK_DATA) -> Network:
    """(interfaces, netdevs) of ``network_data.json``; none without the file. ``source`` names
    the document in errors: the drive path, or ``GET <url>`` for the metadata service."""
    if body is None:
        return [], []
    fields = Fields(source)
    doc = fields.mapping(formats.json_document(body, source), "top level")
    topology = Topology(fields, priority)
    links = _links(doc, fields)
    global_dns = [fields.ip(service.get("address"), f"services[{i}].address")
                  for i, service in _entries(doc, "services", fields)
                  if service.get("type") == "dns"]
    found: Dict[str, Dict[str, list]] = {}
    for i, net in _entries(doc, "networks", fields):
        at = f"networks[{i}]"
        link = fields.string(net.get("link"), at + ".link", required=True)
        if link not in links:
            topology.skip(f"{at} (refers to no link)")
            continue
        _add_network(found.setdefault(link, {"addresses": [], "routes": [], "dns": [],
                                             "dhcp": []}), net, fields, at)
    relations = _relations(links, fields)
    used = set(found) | {key for key, _, _ in relations}  # links that get a unit
    bonds = 0
    for link_id, (at, link, kind) in links.items():  # NICs and bonds first: VLANs name parents
        config = _config(found.get(link_id), global_dns, topology, at)
        if kind == "bond":
            name = link.get("name")
            name = fields.ifname(name, at + ".name") if name is not None else f"bond{bonds}"
            bonds += 1
            topology.add_virtual(link_id, at, _bond(link, name, fields, at, topology),
                                 NetworkInterface(**config))
        elif kind != "vlan" and link_id in used:
            topology.add_nic(link_id, at, _nic(link, fields, at, config))
    for link_id, (at, link, kind) in links.items():
        if kind == "vlan":
            config = _config(found.get(link_id), global_dns, topology, at)
            topology.add_virtual(link_id, at, _vlan(link, topology, fields, at),
                                 NetworkInterface(**config))
    for member, master, field in relations:
        if links[master][2] == "vlan":
            topology.vlan(master, member, field)
        else:
            topology.join(member, master, field)
    return topology.result()


def _entries(doc: Dict[str, Any], key: str, fields: Fields):
    return [(i, fields.mapping(entry, f"{key}[{i}]"))
            for i, entry in enumerate(fields.items(doc.get(key), key))]


def _links(doc: Dict[str, Any], fields: Fields) -> Dict[str, Tuple[str, Dict[str, Any], str]]:
    """Link id → (field path, link, type); every type but bond and vlan is a NIC (phy, ovs,
    bridge, tap, vif…: what the hypervisor plugs in)."""
    links = {}
    for i, link in _entries(doc, "links", fields):
        at = f"links[{i}]"
        link_id = fields.string(link.get("id"), at + ".id", required=True)
        if link_id in links:
            raise fields.error(at + ".id", "defines a link that is already defined")
        links[link_id] = (at, link, fields.string(link.get("type"), at + ".type") or "phy")
    return links


def _relations(links, fields: Fields) -> List[Tuple[str, str, str]]:
    """(device link id, bond or VLAN link id, field path): bond members, and VLAN parents."""
    relations = []
    for link_id, (at, link, kind) in links.items():
        if kind == "bond":
            members = fields.items(link.get("bond_links"), at + ".bond_links")
            relations += [(fields.string(member, f"{at}.bond_links[{j}]", required=True),
                           link_id, f"{at}.bond_links[{j}]") for j, member in enumerate(members)]
        elif kind == "vlan":
            parent = fields.string(link.get("vlan_link"), at + ".vlan_link", required=True)
            relations.append((parent, link_id, at + ".vlan_link"))
    for device, _, field in relations:
        if device not in links:
            raise fields.error(field, "refers to a link the document does not define")
    return relations


def _add_network(state: Dict[str, list], net: Dict[str, Any], fields: Fields, at: str) -> None:
    kind = fields.string(net.get("type"), at + ".type", required=True)
    if kind in ("ipv4", "ipv6"):
        state["addresses"].append(fields.cidr(net.get("ip_address"), net.get("netmask"),
                                              at + ".ip_address", at + ".netmask"))
    elif kind in ("ipv4_dhcp", "ipv6_dhcp"):
        state["dhcp"].append(kind)
    else:  # ipv6_slaac and friends: networkd accepts router advertisements by default
        log.info("%s: %s: network type not configured by unit files", fields.source, at)
    # routes and nameservers count on DHCP networks too: networkd keeps them beside DHCP's
    for j, route in enumerate(fields.items(net.get("routes"), at + ".routes")):
        r = f"{at}.routes[{j}]"
        route = fields.mapping(route, r)
        state["routes"].append(Route(
            fields.destination(route.get("network"), route.get("netmask"), r + ".network",
                               r + ".netmask"),
            fields.ip(route.get("gateway"), r + ".gateway")))
    state["dns"] += fields.ips(net.get("dns_nameservers"), at + ".dns_nameservers")


def _config(state: Optional[Dict[str, list]], global_dns: List[str], topology: Topology,
            at: str) -> Dict[str, Any]:
    """NetworkInterface values of a link's networks; the ``dns`` services go to every link
    that carries a network."""
    if state is None:
        return {}
    return {"addresses": unique(state["addresses"]),
            "routes": topology.routes((), state["routes"], at),
            "nameservers": unique(state["dns"] + global_dns),
            "dhcp": dhcp_mode("ipv4_dhcp" in state["dhcp"], "ipv6_dhcp" in state["dhcp"])}


def _nic(link: Dict[str, Any], fields: Fields, at: str, config: Dict[str, Any]) -> NetworkInterface:
    name, mac = link.get("name"), link.get("ethernet_mac_address")
    if name is None and mac is None:
        raise fields.error(at, "has neither a name nor an ethernet_mac_address")
    return NetworkInterface(
        name=fields.ifname(name, at + ".name") if name is not None else None,
        mac=fields.mac(mac, at + ".ethernet_mac_address") if mac is not None else None,
        **config)


_BOND_SETTINGS = {"mode": "mode", "xmit-hash-policy": "transmit_hash_policy",
                  "lacp-rate": "lacp_rate", "miimon": "mii_monitor_ms",
                  "updelay": "up_delay_ms", "downdelay": "down_delay_ms"}


def _bond(link: Dict[str, Any], name: str, fields: Fields, at: str,
          topology: Topology) -> VirtualNetDev:
    """A bond link: ``bond_mode``, ``bond_miimon``, ``bond_xmit_hash_policy`` (Nova), and
    ``ethernet_mac_address``, the address the bond takes."""
    params = {key: value for key, value in link.items()
              if isinstance(key, str) and key.startswith("bond_") and key != "bond_links"}
    options, ignored = read_options(fields, params, at, _BOND_SETTINGS, BOND_SETTINGS,
                                    BondOptions, prefix="bond-")
    if ignored:
        topology.skip(f"{at} ({ignored} bond setting{'s' * (ignored > 1)})")
    mac = link.get("ethernet_mac_address")
    return VirtualNetDev(name=name, kind="bond", bond=options,
                         mac=fields.mac(mac, at + ".ethernet_mac_address") if mac else None)


def _vlan(link: Dict[str, Any], topology: Topology, fields: Fields, at: str) -> VirtualNetDev:
    """A VLAN link: ``vlan_id``, ``vlan_mac_address``; named ``name``, else as cloud-init
    names it, ``<parent>.<id>`` (``vlan<id>`` when that is no usable interface name)."""
    vlan_id = fields.integer(link.get("vlan_id"), at + ".vlan_id", 0, 4094)
    if link.get("name") is not None:
        name = fields.ifname(link["name"], at + ".name")
    else:
        parent = topology.name(fields.string(link.get("vlan_link"), at + ".vlan_link"))
        name = f"{parent}.{vlan_id}"
        if parent is None or len(name) > 15:
            name = f"vlan{vlan_id}"
    mac = link.get("vlan_mac_address")
    return VirtualNetDev(name=name, kind="vlan", vlan_id=vlan_id,
                         mac=fields.mac(mac, at + ".vlan_mac_address") if mac else None)
