"""A netplan document (``--netplan-config DIR``) for the interfaces a platform describes.

One file, ``50-cl-metadata.yaml`` (mode 0600: netplan refuses to trust a document others can
read), holds every device: it is replaced whole on each run, so a device the platform stopped
describing disappears with it. Devices are keyed by the same stem the networkd units are named
after, the MAC address, else the name: ``ethernets`` (a NIC with a MAC is matched by it alone,
``match: macaddress``), and ``bonds``, ``bridges``, ``vlans`` keyed by the virtual device's name,
with their members (``interfaces``), parent (``link``), MAC address and ``parameters``.

The YAML is written line by line from the values :func:`cl_metadata.network.netcheck.check` produced
(each a name, MAC, address or number matched against a strict pattern, double-quoted), so no
metadata text can add a key, a device or a file. An unmanaged NIC is left out: netplan does not
touch a device it does not list. A bridge without an ``stp`` setting gets ``stp: false``, the
kernel's default that networkd keeps (netplan's own default is on).
"""

from __future__ import annotations

import logging
import os
from typing import Dict, List, Mapping, Optional, Sequence, Union

from cl_metadata.outputs import fsutil

from cl_metadata.network import netcheck
from cl_metadata.model import NetworkInterface, VirtualNetDev
from cl_metadata.network.netcheck import Checked, CheckedInterface, CheckedNetDev

logger = logging.getLogger("cl_metadata")

FILE_NAME = "50-cl-metadata.yaml"
FILE_MODE = 0o600
HEADER = "# Written by cl-metadata from the platform's metadata; replaced on every run.\n"
_SECTIONS = {"bond": "bonds", "bridge": "bridges", "vlan": "vlans"}


def _q(value: object) -> str:
    """A checked value as a YAML scalar: double-quoted text (no quote, backslash or control
    character can occur in it), bare numbers and booleans."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return f'"{value}"'


def _duration(ms: int) -> str:
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


def _list(key: str, values: Sequence[object], indent: str) -> List[str]:
    return [f"{indent}{key}:"] + [f"{indent}  - {_q(value)}" for value in values] if values else []


def _configuration(interface: CheckedInterface, indent: str) -> List[str]:
    """The addressing lines of one device."""
    lines = []
    if interface.dhcp in ("yes", "ipv4"):
        lines.append(f"{indent}dhcp4: true")
    if interface.dhcp in ("yes", "ipv6"):
        lines.append(f"{indent}dhcp6: true")
    lines += _list("addresses", [str(a) for a in interface.addresses], indent)
    if interface.nameservers:
        lines.append(f"{indent}nameservers:")
        lines += _list("addresses", [str(a) for a in interface.nameservers], indent + "  ")
    if interface.routes:
        lines.append(f"{indent}routes:")
        for route in interface.routes:
            lines += [f"{indent}  - to: {_q(str(route.destination))}",
                      f"{indent}    via: {_q(str(route.gateway))}"]
    return lines


def _parameters(netdev: CheckedNetDev, indent: str) -> List[str]:
    if netdev.kind == "bond":
        bond = netdev.bond
        values = [("mode", bond.mode), ("transmit-hash-policy", bond.transmit_hash_policy),
                  ("lacp-rate", bond.lacp_rate), ("ad-select", bond.ad_select),
                  ("mii-monitor-interval", _ms(bond.mii_monitor_ms)),
                  ("up-delay", _ms(bond.up_delay_ms)), ("down-delay", _ms(bond.down_delay_ms)),
                  ("min-links", bond.min_links)]
    elif netdev.kind == "bridge":
        bridge = netdev.bridge
        values = [("stp", bool(bridge.stp)), ("priority", bridge.priority),
                  ("forward-delay", _ms(bridge.forward_delay_ms)),
                  ("hello-time", _ms(bridge.hello_time_ms)), ("max-age", _ms(bridge.max_age_ms)),
                  ("ageing-time", _ms(bridge.ageing_time_ms))]
    else:
        return []
    lines = [f"{indent}  {key}: {_q(value)}" for key, value in values if value is not None]
    return [f"{indent}parameters:"] + lines if lines else []


def _ms(value: Optional[int]) -> Optional[str]:
    return None if value is None else _duration(value)


def _device(key: str, body: List[str]) -> List[str]:
    return [f"    {_q(key)}:"] + body if body else [f"    {_q(key)}: {{}}"]


def _document(checked: Checked) -> str:
    configuration = {i.name: i for i in checked.interfaces if i.virtual}
    members: Dict[str, List[str]] = {}
    parents: Dict[str, str] = {}
    for interface in checked.interfaces:
        for master in (interface.bond, interface.bridge):
            if master is not None:
                members.setdefault(master, []).append(interface.stem)
        for vlan in interface.vlans:
            parents[vlan] = interface.stem

    sections: Dict[str, List[str]] = {"ethernets": [], "bonds": [], "bridges": [], "vlans": []}
    for interface in checked.interfaces:
        if interface.virtual or interface.unmanaged:
            continue
        body = ["      match:", f"        macaddress: {_q(interface.mac)}"] if interface.mac else []
        if interface.bond is None and interface.bridge is None:  # members carry no addresses
            body += _configuration(interface, "      ")
        sections["ethernets"] += _device(interface.stem, body)
    for netdev in checked.netdevs:
        if netdev.kind == "vlan":
            body = [f"      id: {netdev.vlan_id}", f"      link: {_q(parents[netdev.name])}"]
        else:
            body = _list("interfaces", members.get(netdev.name, []), "      ")
        if netdev.mac:
            body.append(f"      macaddress: {_q(netdev.mac)}")
        body += _parameters(netdev, "      ")
        interface = configuration.get(netdev.name)
        if interface is not None and interface.bond is None and interface.bridge is None:
            body += _configuration(interface, "      ")
        sections[_SECTIONS[netdev.kind]] += _device(netdev.name, body)
    text = HEADER + "network:\n  version: 2\n"
    for key, lines in sections.items():
        if lines:
            text += f"  {key}:\n" + "".join(line + "\n" for line in lines)
    return text


def render(interfaces: Sequence[NetworkInterface],
           netdevs: Sequence[VirtualNetDev]) -> Dict[str, bytes]:
    """File name → content (one document, or nothing for no devices); InvalidMetadata when any
    value cannot be rendered."""
    checked = netcheck.check(interfaces, netdevs)
    if not checked.interfaces and not checked.netdevs:
        return {}
    # one id per device: a NIC's stem, a virtual device's name (its configuration shares it)
    netcheck.one_file_each([(i.stem, i.where) for i in checked.interfaces])
    netcheck.one_file_each([(i.stem, i.where) for i in checked.interfaces if not i.virtual]
                           + [(n.name, n.where) for n in checked.netdevs])
    return {FILE_NAME: _document(checked).encode("ascii")}


def write_files(directory: Union[str, "os.PathLike[str]"], files: Mapping[str, bytes]) -> None:
    """Write the document atomically (mode 0600) into ``directory``, created when missing, by
    the output-path rules of the network units (``fsutil.make_output_dir``)."""
    directory = os.fspath(directory)
    for name in files:
        if name != FILE_NAME:
            raise ValueError(f"not the netplan file name: {name!r}")
    fsutil.write_into_dir(directory, files, mode=FILE_MODE)
    logger.info("wrote the netplan document %s to %s", FILE_NAME, directory)
