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
    user_data: bool = False

    def any(self) -> bool:
        return (self.attributes or self.ssh_keys or self.hostname or self.network
                or self.check_in or self.user_data)


class Route(NamedTuple):
    destination: str  # "0.0.0.0/0", "10.0.0.0/8", "::/0"
    gateway: str


class NetworkInterface(NamedTuple):
    """One network device's configuration: a NIC, or the bond, VLAN or bridge a
    :class:`VirtualNetDev` of the same name creates.

    Matched by ``mac`` when given, else by ``name``: the name in the metadata is the name
    another system gave the NIC (cloud-init's ``eth0``), which need not be the name it has here,
    while its MAC address is its own. A virtual device's interface has a name and no ``mac``
    (the address it should take belongs to its VirtualNetDev). Addresses are ``ip/prefix``
    strings. ``bond``, ``bridge`` and ``vlans`` name virtual devices of the same run.
    """

    name: Optional[str] = None
    mac: Optional[str] = None
    priority: int = 10
    addresses: Tuple[str, ...] = ()
    routes: Tuple[Route, ...] = ()
    nameservers: Tuple[str, ...] = ()
    dhcp: Optional[str] = None  # "yes", "ipv4", "ipv6" or None for static only
    bond: Optional[str] = None  # name of the bond this device is a member of
    unmanaged: bool = False
    bridge: Optional[str] = None  # name of the bridge this device is a port of
    vlans: Tuple[str, ...] = ()  # names of the VLAN devices on top of this one


# The Linux bonding driver's own vocabulary (``/sys/class/net/<bond>/bonding/``): every network
# stack spells these the same way.
BOND_MODES = ("balance-rr", "active-backup", "balance-xor", "broadcast", "802.3ad",
              "balance-tlb", "balance-alb")  # modes 0 to 6
BOND_HASH_POLICIES = ("layer2", "layer3+4", "layer2+3", "encap2+3", "encap3+4")
BOND_LACP_RATES = ("slow", "fast")
BOND_AD_SELECT = ("stable", "bandwidth", "count")
NETDEV_KINDS = ("bond", "bridge", "vlan")


class BondOptions(NamedTuple):
    """A bond's settings in the bonding driver's terms; None leaves the driver's default.
    Times are milliseconds."""

    mode: Optional[str] = None  # one of BOND_MODES
    transmit_hash_policy: Optional[str] = None  # one of BOND_HASH_POLICIES
    lacp_rate: Optional[str] = None  # one of BOND_LACP_RATES
    ad_select: Optional[str] = None  # one of BOND_AD_SELECT
    mii_monitor_ms: Optional[int] = None
    up_delay_ms: Optional[int] = None
    down_delay_ms: Optional[int] = None
    min_links: Optional[int] = None


class BridgeOptions(NamedTuple):
    """A bridge's spanning-tree settings; None leaves the kernel's default. Times are
    milliseconds."""

    stp: Optional[bool] = None
    priority: Optional[int] = None  # 0 to 65535
    forward_delay_ms: Optional[int] = None
    hello_time_ms: Optional[int] = None
    max_age_ms: Optional[int] = None
    ageing_time_ms: Optional[int] = None


class VirtualNetDev(NamedTuple):
    """A virtual device to create: a bond, a bridge or a VLAN (``kind``, one of NETDEV_KINDS).

    Its configuration is the :class:`NetworkInterface` of the same name; its members name it
    in their ``bond``/``bridge``, a VLAN's parent lists it in ``vlans``. ``mac`` is the address
    the device takes. Its priority is below the NICs' so that its units are read first: a bond or
    VLAN may carry a member's MAC address, which that member's unit matches.
    """

    name: str
    kind: str
    mac: Optional[str] = None
    priority: int = 5
    bond: Optional[BondOptions] = None  # kind "bond" only
    bridge: Optional[BridgeOptions] = None  # kind "bridge" only
    vlan_id: Optional[int] = None  # kind "vlan" only (required): 0 to 4094


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
    user_data: Optional[bytes] = None  # as the provider gave it (gzip not yet inflated)
