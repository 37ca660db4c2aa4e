"""systemd-networkd units for the interfaces a platform describes (attributes.md §2.14).

One renderer for every platform: ``<NN>-<interface name, else MAC>.network`` and
``<NN>-<name>.netdev``, NN the two-digit priority. Metadata reaches a unit only as values
re-rendered from their parsed form: addresses through ``ipaddress`` (no zone index, no stray
character), MACs and names through strict patterns, so no metadata text can add a line or a
section. Anything else is ``InvalidMetadata`` and nothing is written.

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
from cl_metadata.model import NetworkInterface, VirtualNetDev

logger = logging.getLogger("cl_metadata")

FILE_MODE = 0o644
SOURCE = "network units"
HEADER = "# Written by cl-metadata from the platform's metadata; replaced on every run.\n"
DHCP_MODES = frozenset({"yes", "ipv4", "ipv6"})

_IFNAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,14}")  # Linux: 15 bytes, no '/', ':', space
_MAC = re.compile(r"[0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){5}")
_IP_TEXT = re.compile(r"[0-9A-Fa-f.:]+")  # no '%zone', no brackets, no whitespace
_KIND = re.compile(r"[a-z][a-z0-9-]*")
_SECTION = re.compile(r"[A-Z][A-Za-z0-9]*")
_SETTING = re.compile(r"[A-Z][A-Za-z0-9]*")
_VALUE = re.compile(r"[A-Za-z0-9_.+:/-]+")
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


def _priority(value: object, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 99:
        raise _invalid(where, "priority is not a number from 0 to 99")
    return value


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


def _network_unit(interface: NetworkInterface, where: str) -> Tuple[str, str]:
    priority = _priority(interface.priority, where)
    if interface.name is not None:
        name = _checked(interface.name, _IFNAME, where, "name is not an interface name")
        match, stem = f"Name={name}", name
    elif interface.mac is not None:
        mac = _checked(interface.mac, _MAC, where, "MAC address is not six hex bytes").lower()
        match, stem = f"MACAddress={mac}", mac
    else:
        raise _invalid(where, "has neither a name nor a MAC address")

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
        network.append("Bond=" + _checked(interface.bond, _IFNAME, where,
                                          "bond is not an interface name"))

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
    for i, route in enumerate(interface.routes):
        destination, gateway = _route(route.destination, route.gateway, f"{where}: route {i}")
        sections.append(["[Route]", f"Destination={destination}", f"Gateway={gateway}"])
    return f"{priority:02d}-{stem}.network", _unit_text(sections)


def _netdev_unit(netdev: VirtualNetDev, where: str) -> Tuple[str, str]:
    priority = _priority(netdev.priority, where)
    name = _checked(netdev.name, _IFNAME, where, "name is not an interface name")
    lines = ["[NetDev]", f"Name={name}",
             "Kind=" + _checked(netdev.kind, _KIND, where, "kind is not a netdev kind")]
    if netdev.mac is not None:
        lines.append("MACAddress=" + _checked(netdev.mac, _MAC, where,
                                              "MAC address is not six hex bytes").lower())
    sections = [lines]
    for section, settings in netdev.sections:
        body = ["[" + _checked(section, _SECTION, where, "section name is invalid") + "]"]
        for key, value in settings:
            body.append(_checked(key, _SETTING, where, f"a [{section}] setting name is invalid")
                        + "=" + _checked(value, _VALUE, where,
                                         f"a [{section}] value has characters units do not take"))
        sections.append(body)
    return f"{priority:02d}-{name}.netdev", _unit_text(sections)


def _unit_text(sections: List[List[str]]) -> str:
    return HEADER + "".join("\n" + "\n".join(lines) + "\n" for lines in sections)


def render(interfaces: Sequence[NetworkInterface],
           netdevs: Sequence[VirtualNetDev]) -> Dict[str, bytes]:
    """File name → content for every unit; InvalidMetadata when any value cannot be rendered."""
    jobs = [(f"interface {i}", _network_unit, item) for i, item in enumerate(interfaces)]
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
