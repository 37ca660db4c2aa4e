"""systemd-networkd units for the interfaces a platform describes (attributes.md §2.14).

One renderer for every platform: ``<NN>-<MAC, else interface name>.network`` per interface and
``<NN>-<name>.netdev`` per bond, bridge or VLAN, NN the two-digit priority. An interface with a
MAC address is matched by it alone (``MACAddress=``), one without by ``Name=``: the name a
platform gives is the name another system would use, not necessarily the one the NIC has here.
Members name their bond or bridge (``Bond=``, ``Bridge=``), a VLAN's parent names the VLAN
(``VLAN=``), and each must name a netdev of the same run.

Metadata reaches a unit only as values re-rendered from their parsed form: addresses through
``ipaddress`` (no zone index, no stray character), MACs and names through strict patterns,
bond settings from fixed sets and numbers from bounded integers, so no metadata text can add a
line, a section or a file. Anything else is ``InvalidMetadata`` and nothing is written.

Providers parse addresses and netmasks with :func:`parse_ip` and :func:`netmask_prefix`, so
every platform applies the same rules.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

from cl_metadata import fsutil
from cl_metadata.errors import InvalidMetadata
from cl_metadata.model import (BOND_AD_SELECT, BOND_HASH_POLICIES, BOND_LACP_RATES, BOND_MODES,
                               NETDEV_KINDS, BondOptions, BridgeOptions, NetworkInterface,
                               VirtualNetDev)

logger = logging.getLogger("cl_metadata")

FILE_MODE = 0o644
SOURCE = "network units"
HEADER = "# Written by cl-metadata from the platform's metadata; replaced on every run.\n"
DHCP_MODES = frozenset({"yes", "ipv4", "ipv6"})
MAX_DURATION_MS = 24 * 3600 * 1000  # no bond or bridge timer runs for a day

_IFNAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,14}")  # Linux: 15 bytes, no '/', ':', space
_MAC = re.compile(r"[0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){5}")
_IP_TEXT = re.compile(r"[0-9A-Fa-f.:]+")  # no '%zone', no brackets, no whitespace
_FILE_NAME = re.compile(r"[0-9]{2}-[A-Za-z0-9_.:-]+\.(?:network|netdev)")

IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]


# --- parsing helpers shared with the providers ---------------------------------------------

def _ip(value: object, version: Optional[int] = None) -> Optional[IPAddress]:
    """The address ``value`` spells (of ``version`` when given), else None."""
    if not isinstance(value, str) or not _IP_TEXT.fullmatch(value.strip()):
        return None
    try:
        address = ipaddress.ip_address(value.strip())
    except ValueError:
        return None
    return address if version is None or address.version == version else None


def parse_ip(value: object, *, field: str, source: str,
             version: Optional[int] = None) -> IPAddress:
    """An IP address from metadata: plain address text of ``version`` (4/6) when given."""
    address = _ip(value, version)
    if address is None:
        family = f"an IPv{version}" if version else "an IP"
        raise InvalidMetadata(f"field {field!r} is not {family} address", source=source)
    return address


def netmask_prefix(value: object, *, field: str, source: str, version: int) -> int:
    """The prefix length of a contiguous netmask (``255.255.255.0``, ``ffff:ffff::``)."""
    mask = int(parse_ip(value, field=field, source=source, version=version))
    bits = 32 if version == 4 else 128
    host = ~mask & ((1 << bits) - 1)
    if host & (host + 1):  # host part must be all ones: 0…01…1
        raise InvalidMetadata(f"field {field!r} is not a contiguous netmask", source=source)
    return bits - host.bit_length()


# --- rendering -------------------------------------------------------------------------------

def _invalid(where: str, what: str) -> InvalidMetadata:
    return InvalidMetadata(f"{where}: {what}", source=SOURCE)


def _checked(value: object, pattern: re.Pattern, where: str, what: str) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise _invalid(where, what)
    return value


def _number(value: object, low: int, high: int, where: str, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _invalid(where, f"{what} is not a number from {low} to {high}")
    return value


def _priority(value: object, where: str) -> int:
    return _number(value, 0, 99, where, "priority")


def _prefixed(value: object, where: str, what: str, make):
    """``make("ip/prefix")`` for text of that shape, else InvalidMetadata."""
    ip, slash, prefix = value.partition("/") if isinstance(value, str) else ("", "", "")
    try:
        if not (slash and _IP_TEXT.fullmatch(ip) and prefix.isascii() and prefix.isdigit()):
            raise ValueError
        return make(f"{ip}/{int(prefix)}")
    except ValueError:
        raise _invalid(where, what) from None


def _route(destination: object, gateway: object, where: str) -> Tuple[str, str]:
    network = _prefixed(destination, where, "destination is not a network",
                        lambda text: ipaddress.ip_network(text, strict=False))
    via = _ip(gateway, network.version)
    if via is None:
        raise _invalid(where, f"gateway is not an IPv{network.version} address")
    return str(network), str(via)


def _member_of(value: object, kind: str, kinds: Mapping[str, str], where: str) -> str:
    """``value`` when it names a ``kind`` netdev of this run (networkd would wait for it)."""
    name = _checked(value, _IFNAME, where, f"{kind} is not an interface name")
    if kinds.get(name) != kind:
        raise _invalid(where, f"{kind} is not a {kind} netdev of this run")
    return name


def _match(interface: NetworkInterface, kinds: Mapping[str, str], where: str) -> Tuple[str, str]:
    """(``[Match]`` line, file name stem): the MAC when there is one, else the name."""
    if interface.mac is not None:
        if isinstance(interface.name, str) and interface.name in kinds:
            raise _invalid(where, "a virtual device is matched by name; its MAC address "
                                  "belongs to its netdev")
        mac = _checked(interface.mac, _MAC, where, "MAC address is not six hex bytes").lower()
        return f"MACAddress={mac}", mac
    if interface.name is not None:
        name = _checked(interface.name, _IFNAME, where, "name is not an interface name")
        return f"Name={name}", name
    raise _invalid(where, "has neither a name nor a MAC address")


def _network_unit(interface: NetworkInterface, where: str,
                  kinds: Mapping[str, str]) -> Tuple[str, str]:
    priority = _priority(interface.priority, where)
    match, stem = _match(interface, kinds, where)

    network: List[str] = []
    if interface.dhcp is not None:
        if interface.dhcp not in DHCP_MODES:
            raise _invalid(where, "DHCP mode is not yes, ipv4 or ipv6")
        network.append(f"DHCP={interface.dhcp}")
    for i, server in enumerate(interface.nameservers):
        address = _ip(server)
        if address is None:
            raise _invalid(where, f"nameserver {i} is not an IP address")
        network.append(f"DNS={address}")
    if interface.bond is not None:
        network.append("Bond=" + _member_of(interface.bond, "bond", kinds, where))
    if interface.bridge is not None:
        network.append("Bridge=" + _member_of(interface.bridge, "bridge", kinds, where))
    if not isinstance(interface.vlans, tuple):
        raise _invalid(where, "vlans is not a tuple of names")
    for vlan in interface.vlans:
        network.append("VLAN=" + _member_of(vlan, "vlan", kinds, where))

    sections = [["[Match]", match]]
    if network:
        sections.append(["[Network]"] + network)
    if interface.unmanaged is True:
        sections.append(["[Link]", "Unmanaged=yes"])
    elif interface.unmanaged is not False:
        raise _invalid(where, "unmanaged is not a boolean")
    for i, address in enumerate(interface.addresses):
        address = _prefixed(address, f"{where}: address {i}",
                            "is not an IP address with a prefix length", ipaddress.ip_interface)
        sections.append(["[Address]", f"Address={address}"])
    routes = [_route(route.destination, route.gateway, f"{where}: route {i}")
              for i, route in enumerate(interface.routes)]
    for destination, gateway in dict.fromkeys(routes):  # one section per distinct route
        sections.append(["[Route]", f"Destination={destination}", f"Gateway={gateway}"])
    return f"{priority:02d}-{stem}.network", _unit_text(sections)


def _duration(value: object, where: str, what: str) -> str:
    """A systemd time span from milliseconds: ``2s``, ``100ms``."""
    ms = _number(value, 0, MAX_DURATION_MS, where, what)
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


def _choice(value: object, allowed: Sequence[str], where: str, what: str) -> str:
    if value not in allowed:
        raise _invalid(where, f"{what} is not one of " + ", ".join(allowed))
    return value


def _bond_section(options: object, where: str) -> List[str]:
    if not isinstance(options, BondOptions):
        raise _invalid(where, "bond settings are not BondOptions")
    settings = [
        ("Mode", options.mode, lambda v: _choice(v, BOND_MODES, where, "bond mode")),
        ("TransmitHashPolicy", options.transmit_hash_policy,
         lambda v: _choice(v, BOND_HASH_POLICIES, where, "transmit hash policy")),
        ("LACPTransmitRate", options.lacp_rate,
         lambda v: _choice(v, BOND_LACP_RATES, where, "LACP rate")),
        ("AdSelect", options.ad_select, lambda v: _choice(v, BOND_AD_SELECT, where, "ad-select")),
        ("MIIMonitorSec", options.mii_monitor_ms,
         lambda v: _duration(v, where, "MII monitor interval")),
        ("UpDelaySec", options.up_delay_ms, lambda v: _duration(v, where, "up delay")),
        ("DownDelaySec", options.down_delay_ms, lambda v: _duration(v, where, "down delay")),
        ("MinLinks", options.min_links, lambda v: str(_number(v, 0, 1024, where, "min links"))),
    ]
    return [f"{key}={render_value(value)}" for key, value, render_value in settings
            if value is not None]


def _bridge_section(options: object, where: str) -> List[str]:
    if not isinstance(options, BridgeOptions):
        raise _invalid(where, "bridge settings are not BridgeOptions")
    if options.stp not in (None, True, False):
        raise _invalid(where, "STP is not a boolean")
    settings = [
        ("STP", options.stp, lambda v: "yes" if v else "no"),
        ("Priority", options.priority,
         lambda v: str(_number(v, 0, 65535, where, "bridge priority"))),
        ("ForwardDelaySec", options.forward_delay_ms,
         lambda v: _duration(v, where, "forward delay")),
        ("HelloTimeSec", options.hello_time_ms, lambda v: _duration(v, where, "hello time")),
        ("MaxAgeSec", options.max_age_ms, lambda v: _duration(v, where, "max age")),
        ("AgeingTimeSec", options.ageing_time_ms, lambda v: _duration(v, where, "ageing time")),
    ]
    return [f"{key}={render_value(value)}" for key, value, render_value in settings
            if value is not None]


def _netdev_unit(netdev: VirtualNetDev, where: str) -> Tuple[str, str]:
    priority = _priority(netdev.priority, where)
    name = _checked(netdev.name, _IFNAME, where, "name is not an interface name")
    kind = _choice(netdev.kind, NETDEV_KINDS, where, "kind")
    lines = ["[NetDev]", f"Name={name}", f"Kind={kind}"]
    if netdev.mac is not None:
        lines.append("MACAddress=" + _checked(netdev.mac, _MAC, where,
                                              "MAC address is not six hex bytes").lower())
    present = {"bond": netdev.bond is not None, "bridge": netdev.bridge is not None,
               "vlan": netdev.vlan_id is not None}
    if any(present[other] for other in NETDEV_KINDS if other != kind):
        raise _invalid(where, f"a {kind} has settings of another kind")
    sections = [lines]
    if kind == "bond":
        sections.append(["[Bond]"] + _bond_section(netdev.bond or BondOptions(), where))
    elif kind == "bridge":
        sections.append(["[Bridge]"] + _bridge_section(netdev.bridge or BridgeOptions(), where))
    else:
        sections.append(["[VLAN]", f"Id={_number(netdev.vlan_id, 0, 4094, where, 'VLAN id')}"])
    return f"{priority:02d}-{name}.netdev", _unit_text([s for s in sections if len(s) > 1])


def _unit_text(sections: List[List[str]]) -> str:
    return HEADER + "".join("\n" + "\n".join(lines) + "\n" for lines in sections)


def render(interfaces: Sequence[NetworkInterface],
           netdevs: Sequence[VirtualNetDev]) -> Dict[str, bytes]:
    """File name → content for every unit; InvalidMetadata when any value cannot be rendered."""
    kinds: Dict[str, str] = {}  # netdev name → kind, for the members' Bond=, Bridge=, VLAN=
    for i, netdev in enumerate(netdevs):
        if not isinstance(netdev.name, str):
            continue  # _netdev_unit names the fault
        if netdev.name in kinds:
            raise _invalid(f"netdev {i}", "a second netdev of the same name")
        kinds[netdev.name] = netdev.kind
    jobs = [(f"interface {i}", lambda item, where: _network_unit(item, where, kinds), item)
            for i, item in enumerate(interfaces)]
    jobs += [(f"netdev {i}", _netdev_unit, item) for i, item in enumerate(netdevs)]
    files: Dict[str, bytes] = {}
    written_by: Dict[str, str] = {}
    for where, make_unit, item in jobs:
        name, text = make_unit(item, where)
        if name in files:
            raise _invalid(f"{written_by[name]} and {where}", "would be written to the same file")
        files[name], written_by[name] = text.encode("ascii"), where
    return files


# --- writing ---------------------------------------------------------------------------------

def write_files(directory: Union[str, "os.PathLike[str]"], files: Mapping[str, bytes]) -> None:
    """Write each unit atomically (mode 0644) into ``directory``, created when missing.

    The directory must not be a symlink; when missing it is created 0755, its parent only below
    ``/run`` (``fsutil.make_output_dir``). A unit name held by a symlink or anything but a
    regular file is refused. Units of earlier runs that this run does not produce are left
    alone: the directory may be shared with units the administrator wrote.
    """
    directory = os.fspath(directory)
    for name in files:
        if not _FILE_NAME.fullmatch(name):
            raise ValueError(f"not a network unit file name: {name!r}")
    fsutil.make_output_dir(directory)
    for name in sorted(files):
        fsutil.atomic_write(os.path.join(directory, name), files[name], mode=FILE_MODE)
    logger.info("wrote %d network unit%s to %s", len(files), "" if len(files) == 1 else "s",
                directory)
