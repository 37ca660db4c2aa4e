"""The NoCloud seed (cloud-init's ``cidata`` drive, docs/protocols.md "Config drives"), parsed in one place for
``nocloud``, ``ibmcloud``, ``proxmoxve`` and ``kubevirt``'s NoCloud branch. ``qemu``'s firmware
config document has the meta-data shape, and ``vmware``'s guestinfo ``network`` key is network
config v2, so they use this module too.

- ``meta-data``: a YAML mapping (IBM's ``key: value`` lines are YAML as well): ``instance-id``,
  ``local-hostname``, optional ``public-keys`` (a string, a list, or a name → key mapping).
- ``user-data``: read only when its first line starts with ``#cloud-config`` (``hostname``,
  ``fqdn``, ``ssh_authorized_keys``); anything else (an Ignition config, a script) is not ours.
- ``vendor-data``: MIME multipart; the last ``text/cloud-config`` part that mentions
  ``ssh_authorized_keys`` gives the keys (IBM Cloud VPC).
- ``network-config``: cloud-init network config v1 (``physical``, ``bond``, ``bridge``, ``vlan``
  and ``nameserver`` entries) or v2 (netplan ``ethernets``, ``bonds``, ``bridges``, ``vlans``),
  YAML or JSON, optionally under a top-level ``network`` key, assembled by
  :mod:`cl_metadata.network.topology`. Other entry types and sections (v1 ``route``, v2 ``wifis``,
  ``tunnels``, ``vrfs``, ``modems``…) are named in one warning and not rendered.

YAML is read with PyYAML's safe loader, after the drive reader's size cap, with one change:
plain scalars stay the text written (only ``null``/``~``/empty is resolved), so an id ``0717``
is not read as the octal number 463 and a host named ``yes`` is not a boolean; upstream's serde
keeps string fields as written too. A top level of the wrong type is refused. Errors name the
file and the field path, never a value.
"""

from __future__ import annotations

import email
import logging
from typing import Any, Callable, Dict, List, Optional, Tuple

import yaml

from cl_metadata.parsing import formats
from cl_metadata.model import BondOptions, BridgeOptions, NetworkInterface, Route, VirtualNetDev
from cl_metadata.parsing.fields import Fields, dhcp_mode, unique
from cl_metadata.network.topology import BOND_SETTINGS, BRIDGE_SETTINGS, Topology, read_options

log = logging.getLogger("cl_metadata")

LABELS = ("cidata", "CIDATA")
META_DATA = "meta-data"
USER_DATA = "user-data"
VENDOR_DATA = "vendor-data"
NETWORK_CONFIG = "network-config"
CLOUD_CONFIG_HEADER = "#cloud-config"


class _TextLoader(yaml.SafeLoader):
    """The safe loader, resolving no plain scalar but null: everything else stays a string."""


