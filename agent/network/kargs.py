"""dracut network kernel arguments (``cl-metadata rd-network-kargs``) for the interfaces a
platform describes, so the initrd can reach the network before the root file system is there.

The same checked description the other writers use (:func:`cl_metadata.network.netcheck.check`)
becomes arguments in dracut's syntax (``dracut.cmdline(7)``), which dracut's own network
modules and NetworkManager's initrd generator both read:

- ``ifname=<name>:<mac>`` for a NIC matched by its MAC address: dracut configures interfaces by
  name, so the NIC is given the name udev's MAC policy would give it, ``enx`` and its twelve
  hex digits (``enxfa163e4c2d7a``), never a kernel name (``eth0``).
- ``bond=<name>:<members>[:<options>]`` with the bonding driver's option names
  (``mode=802.3ad,miimon=100``), ``bridge=<name>:<ports>``, ``vlan=<name>:<parent>``.
- one ``ip=`` per interface (dracut's network-legacy stops the boot on a second one for a
  device): ``ip=<interface>:dhcp|dhcp6[::<mac>]`` for DHCP, else
  ``ip=<address>::<gateway>:<netmask>::<interface>:none[::<mac>]`` for the first static address
  (IPv6 in brackets, its netmask a prefix length) with its family's default route as the
  gateway. ``<mac>`` is the address a bond, bridge or VLAN takes.
- ``rd.route=<network>/<prefix>:<gateway>:<interface>`` for every other route (IPv6 as
  ``[<network>/<prefix>]``) whose gateway is link-local or of a family the interface gets an
  address of in the initrd.
- ``nameserver=<address>`` per distinct nameserver, bare (dracut writes it to resolv.conf as is).

What dracut cannot hold is left out and counted in one warning naming each item by its index,
never a value: a second address or method on one interface (DHCPv6 beside DHCPv4, static
addresses beside DHCP or beside the first), a bond or bridge without members (dracut would pick
``eth0``/``eth1`` for it), a VLAN whose name does not carry its id (dracut derives the id from
the name: ``vlan5``, ``vlan0005``, ``<parent>.5``) and everything resting on a device left out,
a route no address of the interface could reach, bridge STP and timer settings, the MAC of
a virtual device without an ``ip=`` argument. An unmanaged NIC gets no argument at all: dracut
leaves alone what it is not told about.

No checked value holds whitespace, a quote, ``:`` in a name or ``,``, so no metadata text can
add an argument or a field.
"""

from __future__ import annotations

import re
from typing import Dict, List, NamedTuple, Optional, Sequence, Set, Tuple

from cl_metadata import cmdline
from cl_metadata.errors import UsageError
from cl_metadata.model import NetworkInterface, VirtualNetDev
from cl_metadata.network import netcheck
from cl_metadata.network.netcheck import Checked, CheckedInterface, CheckedNetDev

# what dracut-cmdline reads besides the kernel command line (``/etc/cmdline.d/*.conf``)
KARGS_PATH = "/etc/cmdline.d/50-cl-metadata-network-kargs.conf"
FILE_MODE = 0o644
# dracut's VLAN naming styles: VLAN_PLUS_VID (vlan0005, vlan5), DEV_PLUS_VID (eth0.0005, eth0.5)
_VLAN_ID = re.compile(r"(?:vlan|.+\.)([0-9]{1,4})")
# the bonding driver's option names (its module parameters and sysfs files)
_BOND_OPTIONS = (("mode", "mode"), ("transmit_hash_policy", "xmit_hash_policy"),
                 ("lacp_rate", "lacp_rate"), ("ad_select", "ad_select"),
                 ("mii_monitor_ms", "miimon"), ("up_delay_ms", "updelay"),
                 ("down_delay_ms", "downdelay"), ("min_links", "min_links"))
_DHCP = {"yes": "dhcp", "ipv4": "dhcp", "ipv6": "dhcp6"}


class Rendered(NamedTuple):
    """The arguments, in the order written, and what was left out (``where: what``)."""

    kargs: Tuple[str, ...]
    skipped: Tuple[str, ...]


def nic_name(mac: str) -> str:
    """The name ``ifname=`` gives a NIC matched by MAC: ``enx`` and its twelve hex digits, the
    name udev's MAC naming policy gives and dracut itself derives ``ifname=`` from; never a
    kernel name (``eth0``), which dracut warns could collide with the kernel's own."""
    return "enx" + mac.replace(":", "")


