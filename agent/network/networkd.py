"""systemd-networkd units for the interfaces a platform describes.

One renderer for every platform: ``<NN>-<MAC, else interface name>.network`` per interface and
``<NN>-<name>.netdev`` per bond, bridge or VLAN, NN the two-digit priority. An interface with a
MAC address is matched by it alone (``MACAddress=``), one without by ``Name=``: the name a
platform gives is the name another system would use, not necessarily the one the NIC has here.
Members name their bond or bridge (``Bond=``, ``Bridge=``), a VLAN's parent names the VLAN
(``VLAN=``), and each must name a netdev of the same run.

Metadata reaches a unit only as the values :func:`cl_metadata.network.netcheck.check` re-rendered from
their parsed form, so no metadata text can add a line, a section or a file. Anything else is
``InvalidMetadata`` and nothing is written.

Providers parse addresses and netmasks with :func:`parse_ip` and :func:`netmask_prefix`, so
every platform applies the same rules.
"""

from __future__ import annotations

import logging
import os
import re
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

from cl_metadata.outputs import fsutil

from cl_metadata.network import netcheck
from cl_metadata.errors import InvalidMetadata
from cl_metadata.model import NetworkInterface, VirtualNetDev
from cl_metadata.network.netcheck import CheckedInterface, CheckedNetDev, IPAddress

logger = logging.getLogger("cl_metadata")

FILE_MODE = 0o644
SOURCE = netcheck.SOURCE
HEADER = "# Written by cl-metadata from the platform's metadata; replaced on every run.\n"

_FILE_NAME = re.compile(r"[0-9]{2}-[A-Za-z0-9_.:-]+\.(?:network|netdev)")


# --- parsing helpers shared with the providers ---------------------------------------------

def parse_ip(value: object, *, field: str, source: str,
             version: Optional[int] = None) -> IPAddress:
    """An IP address from metadata: plain address text of ``version`` (4/6) when given."""
    address = netcheck.ip(value, version)
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

def _duration(ms: int) -> str:
    """A systemd time span from milliseconds: ``2s``, ``100ms``."""
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


def _network_unit(interface: CheckedInterface) -> Tuple[str, str]:
    match = f"MACAddress={interface.mac}" if interface.mac else f"Name={interface.name}"
    network: List[str] = []
    if interface.dhcp is not None:
        network.append(f"DHCP={interface.dhcp}")
    network += [f"DNS={server}" for server in interface.nameservers]
    if interface.bond is not None:
        network.append(f"Bond={interface.bond}")
    if interface.bridge is not None:
        network.append(f"Bridge={interface.bridge}")
    network += [f"VLAN={vlan}" for vlan in interface.vlans]

    sections = [["[Match]", match]]
    if network:
        sections.append(["[Network]"] + network)
    if interface.unmanaged:
        sections.append(["[Link]", "Unmanaged=yes"])
    sections += [["[Address]", f"Address={address}"] for address in interface.addresses]
    sections += [["[Route]", f"Destination={route.destination}", f"Gateway={route.gateway}"]
                 for route in interface.routes]
    return f"{interface.priority:02d}-{interface.stem}.network", _unit_text(sections)


def _settings(values: Sequence[Tuple[str, object, object]]) -> List[str]:
    return [f"{key}={render_value(value)}" for key, value, render_value in values
            if value is not None]


def _netdev_unit(netdev: CheckedNetDev) -> Tuple[str, str]:
    lines = ["[NetDev]", f"Name={netdev.name}", f"Kind={netdev.kind}"]
    if netdev.mac is not None:
        lines.append(f"MACAddress={netdev.mac}")
    sections = [lines]
    if netdev.kind == "bond":
        bond = netdev.bond
        sections.append(["[Bond]"] + _settings([
            ("Mode", bond.mode, str), ("TransmitHashPolicy", bond.transmit_hash_policy, str),
            ("LACPTransmitRate", bond.lacp_rate, str), ("AdSelect", bond.ad_select, str),
            ("MIIMonitorSec", bond.mii_monitor_ms, _duration),
            ("UpDelaySec", bond.up_delay_ms, _duration),
            ("DownDelaySec", bond.down_delay_ms, _duration),
            ("MinLinks", bond.min_links, str)]))
    elif netdev.kind == "bridge":
        bridge = netdev.bridge
        sections.append(["[Bridge]"] + _settings([
            ("STP", bridge.stp, lambda v: "yes" if v else "no"),
            ("Priority", bridge.priority, str),
            ("ForwardDelaySec", bridge.forward_delay_ms, _duration),
            ("HelloTimeSec", bridge.hello_time_ms, _duration),
            ("MaxAgeSec", bridge.max_age_ms, _duration),
            ("AgeingTimeSec", bridge.ageing_time_ms, _duration)]))
    else:
        sections.append(["[VLAN]", f"Id={netdev.vlan_id}"])
    return f"{netdev.priority:02d}-{netdev.name}.netdev", _unit_text(
        [s for s in sections if len(s) > 1])


def _unit_text(sections: List[List[str]]) -> str:
    return HEADER + "".join("\n" + "\n".join(lines) + "\n" for lines in sections)


def render(interfaces: Sequence[NetworkInterface],
           netdevs: Sequence[VirtualNetDev]) -> Dict[str, bytes]:
    """File name → content for every unit; InvalidMetadata when any value cannot be rendered."""
    checked = netcheck.check(interfaces, netdevs)
    units = [(_network_unit(item), item.where) for item in checked.interfaces]
    units += [(_netdev_unit(item), item.where) for item in checked.netdevs]
    netcheck.one_file_each([(name, where) for (name, _), where in units])
    return {name: text.encode("ascii") for (name, text), _ in units}


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
    fsutil.write_into_dir(directory, files, mode=FILE_MODE)
    logger.info("wrote %d network unit%s to %s", len(files), "" if len(files) == 1 else "s",
                directory)