_TextLoader.yaml_implicit_resolvers = {
    first: [(tag, pattern) for tag, pattern in resolvers if tag == "tag:yaml.org,2002:null"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}


def load_yaml(text: str, source: str) -> Any:
    """``text`` through ``_TextLoader`` within the shared bounds on size, nesting and aliases."""
    from cl_metadata.parsing import documents
    return documents.parse_yaml(text, source, _TextLoader)


def parse_meta_data(text: str, source: str) -> Dict[str, Any]:
    """A YAML mapping (an empty document is an empty mapping)."""
    return Fields(source).mapping(load_yaml(text, source), "top level")


def parse_cloud_config(text: Optional[str], source: str) -> Optional[Dict[str, Any]]:
    """The ``#cloud-config`` mapping; ``None`` for absent or other user-data."""
    if text is None or not text.startswith(CLOUD_CONFIG_HEADER):
        return None
    return parse_meta_data(text, source)


def meta_data_keys(meta: Dict[str, Any], source: str) -> List[str]:
    fields = Fields(source)
    field = "public-keys" if "public-keys" in meta else "public_keys"
    value = meta.get(field)
    if isinstance(value, dict):  # a name → key map has no order of its own: sort by name
        values = [fields.string(value[name], f"{field}[{i}]", required=True)
                  for i, name in enumerate(sorted(value, key=str))]
    else:
        values = fields.strings(value, field)
    return [line for text in values for line in formats.key_lines(text)]


def cloud_config_keys(config: Optional[Dict[str, Any]], source: str) -> List[str]:
    if not config:
        return []
    values = Fields(source).strings(config.get("ssh_authorized_keys"), "ssh_authorized_keys")
    return [line for text in values for line in formats.key_lines(text)]


def seed_keys(meta: Dict[str, Any], config: Optional[Dict[str, Any]]) -> List[str]:
    """meta-data ``public-keys`` then cloud-config ``ssh_authorized_keys``, each key once (as
    cloud-init merges the two sources)."""
    return list(unique(meta_data_keys(meta, META_DATA) + cloud_config_keys(config, USER_DATA)))


def seed_hostname(meta: Dict[str, Any], config: Optional[Dict[str, Any]]) -> Optional[str]:
    """cloud-config ``hostname``, else ``fqdn``, else meta-data ``local-hostname`` (user-data
    overrides the datasource, as in cloud-init)."""
    config = config or {}
    for document, field, source in ((config, "hostname", USER_DATA), (config, "fqdn", USER_DATA),
                                    (meta, "local-hostname", META_DATA)):
        value = Fields(source).string(document.get(field), field)
        if value:
            return value
    return None


def vendor_data_keys(data: Optional[bytes], source: str) -> List[str]:
    if data is None:
        return []
    if data.lstrip().startswith(CLOUD_CONFIG_HEADER.encode()):
        bodies = [data]
    else:
        message = email.message_from_bytes(data)
        bodies = [part.get_payload(decode=True) or b"" for part in message.walk()
                  if part.get_content_type() == "text/cloud-config"]
    keys: List[str] = []
    for number, body in enumerate(bodies, 1):
        where = f"{source} (cloud-config part {number})"
        text = formats.text(body, where)
        if "ssh_authorized_keys" in text:  # several such parts: the last one wins
            keys = cloud_config_keys(parse_meta_data(text, where), where)
    return keys


# --- network-config ------------------------------------------------------------------------------

Network = Tuple[List[NetworkInterface], List[VirtualNetDev]]


def parse_network_config(text: Optional[str], source: str, *, priority: int = 10) -> Network:
    """(interfaces, netdevs) of a network-config file; none for an absent or empty one."""
    if text is None or not text.strip():
        return [], []
    if text.lstrip().startswith("{"):
        document = formats.json_document(text.encode("utf-8"), source)
    else:
        document = load_yaml(text, source)
    fields = Fields(source)
    doc = fields.mapping(document, "top level")
    if "network" in doc:
        return network_interfaces(fields.mapping(doc["network"], "network"), fields, "network.",
                                  priority)
    return network_interfaces(doc, fields, "", priority)


def network_interfaces(doc: Dict[str, Any], fields: Fields, where: str, priority: int) -> Network:
    """(interfaces, netdevs) of a network config v1 or v2 mapping (``where`` prefixes error
    paths)."""
    version = doc.get("version")
    if not doc or doc.get("config") == "disabled":
        return [], []
    if version in (1, "1"):
        return _v1(doc, fields, where, priority)
    if version in (2, "2"):
        return _v2(doc, fields, where, priority)
    raise fields.error(where + "version", "expected 1 or 2")


def _default_route(gateway: str) -> Route:
    return Route("::/0" if ":" in gateway else "0.0.0.0/0", gateway)


def _names(fields: Fields, value: Any, where: str) -> List[str]:
    """A list of device references (v1 ``bond_interfaces``, v2 ``interfaces``)."""
    return [fields.string(item, f"{where}[{i}]", required=True)
            for i, item in enumerate(fields.items(value, where))]


# v1: a list of entries; devices are referred to by their "name".

_V1_KNOWN = ("route", "loopback", "infiniband")  # cloud-init entry types not rendered here
_V1_BOND = {"mode": "mode", "xmit-hash-policy": "transmit_hash_policy",
            "lacp-rate": "lacp_rate", "ad-select": "ad_select", "miimon": "mii_monitor_ms",
            "updelay": "up_delay_ms", "downdelay": "down_delay_ms", "min-links": "min_links"}
_V1_BRIDGE = {"stp": "stp", "bridgeprio": "priority", "fd": "forward_delay_ms",
              "hello": "hello_time_ms", "maxage": "max_age_ms", "ageing": "ageing_time_ms"}


def _v1(doc, fields: Fields, where: str, priority: int) -> Network:
    topology = Topology(fields, priority)
    nameservers: List[str] = []
    relations: List[Callable[[], None]] = []  # memberships, once every device is known
    for i, entry in enumerate(fields.items(doc.get("config"), where + "config")):
        at = f"{where}config[{i}]"
        entry = fields.mapping(entry, at)
        kind = fields.string(entry.get("type"), at + ".type", required=True)
        if kind == "nameserver":
            nameservers += fields.ips(entry.get("address"), at + ".address")
        elif kind == "physical":
            _v1_physical(entry, fields, at, topology)
        elif kind in ("bond", "bridge", "vlan"):
            relations += _v1_virtual(kind, entry, fields, at, topology)
        else:
            topology.skip(f"{at} ({kind if kind in _V1_KNOWN else 'unknown'} entry)")
    for relate in relations:
        relate()
    return topology.result(nameservers)


def _v1_addressing(entry, fields: Fields, at: str, topology: Topology) -> Dict[str, Any]:
    """The NetworkInterface values of an entry's ``subnets``. Routes, gateways and nameservers
    count on DHCP subnets too: networkd keeps them beside what DHCP gives."""
    addresses, implied, explicit, dns = [], [], [], []
    ipv4 = ipv6 = False
    for j, subnet in enumerate(fields.items(entry.get("subnets"), at + ".subnets")):
        sub = f"{at}.subnets[{j}]"
        subnet = fields.mapping(subnet, sub)
        kind = fields.string(subnet.get("type"), sub + ".type", required=True)
        if kind in ("dhcp", "dhcp4"):
            ipv4 = True
        elif kind in ("dhcp6", "ipv6_dhcpv6-stateful"):
            ipv6 = True
        elif kind in ("static", "static6"):
            addresses.append(fields.cidr(subnet.get("address"), subnet.get("netmask"),
                                         sub + ".address", sub + ".netmask"))
        else:  # manual, ipv6_slaac, ipv6_dhcpv6-stateless: networkd's defaults cover them
            log.info("%s: %s: subnet type not configured by unit files", fields.source, sub)
        if subnet.get("gateway") is not None:
            implied.append(_default_route(fields.ip(subnet["gateway"], sub + ".gateway")))
        for k, route in enumerate(fields.items(subnet.get("routes"), sub + ".routes")):
            r = f"{sub}.routes[{k}]"
            route = fields.mapping(route, r)
            explicit.append(Route(
                fields.destination(route.get("network"), route.get("netmask"),
                                   r + ".network", r + ".netmask"),
                fields.ip(route.get("gateway"), r + ".gateway")))
        dns += fields.ips(subnet.get("dns_nameservers"), sub + ".dns_nameservers")
    return {"addresses": unique(addresses), "routes": topology.routes(implied, explicit, at),
            "nameservers": unique(dns), "dhcp": dhcp_mode(ipv4, ipv6)}


def _v1_physical(entry, fields: Fields, at: str, topology: Topology) -> None:
    name, mac = entry.get("name"), entry.get("mac_address")
    name = fields.ifname(name, at + ".name") if name is not None else None
    mac = fields.mac(mac, at + ".mac_address") if mac is not None else None
    if name is None and mac is None:
        raise fields.error(at, "names neither an interface nor a MAC address")
    key = name if name is not None else "#" + at  # no name can be referred to
    topology.add_nic(key, at, NetworkInterface(name=name, mac=mac,
                                               **_v1_addressing(entry, fields, at, topology)))


def _v1_virtual(kind: str, entry, fields: Fields, at: str,
                topology: Topology) -> List[Callable[[], None]]:
    name = fields.ifname(entry.get("name"), at + ".name")
    mac = entry.get("mac_address")
    netdev = VirtualNetDev(name=name, kind=kind,
                           mac=fields.mac(mac, at + ".mac_address") if mac is not None else None)
    params = fields.mapping(entry.get("params"), at + ".params")
    ignored = 0
    if kind == "bond":
        options, ignored = read_options(fields, params, at + ".params", _V1_BOND, BOND_SETTINGS,
                                        BondOptions, prefix="bond-")
        netdev = netdev._replace(bond=options)
        members = _names(fields, entry.get("bond_interfaces"), at + ".bond_interfaces")
    elif kind == "bridge":
        options, ignored = read_options(fields, params, at + ".params", _V1_BRIDGE,
                                        BRIDGE_SETTINGS, BridgeOptions, prefix="bridge-")
        netdev = netdev._replace(bridge=options)
        members = _names(fields, entry.get("bridge_interfaces"), at + ".bridge_interfaces")
    else:
        netdev = netdev._replace(vlan_id=fields.integer(entry.get("vlan_id"), at + ".vlan_id",
                                                        0, 4094))
        parent = fields.string(entry.get("vlan_link"), at + ".vlan_link", required=True)
    if ignored:
        topology.skip(f"{at}.params ({ignored} setting{'s' * (ignored > 1)})")
    topology.add_virtual(name, at, netdev, NetworkInterface(
        **_v1_addressing(entry, fields, at, topology)))
    if kind == "vlan":
        return [lambda: topology.vlan(name, parent, at + ".vlan_link")]
    field = f"{at}.{kind}_interfaces"
    return [lambda j=j, member=member: topology.join(member, name, f"{field}[{j}]")
            for j, member in enumerate(members)]


# v2 (netplan): device sections keyed by id; a virtual device's id is its name.

_V2_UNSUPPORTED = ("wifis", "tunnels", "vrfs", "modems", "nm-devices", "dummy-devices",
                   "virtual-ethernets")
_V2_BOND = {"mode": "mode", "transmit-hash-policy": "transmit_hash_policy",
            "lacp-rate": "lacp_rate", "ad-select": "ad_select",
            "mii-monitor-interval": "mii_monitor_ms", "up-delay": "up_delay_ms",
            "down-delay": "down_delay_ms", "min-links": "min_links"}
_V2_BRIDGE = {"stp": "stp", "priority": "priority", "forward-delay": "forward_delay_ms",
              "hello-time": "hello_time_ms", "max-age": "max_age_ms",
              "ageing-time": "ageing_time_ms"}
_GLOB = set("*?[")


def _v2(doc, fields: Fields, where: str, priority: int) -> Network:
    topology = Topology(fields, priority)
    for kind in _V2_UNSUPPORTED:
        if doc.get(kind):
            topology.skip(where + kind)
    relations: List[Callable[[], None]] = []
    for section in ("ethernets", "bonds", "bridges", "vlans"):
        devices = fields.mapping(doc.get(section), where + section)
        for i, (key, config) in enumerate(devices.items()):
            at = f"{where}{section}[{i}]"
            config = fields.mapping(config, at)
            if section == "ethernets":
                _v2_ethernet(key, config, fields, at, topology)
            else:
                relations += _v2_virtual(section[:-1], key, config, fields, at, topology)
    for relate in relations:
        relate()
    return topology.result()


def _v2_addressing(config, fields: Fields, at: str, topology: Topology) -> Dict[str, Any]:
    addresses = [fields.cidr(a, None, f"{at}.addresses[{j}]", f"{at}.addresses[{j}]")
                 for j, a in enumerate(fields.items(config.get("addresses"), at + ".addresses"))]
    implied = [_default_route(fields.ip(config[g], f"{at}.{g}"))
               for g in ("gateway4", "gateway6") if config.get(g) is not None]
    explicit = []
    for j, route in enumerate(fields.items(config.get("routes"), at + ".routes")):
        r = f"{at}.routes[{j}]"
        route = fields.mapping(route, r)
        via = fields.ip(route.get("via"), r + ".via")
        to = fields.string(route.get("to"), r + ".to", required=True)
        explicit.append(_default_route(via) if to == "default" else
                        Route(fields.destination(to, None, r + ".to", r + ".to"), via))
    nameservers = fields.mapping(config.get("nameservers"), at + ".nameservers")
    dns = fields.ips(nameservers.get("addresses"), at + ".nameservers.addresses")
    return {"addresses": unique(addresses), "routes": topology.routes(implied, explicit, at),
            "nameservers": unique(dns),
            "dhcp": dhcp_mode(fields.flag(config.get("dhcp4"), at + ".dhcp4"),
                              fields.flag(config.get("dhcp6"), at + ".dhcp6"))}


def _v2_ethernet(key, config, fields: Fields, at: str, topology: Topology) -> None:
    match = fields.mapping(config.get("match"), at + ".match")
    mac = match.get("macaddress")
    if config.get("set-name") is not None:
        name, name_field = config["set-name"], "set-name"
    elif match.get("name") is not None:
        name, name_field = match["name"], "match.name"
    else:  # the id names the interface only when nothing else selects one
        name, name_field = (None if match else key), "id"
    key = key if isinstance(key, str) else "#" + at
    if isinstance(name, str) and _GLOB & set(name):
        if mac is None:
            topology.add_unrendered(key, at, "interface name pattern")
            return
        name = None
    name = fields.ifname(name, f"{at}.{name_field}") if name is not None else None
    mac = fields.mac(mac, at + ".match.macaddress") if mac is not None else None
    if name is None and mac is None:
        raise fields.error(at, "names neither an interface nor a MAC address")
    topology.add_nic(key, at, NetworkInterface(name=name, mac=mac,
                                               **_v2_addressing(config, fields, at, topology)))


def _v2_virtual(kind: str, key, config, fields: Fields, at: str,
                topology: Topology) -> List[Callable[[], None]]:
    name = fields.ifname(key, at + ".id")
    mac = config.get("macaddress")
    netdev = VirtualNetDev(name=name, kind=kind,
                           mac=fields.mac(mac, at + ".macaddress") if mac is not None else None)
    parameters = fields.mapping(config.get("parameters"), at + ".parameters")
    ignored = 0
    if kind == "bond":
        options, ignored = read_options(fields, parameters, at + ".parameters", _V2_BOND,
                                        BOND_SETTINGS, BondOptions)
        netdev = netdev._replace(bond=options)
    elif kind == "bridge":
        options, ignored = read_options(fields, parameters, at + ".parameters", _V2_BRIDGE,
                                        BRIDGE_SETTINGS, BridgeOptions)
        netdev = netdev._replace(bridge=options)
    else:
        netdev = netdev._replace(vlan_id=fields.integer(config.get("id"), at + ".id", 0, 4094))
        parent = fields.string(config.get("link"), at + ".link", required=True)
    if ignored:
        topology.skip(f"{at}.parameters ({ignored} setting{'s' * (ignored > 1)})")
    topology.add_virtual(name, at, netdev, NetworkInterface(
        **_v2_addressing(config, fields, at, topology)))
    if kind == "vlan":
        return [lambda: topology.vlan(name, parent, at + ".link")]
    members = _names(fields, config.get("interfaces"), at + ".interfaces")
    return [lambda j=j, member=member: topology.join(member, name, f"{at}.interfaces[{j}]")
            for j, member in enumerate(members)]