def _address(address) -> str:
    return f"[{address}]" if address.version == 6 else str(address)


def _route_network(network) -> str:
    # dracut's own example: rd.route=[2001:DB8:3::/8]:[2001:DB8:2::1]:ens10
    text = f"{network.network_address}/{network.prefixlen}"
    return f"[{text}]" if network.version == 6 else text


def _vlan_name_carries(name: str, vlan_id: int) -> bool:
    found = _VLAN_ID.fullmatch(name)
    return found is not None and int(found.group(1)) == vlan_id


class _Plan:
    """Which devices dracut can be told about, by name, and what was left out."""

    def __init__(self, checked: Checked):
        self.checked = checked
        self.skipped: List[str] = []
        self.names: Dict[str, str] = {}  # interface stem → the name dracut knows it by
        for interface in checked.interfaces:
            self.names[interface.stem] = (nic_name(interface.mac) if interface.mac
                                          else interface.name)
        self.dropped: Set[str] = set()  # netdev names left out
        self._drop_unexpressible()

    def members(self, netdev: CheckedNetDev) -> List[CheckedInterface]:
        """The interfaces of a bond or bridge that dracut will know."""
        field = "bond" if netdev.kind == "bond" else "bridge"
        return [i for i in self.checked.interfaces
                if getattr(i, field) == netdev.name and self.present(i)]

    def parent(self, netdev: CheckedNetDev) -> Optional[CheckedInterface]:
        return next((i for i in self.checked.interfaces if netdev.name in i.vlans), None)

    def present(self, interface: CheckedInterface) -> bool:
        """False for an unmanaged NIC and for a virtual device's configuration left out."""
        return not interface.unmanaged and not (interface.virtual
                                                and interface.name in self.dropped)

    def _drop_unexpressible(self) -> None:
        for netdev in self.checked.netdevs:
            if netdev.kind == "vlan" and not _vlan_name_carries(netdev.name, netdev.vlan_id):
                self._drop(netdev, "a VLAN whose name does not carry its id")
        changed = True
        while changed:  # a device resting on one left out is left out too
            changed = False
            for netdev in self.checked.netdevs:
                if netdev.name in self.dropped:
                    continue
                if netdev.kind == "vlan":
                    parent = self.parent(netdev)
                    if parent is None or not self.present(parent):
                        changed = self._drop(netdev, "a VLAN on a device left out")
                elif not self.members(netdev):
                    changed = self._drop(netdev, f"a {netdev.kind} without members")

    def _drop(self, netdev: CheckedNetDev, why: str) -> bool:
        self.dropped.add(netdev.name)
        self.skipped.append(f"{netdev.where}: {why}")
        return True


def _bond_karg(plan: _Plan, netdev: CheckedNetDev) -> str:
    members = ",".join(plan.names[i.stem] for i in plan.members(netdev))
    options = [f"{key}={getattr(netdev.bond, field)}" for field, key in _BOND_OPTIONS
               if getattr(netdev.bond, field) is not None]
    return f"bond={netdev.name}:{members}" + (":" + ",".join(options) if options else "")


