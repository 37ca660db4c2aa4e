"""NetworkManager keyfiles (``--networkmanager-profiles DIR``) for the interfaces a platform
describes.

One connection profile per device, named as the networkd units are,
``<NN>-<MAC, else name>.nmconnection`` (NN the two-digit priority), mode 0600 (NetworkManager
ignores a keyfile others can read or write). A NIC with a MAC address is matched by it alone
(``[ethernet] mac-address``), one without by ``interface-name``. A bond, bridge or VLAN is one
profile holding the device (``[bond]``, ``[bridge]``, ``[vlan]`` with ``parent``) and its
addressing; bond and bridge members name it in ``master`` with ``slave-type`` and carry no
addressing of their own. The profile's ``uuid`` is derived from its file name, so a rerun
replaces a profile rather than adding one.

Addressing: ``[ipv4]`` ``method=auto`` with DHCPv4, else ``manual`` with static addresses, else
``disabled``; ``[ipv6]`` ``method=auto`` (router advertisements, DHCPv6 when they say so, as
networkd does by default) with any static addresses beside. Nameservers and routes go to their
family's section (``dns=``, ``routeN=destination,gateway``). NetworkManager refuses IPv4
nameservers or routes on a profile without IPv4, so those are left out with a warning naming
the interface. An unmanaged NIC gets no profile (unmanaged is a device setting of
NetworkManager's own configuration, not a profile's). A bridge without an ``stp`` setting gets
``stp=false``, the kernel's default that networkd keeps (NetworkManager's own default is on);
bridge times must be whole seconds within NetworkManager's ranges.

Every value comes from :func:`cl_metadata.network.netcheck.check`, so no metadata text can add a key, a
section or a file.
"""

from __future__ import annotations

import logging
import os
import re
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

from cl_metadata.outputs import fsutil

from cl_metadata.network import netcheck
from cl_metadata.model import NetworkInterface, VirtualNetDev
from cl_metadata.network.netcheck import Checked, CheckedInterface, CheckedNetDev

logger = logging.getLogger("cl_metadata")

FILE_MODE = 0o600
HEADER = "# Written by cl-metadata from the platform's metadata; replaced on every run.\n"
_FILE_NAME = re.compile(r"[0-9]{2}-[A-Za-z0-9_.:-]+\.nmconnection")
_TYPES = {"bond": "bond", "bridge": "bridge", "vlan": "vlan"}
# NetworkManager's ranges for a bridge's times, in seconds (nm-setting-bridge.c); without STP
# it also takes 0 for the first three (a bridge that forwards at once, as ``bridge_fd 0``)
_BRIDGE_TIMES = (("forward-delay", "forward_delay_ms", "forward delay", 2, 30),
                 ("hello-time", "hello_time_ms", "hello time", 1, 10),
                 ("max-age", "max_age_ms", "max age", 6, 40),
                 ("ageing-time", "ageing_time_ms", "ageing time", 0, 1_000_000))
_FNV_OFFSET = 0x6C62272E07BB014262B821756295C58D  # FNV-1a, 128 bits
_FNV_PRIME = 0x0000000001000000000000000000013B
_BITS = (1 << 128) - 1


def _uuid(file_name: str) -> str:
    """A stable uuid for a profile: FNV-1a of its file name, as an RFC 9562 version 8
    (vendor-defined) uuid. Only stability and distinctness matter here, and this costs no
    import (uuid and hashlib together take milliseconds at boot)."""
    value = _FNV_OFFSET
    for byte in ("cl-metadata/" + file_name).encode("ascii"):
        value = ((value ^ byte) * _FNV_PRIME) & _BITS
    value = (value & ~(0xF << 76)) | (0x8 << 76)  # version 8
    value = (value & ~(0x3 << 62)) | (0x2 << 62)  # the RFC variant
    text = f"{value:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def _addressing(interface: Optional[CheckedInterface], where: str) -> List[List[str]]:
    """The ``[ipv4]`` and ``[ipv6]`` sections of a device that is no bond or bridge member."""
    sections = []
    for version, section in ((4, "[ipv4]"), (6, "[ipv6]")):
        addresses = [a for a in interface.addresses if a.version == version] if interface else []
        servers = [s for s in interface.nameservers if s.version == version] if interface else []
        routes = [r for r in interface.routes if r.destination.version == version] \
            if interface else []
        dhcp = interface is not None and interface.dhcp in ("yes", f"ipv{version}")
        if version == 6 or dhcp:
            method = "auto"
        elif addresses:
            method = "manual"
        else:
            method = "disabled"
            if servers or routes:
                logger.warning("NetworkManager profiles: %s: IPv4 nameservers and routes "
                               "left out: the profile has no IPv4 address or DHCP", where)
                servers, routes = [], []
        lines = [section, f"method={method}"]
        lines += [f"address{i}={address}" for i, address in enumerate(addresses, 1)]
        if servers:
            lines.append("dns=" + "".join(f"{server};" for server in servers))
        lines += [f"route{i}={route.destination},{route.gateway}"
                  for i, route in enumerate(routes, 1)]
        sections.append(lines)
    return sections


