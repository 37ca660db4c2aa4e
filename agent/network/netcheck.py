"""The interface description checked once for every network writer (networkd, netplan,
NetworkManager).

:func:`check` turns the model's interfaces and virtual devices into values a writer can put in a
file as they are: addresses, routes and nameservers re-rendered from their parsed form
(``ipaddress``: no zone index, no stray character), MACs in lower case, names matched against the
Linux interface-name pattern, bond settings from the bonding driver's own sets, numbers and times
as bounded integers, and every bond, bridge and VLAN reference naming a virtual device of the
same description. Anything else is :class:`InvalidMetadata` naming the interface or netdev by its
index and the cause, never the value. No checked value can hold a newline, a quote, a ``=``
or a path separator, so no metadata text can add a key, a section or a file in any format.

Each writer names its files after :attr:`CheckedInterface.stem` (the MAC, else the name) and the
two-digit priority, so the three stacks name their files by the same rule.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple, Union

from cl_metadata.errors import InvalidMetadata
from cl_metadata.model import (BOND_AD_SELECT, BOND_HASH_POLICIES, BOND_LACP_RATES, BOND_MODES,
                               NETDEV_KINDS, BondOptions, BridgeOptions, NetworkInterface,
                               VirtualNetDev)

SOURCE = "network units"
DHCP_MODES = ("yes", "ipv4", "ipv6")
MAX_DURATION_MS = 24 * 3600 * 1000  # no bond or bridge timer runs for a day

IFNAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,14}")  # Linux: 15 bytes, no '/', ':', space
MAC = re.compile(r"[0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){5}")
_IP_TEXT = re.compile(r"[0-9A-Fa-f.:]+")  # no '%zone', no brackets, no whitespace

IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]
IPInterface = Union[ipaddress.IPv4Interface, ipaddress.IPv6Interface]
IPNetwork = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]


class CheckedRoute(NamedTuple):
    destination: IPNetwork
    gateway: IPAddress


class CheckedInterface(NamedTuple):
    """A :class:`NetworkInterface` whose every value may be written as it is.

    Exactly one of ``mac`` (lower case) and ``name`` is set: the MAC when the model has one,
    else the name. ``virtual`` is true when ``name`` is a virtual device of this description
    (the interface is that device's configuration). ``routes`` holds each distinct route once.
    """

    where: str  # "interface 3": how errors name it
    priority: int
    stem: str  # the MAC, else the name: every writer's file name or id
    mac: Optional[str]
    name: Optional[str]
    virtual: bool
    dhcp: Optional[str]
    nameservers: Tuple[IPAddress, ...]
    bond: Optional[str]
    bridge: Optional[str]
    vlans: Tuple[str, ...]
    unmanaged: bool
    addresses: Tuple[IPInterface, ...]
    routes: Tuple[CheckedRoute, ...]


class CheckedNetDev(NamedTuple):
    """A :class:`VirtualNetDev` whose every value may be written as it is; ``bond`` and
    ``bridge`` hold only the settings given (None: the driver's default)."""

    where: str
    priority: int
    name: str
    kind: str
    mac: Optional[str]
    bond: BondOptions
    bridge: BridgeOptions
    vlan_id: Optional[int]


class Checked(NamedTuple):
    interfaces: Tuple[CheckedInterface, ...]
    netdevs: Tuple[CheckedNetDev, ...]

    def netdev(self, name: str) -> CheckedNetDev:
        return next(netdev for netdev in self.netdevs if netdev.name == name)


# --- value checks --------------------------------------------------------------------------

def ip(value: object, version: Optional[int] = None) -> Optional[IPAddress]:
    """The address ``value`` spells (of ``version`` when given), else None."""
    if not isinstance(value, str) or not _IP_TEXT.fullmatch(value.strip()):
        return None
    try:
        address = ipaddress.ip_address(value.strip())
    except ValueError:
        return None
    return address if version is None or address.version == version else None


def invalid(where: str, what: str) -> InvalidMetadata:
    return InvalidMetadata(f"{where}: {what}", source=SOURCE)


def _pattern(value: object, pattern: re.Pattern, where: str, what: str) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise invalid(where, what)
    return value


def number(value: object, low: int, high: int, where: str, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise invalid(where, f"{what} is not a number from {low} to {high}")
    return value


def _prefixed(value: object, where: str, what: str, make):
    """``make("ip/prefix")`` for text of that shape, else InvalidMetadata."""
    address, slash, prefix = value.partition("/") if isinstance(value, str) else ("", "", "")
    try:
        if not (slash and _IP_TEXT.fullmatch(address) and prefix.isascii() and prefix.isdigit()):
            raise ValueError
        return make(f"{address}/{int(prefix)}")
    except ValueError:
        raise invalid(where, what) from None


def _route(destination: object, gateway: object, where: str) -> CheckedRoute:
    network = _prefixed(destination, where, "destination is not a network",
                        lambda text: ipaddress.ip_network(text, strict=False))
    via = ip(gateway, network.version)
    if via is None:
        raise invalid(where, f"gateway is not an IPv{network.version} address")
    return CheckedRoute(network, via)


def _choice(value: object, allowed: Sequence[str], where: str, what: str) -> str:
    if value not in allowed:
        raise invalid(where, f"{what} is not one of " + ", ".join(allowed))
    return value


def _mac(value: object, where: str) -> str:
    return _pattern(value, MAC, where, "MAC address is not six hex bytes").lower()


def _member_of(value: object, kind: str, kinds: Mapping[str, str], where: str) -> str:
    """``value`` when it names a ``kind`` netdev of this description."""
    name = _pattern(value, IFNAME, where, f"{kind} is not an interface name")
    if kinds.get(name) != kind:
        raise invalid(where, f"{kind} is not a {kind} netdev of this run")
    return name


def _duration(value: object, where: str, what: str) -> int:
    return number(value, 0, MAX_DURATION_MS, where, what)


# --- interfaces and netdevs ----------------------------------------------------------------

def _interface(interface: NetworkInterface, where: str,
               kinds: Mapping[str, str]) -> CheckedInterface:
    priority = number(interface.priority, 0, 99, where, "priority")
    mac = name = None
    if interface.mac is not None:
        if isinstance(interface.name, str) and interface.name in kinds:
            raise invalid(where, "a virtual device is matched by name; its MAC address "
                                 "belongs to its netdev")
        mac = _mac(interface.mac, where)
    elif interface.name is not None:
        name = _pattern(interface.name, IFNAME, where, "name is not an interface name")
    else:
        raise invalid(where, "has neither a name nor a MAC address")
    if interface.dhcp is not None and interface.dhcp not in DHCP_MODES:
        raise invalid(where, "DHCP mode is not yes, ipv4 or ipv6")
    nameservers = []
    for i, server in enumerate(interface.nameservers):
        address = ip(server)
        if address is None:
            raise invalid(where, f"nameserver {i} is not an IP address")
        nameservers.append(address)
    bond = bridge = None
    if interface.bond is not None:
        bond = _member_of(interface.bond, "bond", kinds, where)
    if interface.bridge is not None:
        bridge = _member_of(interface.bridge, "bridge", kinds, where)
    if not isinstance(interface.vlans, tuple):
        raise invalid(where, "vlans is not a tuple of names")
    vlans = tuple(_member_of(vlan, "vlan", kinds, where) for vlan in interface.vlans)
    if not isinstance(interface.unmanaged, bool):
        raise invalid(where, "unmanaged is not a boolean")
    if interface.unmanaged and (bond or bridge or vlans):
        raise invalid(where, "an unmanaged device cannot be a member or carry a VLAN")
    addresses = tuple(
        _prefixed(address, f"{where}: address {i}", "is not an IP address with a prefix length",
                  ipaddress.ip_interface)
        for i, address in enumerate(interface.addresses))
    routes = [_route(route.destination, route.gateway, f"{where}: route {i}")
              for i, route in enumerate(interface.routes)]
    return CheckedInterface(
        where=where, priority=priority, stem=mac or name, mac=mac, name=name,
        virtual=name is not None and name in kinds, dhcp=interface.dhcp,
        nameservers=tuple(nameservers), bond=bond, bridge=bridge, vlans=vlans,
        unmanaged=interface.unmanaged, addresses=addresses,
        routes=tuple(dict.fromkeys(routes)))  # each distinct route once


def _bond(options: object, where: str) -> BondOptions:
    if options is None:
        return BondOptions()
    if not isinstance(options, BondOptions):
        raise invalid(where, "bond settings are not BondOptions")

    def given(value, check):
        return None if value is None else check(value)

    return BondOptions(
        mode=given(options.mode, lambda v: _choice(v, BOND_MODES, where, "bond mode")),
        transmit_hash_policy=given(options.transmit_hash_policy, lambda v: _choice(
            v, BOND_HASH_POLICIES, where, "transmit hash policy")),
        lacp_rate=given(options.lacp_rate,
                        lambda v: _choice(v, BOND_LACP_RATES, where, "LACP rate")),
        ad_select=given(options.ad_select,
                        lambda v: _choice(v, BOND_AD_SELECT, where, "ad-select")),
        mii_monitor_ms=given(options.mii_monitor_ms,
                             lambda v: _duration(v, where, "MII monitor interval")),
        up_delay_ms=given(options.up_delay_ms, lambda v: _duration(v, where, "up delay")),
        down_delay_ms=given(options.down_delay_ms, lambda v: _duration(v, where, "down delay")),
        min_links=given(options.min_links, lambda v: number(v, 0, 1024, where, "min links")))


def _bridge(options: object, where: str) -> BridgeOptions:
    if options is None:
        return BridgeOptions()
    if not isinstance(options, BridgeOptions):
        raise invalid(where, "bridge settings are not BridgeOptions")
    if options.stp is not None and not isinstance(options.stp, bool):
        raise invalid(where, "STP is not a boolean")

    def given(value, check):
        return None if value is None else check(value)

    return BridgeOptions(
        stp=options.stp,
        priority=given(options.priority, lambda v: number(v, 0, 65535, where, "bridge priority")),
        forward_delay_ms=given(options.forward_delay_ms,
                               lambda v: _duration(v, where, "forward delay")),
        hello_time_ms=given(options.hello_time_ms, lambda v: _duration(v, where, "hello time")),
        max_age_ms=given(options.max_age_ms, lambda v: _duration(v, where, "max age")),
        ageing_time_ms=given(options.ageing_time_ms,
                             lambda v: _duration(v, where, "ageing time")))


def _netdev(netdev: VirtualNetDev, where: str) -> CheckedNetDev:
    priority = number(netdev.priority, 0, 99, where, "priority")
    name = _pattern(netdev.name, IFNAME, where, "name is not an interface name")
    kind = _choice(netdev.kind, NETDEV_KINDS, where, "kind")
    mac = _mac(netdev.mac, where) if netdev.mac is not None else None
    present = {"bond": netdev.bond is not None, "bridge": netdev.bridge is not None,
               "vlan": netdev.vlan_id is not None}
    if any(present[other] for other in NETDEV_KINDS if other != kind):
        raise invalid(where, f"a {kind} has settings of another kind")
    vlan_id = number(netdev.vlan_id, 0, 4094, where, "VLAN id") if kind == "vlan" else None
    return CheckedNetDev(where=where, priority=priority, name=name, kind=kind, mac=mac,
                         bond=_bond(netdev.bond, where), bridge=_bridge(netdev.bridge, where),
                         vlan_id=vlan_id)


def check(interfaces: Sequence[NetworkInterface], netdevs: Sequence[VirtualNetDev]) -> Checked:
    """Every interface and netdev checked; InvalidMetadata on the first that cannot be written.

    Interfaces are checked first (in order), then netdevs, so the error a description gives
    does not depend on the writer."""
    kinds: Dict[str, str] = {}  # netdev name → kind, for the members' bond, bridge, vlans
    for i, netdev in enumerate(netdevs):
        if not isinstance(netdev.name, str):
            continue  # _netdev names the fault
        if netdev.name in kinds:
            raise invalid(f"netdev {i}", "a second netdev of the same name")
        kinds[netdev.name] = netdev.kind
    checked_interfaces: List[CheckedInterface] = [
        _interface(item, f"interface {i}", kinds) for i, item in enumerate(interfaces)]
    checked_netdevs = [_netdev(item, f"netdev {i}") for i, item in enumerate(netdevs)]
    parents: Dict[str, int] = {}
    for interface in checked_interfaces:
        for vlan in interface.vlans:
            parents[vlan] = parents.get(vlan, 0) + 1
    for netdev in checked_netdevs:  # a VLAN exists on exactly one parent device
        if netdev.kind == "vlan" and parents.get(netdev.name, 0) != 1:
            raise invalid(netdev.where, "a VLAN is not on exactly one interface")
    return Checked(tuple(checked_interfaces), tuple(checked_netdevs))


def one_file_each(names: Sequence[Tuple[str, str]]) -> None:
    """Refuse two items (``(file name or id, where)``) that a writer would write to one place."""
    seen: Dict[str, str] = {}
    for name, where in names:
        if name in seen:
            raise invalid(f"{seen[name]} and {where}", "would be written to the same file")
        seen[name] = where