def _configuration(plan: _Plan, interface: CheckedInterface, mac: Optional[str]
                   ) -> Tuple[List[str], List[str]]:
    """(the ``ip=`` argument, ``rd.route=`` arguments) of one interface.

    One ``ip=`` per device: dracut's network-legacy stops the boot on a second one for the same
    device, and takes one method per argument (``dhcp,dhcp6`` after an interface name is read
    as a static address). DHCP wins over static addresses; the first static address carries
    its family's default route as the gateway; every address or method beyond is left out
    with a warning, and other default routes become ``rd.route=`` arguments.
    """
    device = plan.names[interface.stem]
    tail = f"::{mac}" if mac else ""
    ip_kargs = []
    families = set()  # the address families this interface gets in the initrd
    gateway_of = None  # the default route the ip= argument carries
    kept = 0  # static addresses the ip= argument carries
    if interface.dhcp:
        ip_kargs.append(f"ip={device}:{_DHCP[interface.dhcp]}{tail}")
        families.add(6 if interface.dhcp == "ipv6" else 4)
        if interface.dhcp == "yes":
            plan.skipped.append(f"{interface.where}: DHCPv6 beside DHCPv4")
    elif interface.addresses:
        address = interface.addresses[0]
        families.add(address.version)
        gateway_of = next((r for r in interface.routes if r.destination.prefixlen == 0
                           and r.destination.version == address.version), None)
        gateway = _address(gateway_of.gateway) if gateway_of else ""
        netmask = (str(address.netmask) if address.version == 4
                   else str(address.network.prefixlen))
        ip_kargs.append(f"ip={_address(address.ip)}::{gateway}:{netmask}::{device}:none{tail}")
        kept = 1
    for i in range(kept, len(interface.addresses)):
        plan.skipped.append(f"{interface.where}: address {i} (one ip= per interface)")
    route_kargs = []
    for i, route in enumerate(interface.routes):
        if route is gateway_of:
            continue
        # a gateway is reachable through a link-local address, or an address of its family
        if route.gateway.version not in families and not route.gateway.is_link_local:
            plan.skipped.append(f"{interface.where}: route {i} (no IPv{route.gateway.version} "
                                "address in the initrd)")
            continue
        route_kargs.append(f"rd.route={_route_network(route.destination)}:"
                           f"{_address(route.gateway)}:{device}")
    return ip_kargs, route_kargs


def render(interfaces: Sequence[NetworkInterface],
           netdevs: Sequence[VirtualNetDev]) -> Rendered:
    """The dracut arguments for a description; InvalidMetadata when any value cannot be
    rendered (the same checks and errors as the other writers)."""
    checked = netcheck.check(interfaces, netdevs)
    netcheck.one_file_each([(i.stem, i.where) for i in checked.interfaces])  # one device each
    plan = _Plan(checked)
    devices: List[str] = []
    ips: List[str] = []
    routes: List[str] = []
    nameservers: List[str] = []
    named: Set[str] = set()  # NICs some argument names
    macs = {netdev.name: netdev.mac for netdev in checked.netdevs}

    for netdev in checked.netdevs:
        if netdev.name in plan.dropped:
            continue
        if netdev.kind == "bond":
            devices.append(_bond_karg(plan, netdev))
            named.update(i.stem for i in plan.members(netdev))
        elif netdev.kind == "bridge":
            devices.append(f"bridge={netdev.name}:"
                           + ",".join(plan.names[i.stem] for i in plan.members(netdev)))
            named.update(i.stem for i in plan.members(netdev))
            if any(value not in (None, False) for value in netdev.bridge):
                plan.skipped.append(f"{netdev.where}: bridge STP and timer settings")
        else:
            parent = plan.parent(netdev)
            devices.append(f"vlan={netdev.name}:{plan.names[parent.stem]}")
            named.add(parent.stem)
    for interface in checked.interfaces:
        if not plan.present(interface) or interface.bond or interface.bridge:
            continue  # members carry no addressing of their own
        mac = macs.get(interface.name) if interface.virtual else None
        ip_kargs, route_kargs = _configuration(plan, interface, mac)
        if ip_kargs or route_kargs:
            named.add(interface.stem)
        if interface.virtual and mac and not ip_kargs:
            plan.skipped.append(f"{interface.where}: the MAC address of a device without "
                                "an ip= argument")
        ips += ip_kargs
        routes += route_kargs
        for server in interface.nameservers:
            if str(server) not in nameservers:
                nameservers.append(str(server))
    for netdev in checked.netdevs:  # a netdev MAC no configuration interface carries
        if netdev.mac and netdev.name not in plan.dropped and not any(
                i.virtual and i.name == netdev.name and plan.present(i)
                and not (i.bond or i.bridge) for i in checked.interfaces):
            plan.skipped.append(f"{netdev.where}: the MAC address of a device without an "
                                "ip= argument")
    ifnames = [f"ifname={plan.names[i.stem]}:{i.mac}" for i in checked.interfaces
               if i.mac and i.stem in named]
    kargs = ifnames + devices + ips + routes + [f"nameserver={s}" for s in nameservers]
    return Rendered(tuple(kargs), tuple(plan.skipped))


def file_content(kargs: Sequence[str]) -> bytes:
    """The ``cmdline.d`` fragment: the arguments on one line."""
    return (" ".join(kargs) + "\n").encode("ascii")