def _bond(netdev: CheckedNetDev) -> List[str]:
    bond = netdev.bond
    values = [("mode", bond.mode), ("xmit_hash_policy", bond.transmit_hash_policy),
              ("lacp_rate", bond.lacp_rate), ("ad_select", bond.ad_select),
              ("miimon", bond.mii_monitor_ms), ("updelay", bond.up_delay_ms),
              ("downdelay", bond.down_delay_ms), ("min_links", bond.min_links)]
    return ["[bond]"] + [f"{key}={value}" for key, value in values if value is not None]


def _bridge(netdev: CheckedNetDev) -> List[str]:
    bridge = netdev.bridge
    lines = ["[bridge]", f"stp={'true' if bridge.stp else 'false'}"]
    if bridge.priority is not None:
        lines.append(f"priority={bridge.priority}")
    for key, field, what, low, high in _BRIDGE_TIMES:
        ms = getattr(bridge, field)
        if ms is None:
            continue
        seconds = ms // 1000
        if ms % 1000 or not (low <= seconds <= high or seconds == 0 and not bridge.stp):
            raise netcheck.invalid(netdev.where, f"{what} is not whole seconds from {low} to "
                                                 f"{high} (or 0 without STP), as "
                                                 "NetworkManager requires")
        lines.append(f"{key}={ms // 1000}")
    return lines


def _profile(file_name: str, kind: str, match: List[str], device: List[List[str]],
             interface: Optional[CheckedInterface], where: str) -> str:
    stem = file_name[3:-len(".nmconnection")]
    connection = ["[connection]", f"id=cl-metadata-{stem}", f"uuid={_uuid(file_name)}",
                  f"type={kind}"] + match
    member = interface is not None and (interface.bond or interface.bridge)
    if member:
        master = interface.bond or interface.bridge
        connection += [f"master={master}", f"slave-type={'bond' if interface.bond else 'bridge'}"]
    sections = [connection] + [lines for lines in device if len(lines) > 1]
    if not member:
        sections += _addressing(interface, where)
    return HEADER + "".join("\n" + "\n".join(lines) + "\n" for lines in sections)


def _profiles(checked: Checked) -> List[Tuple[str, str, str]]:
    """(file name, where, text) of every profile."""
    configuration = {i.name: i for i in checked.interfaces if i.virtual}
    file_names: Dict[str, str] = {}  # device stem → file name, for a VLAN's parent
    parents: Dict[str, CheckedInterface] = {}
    for interface in checked.interfaces:
        file_names.setdefault(interface.stem, f"{interface.priority:02d}-{interface.stem}"
                                              ".nmconnection")
        for vlan in interface.vlans:
            parents[vlan] = interface
    profiles = []
    for interface in checked.interfaces:
        if interface.virtual or interface.unmanaged:
            continue
        file_name = f"{interface.priority:02d}-{interface.stem}.nmconnection"
        if interface.mac:
            match, device = [], [["[ethernet]", f"mac-address={interface.mac}"]]
        else:
            match, device = [f"interface-name={interface.name}"], []
        profiles.append((file_name, interface.where, _profile(
            file_name, "ethernet", match, device, interface, interface.where)))
    for netdev in checked.netdevs:
        file_name = f"{netdev.priority:02d}-{netdev.name}.nmconnection"
        device = [["[ethernet]"] + ([f"cloned-mac-address={netdev.mac}"] if netdev.mac else [])]
        if netdev.kind == "bond":
            device.append(_bond(netdev))
        elif netdev.kind == "bridge":
            device.append(_bridge(netdev))
        else:
            parent = parents[netdev.name]
            # a NIC matched by MAC has no name here: its profile stands for it
            link = parent.name if parent.mac is None else _uuid(file_names[parent.stem])
            device.append(["[vlan]", f"id={netdev.vlan_id}", f"parent={link}"])
        interface = configuration.get(netdev.name)
        profiles.append((file_name, netdev.where, _profile(
            file_name, _TYPES[netdev.kind], [f"interface-name={netdev.name}"], device,
            interface, interface.where if interface else netdev.where)))
    return profiles


def render(interfaces: Sequence[NetworkInterface],
           netdevs: Sequence[VirtualNetDev]) -> Dict[str, bytes]:
    """File name → content for every profile; InvalidMetadata when any value cannot be
    rendered."""
    checked = netcheck.check(interfaces, netdevs)
    # a virtual device's configuration is part of its netdev's profile: one profile each
    netcheck.one_file_each([(i.name, i.where) for i in checked.interfaces if i.virtual])
    profiles = _profiles(checked)
    netcheck.one_file_each([(name, where) for name, where, _ in profiles])
    return {name: text.encode("ascii") for name, _, text in profiles}


def write_files(directory: Union[str, "os.PathLike[str]"], files: Mapping[str, bytes]) -> None:
    """Write each profile atomically (mode 0600) into ``directory``, created when missing, by
    the output-path rules of the network units. Profiles of earlier runs that this run does not
    produce are left alone, as the network units are."""
    directory = os.fspath(directory)
    for name in files:
        if not _FILE_NAME.fullmatch(name):
            raise ValueError(f"not a NetworkManager profile file name: {name!r}")
    fsutil.write_into_dir(directory, files, mode=FILE_MODE)
    logger.info("wrote %d NetworkManager profile%s to %s", len(files),
                "" if len(files) == 1 else "s", directory)
