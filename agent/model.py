"""The values a provider hands to the writers: what the platform says about this machine.

Named tuples rather than dataclasses: importing ``dataclasses`` (and ``inspect``, ``ast`` with
it) costs every boot several milliseconds (bench/RESULTS.md), and these values need nothing more.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Mapping, NamedTuple, Optional, Tuple


class Needs(NamedTuple):
    """Which parts of the metadata a run's outputs need; a provider fetches only these."""

    attributes: bool = False
    ssh_keys: bool = False
    hostname: bool = False
    network: bool = False
    check_in: bool = False

    def any(self) -> bool:
        return self.attributes or self.ssh_keys or self.hostname or self.network or self.check_in


class Route(NamedTuple):
    destination: str  # "0.0.0.0/0", "10.0.0.0/8", "::/0"
    gateway: str


class NetworkInterface(NamedTuple):
    """One systemd-networkd ``.network`` unit's worth of configuration.

    Matched by ``name`` when given, else by ``mac``. Addresses are ``ip/prefix`` strings.
    """

    name: Optional[str] = None
    mac: Optional[str] = None
    priority: int = 10
    addresses: Tuple[str, ...] = ()
    routes: Tuple[Route, ...] = ()
    nameservers: Tuple[str, ...] = ()
    dhcp: Optional[str] = None  # "yes", "ipv4", "ipv6" or None for static only
    bond: Optional[str] = None  # name of the bond this NIC is enslaved to
    unmanaged: bool = False


class VirtualNetDev(NamedTuple):
    """One ``.netdev`` unit (a bond, for instance)."""

    name: str
    kind: str
    mac: Optional[str] = None
    priority: int = 5
    sections: Tuple[Tuple[str, Tuple[Tuple[str, str], ...]], ...] = ()  # ("Bond", (("Mode", "802.3ad"),))


class Metadata(NamedTuple):
    """Everything one run learned from the platform.

    ``attributes`` are keyed by names *without* the ``COREOS_``/``AFTERBURN_`` prefix
    (``OPENSTACK_HOSTNAME``); an empty string is a value the platform gave as empty.
    ``ssh_keys`` are the raw key lines as served; the writer validates them.
    """

    attributes: Mapping[str, str] = MappingProxyType({})
    ssh_keys: Tuple[str, ...] = ()
    hostname: Optional[str] = None
    interfaces: Tuple[NetworkInterface, ...] = ()
    netdevs: Tuple[VirtualNetDev, ...] = ()
    can_check_in: bool = False