def default_kargs(value: str) -> Tuple[str, ...]:
    """A distributor's ``--default-value``, split into arguments; UsageError for text that
    would not stay one line of arguments."""
    if any((ord(ch) < 0x20 and ch != "\t") or ord(ch) == 0x7F for ch in value):
        raise UsageError("--default-value holds a control character")
    return tuple(value.split())


def kernel_has_ip(environ) -> bool:
    """True when the kernel command line (``CL_METADATA_CMDLINE`` in tests) has an ``ip=``
    argument, empty or not: the administrator's network arguments win, as with Afterburn."""
    path = environ.get(cmdline.CMDLINE_ENV) or cmdline.PROC_CMDLINE
    try:
        with open(path, "rb") as f:
            raw = f.read(1 << 16)
    except OSError as err:
        raise UsageError(f"cannot read kernel command line {path}: {err.strerror}") from None
    # a quoted word ("ip=...") counts as well; the kernel removes the quotes
    return any(word.strip('"').startswith("ip=")
               for word in raw.decode("utf-8", "replace").split())


# --- the command: cl-metadata rd-network-kargs -----------------------------------------------

def run(args, environ) -> int:
    """``cl-metadata rd-network-kargs``: write the platform's network arguments to
    ``args.kargs_file`` for dracut, unless the kernel command line has ``ip=`` already.

    Runs in the initrd before the network is up, so only sources on the machine are read
    (config drives, guestinfo, firmware entries); a platform read over the network, or one
    that describes no interfaces, gets the distributor's ``--default-value`` (nothing without
    one), as with Afterburn. A provider with an ``initrd_network_kargs()`` method (vmware:
    Afterburn's guestinfo key) may give the arguments as the administrator wrote them; those
    are written instead. Bad network data fails the run with nothing written.
    """
    import logging

    from cl_metadata import cli, registry
    from cl_metadata import log as agent_log
    from cl_metadata.context import Context
    from cl_metadata.errors import EXIT_OK, MetadataError, NoMetadataHere
    from cl_metadata.outputs import fsutil
    from cl_metadata.providers.base import NETWORK_UNITS
    from cl_metadata.sources.deadline import Deadline

    log = logging.getLogger("cl_metadata")
    deadline = Deadline(cli.timeout_seconds(args.timeout, environ))
    default = default_kargs(args.default_value or "")
    if kernel_has_ip(environ):
        log.info("the kernel command line has ip= already; no network arguments written")
        return EXIT_OK
    provider_id, _settings, kernel = cli.resolve_platform(args, environ)
    fsutil.check_output_file(args.kargs_file)  # before the platform is asked
    described: Tuple[str, ...] = ()
    if provider_id is not None:
        entry = registry.get(provider_id)
        provider_id = entry.id
        if NETWORK_UNITS not in entry.provider.features:
            log.info("%s: the platform describes no network interfaces", provider_id)
        else:
            context = Context(deadline=deadline, environ=environ, kernel_cmdline=kernel,
                              local_only=True)
            try:
                with entry.provider(context) as provider:
                    # arguments the platform carries as given (VMware's Afterburn key) win
                    # over its interfaces, as with Afterburn
                    given = getattr(provider, "initrd_network_kargs", lambda: None)()
                    if given:
                        rendered = Rendered(tuple(given), ())
                    else:
                        interfaces, netdevs = provider.network()
                        rendered = render(interfaces, netdevs) if (interfaces or netdevs) \
                            else Rendered((), ())
            except NoMetadataHere as err:
                err.provider = err.provider or provider_id
                agent_log.notice("%s", err)
                rendered = Rendered((), ())
            except MetadataError as err:
                err.provider = err.provider or provider_id
                raise
            finally:
                context.close()
            if rendered.skipped:
                log.warning("%s: %d network setting%s dracut cannot hold left out: %s",
                            provider_id, len(rendered.skipped),
                            "" if len(rendered.skipped) == 1 else "s",
                            "; ".join(rendered.skipped))
            described = rendered.kargs
    kargs = described or default
    if not kargs:
        log.info("no network arguments for the initrd (no interfaces described, no "
                 "--default-value); %s not written", args.kargs_file)
        return EXIT_OK
    fsutil.write_output(args.kargs_file, file_content(kargs), mode=FILE_MODE)
    log.info("wrote %d network argument%s (%s) to %s", len(kargs), "" if len(kargs) == 1
             else "s", "the platform's" if described else "the default value", args.kargs_file)
    return EXIT_OK
