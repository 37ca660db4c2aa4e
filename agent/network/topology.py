"""Interfaces and virtual devices assembled from one network document (cloud-init network config
v1 or v2, OpenStack ``network_data.json``), by the rules every such format shares:

- A device is referred to by the document's own key (a v1 ``name``, a v2 id, a link ``id``); a
  reference to a device the document does not define is an error naming the field.
- A bond takes NICs, a bridge takes any device but a bridge, a device joins one bond or bridge
  at most, a VLAN sits on any device.
- Routes: a default route the document only implies (a ``gateway``, ``gateway4``) yields to an
  explicit route to the same destination; identical routes are kept once; of two default routes
  of one family with different gateways the first is kept, since the kernel would pick between
  them arbitrarily.
- A virtual device's units sort before the NICs' (priority minus 5): a bond or a VLAN may carry
  a member's MAC address, which the member's unit matches.
- Bond and bridge settings are read into :class:`BondOptions`/:class:`BridgeOptions`: modes and
  policies from the bonding driver's own sets, times and numbers as bounded integers.
- What cannot be rendered is logged once per document: one line of field paths, never values.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from cl_metadata.parsing.fields import Fields, unique
from cl_metadata.model import (BOND_AD_SELECT, BOND_HASH_POLICIES, BOND_LACP_RATES, BOND_MODES,
                               NetworkInterface, Route, VirtualNetDev)

log = logging.getLogger("cl_metadata")

VIRTUAL_PRIORITY_STEP = 5
DEFAULT_DESTINATIONS = ("0.0.0.0/0", "::/0")
MAX_LISTED = 8  # paths named in the "not rendered" line; the rest are counted


# --- routes --------------------------------------------------------------------------------------

def merged_routes(implied: Sequence[Route],
                  explicit: Sequence[Route]) -> Tuple[Tuple[Route, ...], int]:
    """The routes to write, and how many conflicting default routes were dropped."""
    explicit_destinations = {route.destination for route in explicit}
    candidates = [r for r in implied if r.destination not in explicit_destinations]
    kept: List[Route] = []
    defaults = set()
    dropped = 0
    for route in candidates + list(explicit):
        if route in kept:
            continue
        if route.destination in DEFAULT_DESTINATIONS:
            if route.destination in defaults:
                dropped += 1
                continue
            defaults.add(route.destination)
        kept.append(route)
    return tuple(kept), dropped


# --- bond and bridge settings --------------------------------------------------------------------

def _enum(fields: Fields, value: Any, where: str, allowed: Sequence[str]) -> str:
    """One of ``allowed``, by name or by the driver's number for it (``bond-mode: 1``)."""
    if (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, str) and value.strip().isdigit()):
        return allowed[fields.integer(value, where, 0, len(allowed) - 1)]
    return fields.choice(value, where, allowed)


def _switch(fields: Fields, value: Any, where: str) -> bool:
    if isinstance(value, str) and value.strip().lower() in ("on", "off"):
        return value.strip().lower() == "on"
    if value is None:
        raise fields.error(where, "missing")
    return fields.flag(value, where)


def _milliseconds(unit_ms: int) -> Callable[[Fields, Any, str], int]:
    return lambda fields, value, where: fields.duration_ms(value, where, unit_ms=unit_ms)


BOND_SETTINGS: Mapping[str, Callable[[Fields, Any, str], Any]] = {
    "mode": lambda f, v, w: _enum(f, v, w, BOND_MODES),
    "transmit_hash_policy": lambda f, v, w: f.choice(v, w, BOND_HASH_POLICIES),
    "lacp_rate": lambda f, v, w: _enum(f, v, w, BOND_LACP_RATES),
    "ad_select": lambda f, v, w: _enum(f, v, w, BOND_AD_SELECT),
    "mii_monitor_ms": _milliseconds(1),
    "up_delay_ms": _milliseconds(1),
    "down_delay_ms": _milliseconds(1),
    "min_links": lambda f, v, w: f.integer(v, w, 0, 1024),
}
BRIDGE_SETTINGS: Mapping[str, Callable[[Fields, Any, str], Any]] = {
    "stp": _switch,
    "priority": lambda f, v, w: f.integer(v, w, 0, 65535),
    "forward_delay_ms": _milliseconds(1000),  # bridge times count seconds in every format
    "hello_time_ms": _milliseconds(1000),
    "max_age_ms": _milliseconds(1000),
    "ageing_time_ms": _milliseconds(1000),
}


def read_options(fields: Fields, params: Mapping[Any, Any], where: str,
                 names: Mapping[str, str], settings: Mapping[str, Callable], make,
                 prefix: str = "") -> Tuple[Any, int]:
    """``make(**values)`` from the settings ``params`` names, and how many it has that are not
    rendered. A key is compared in lower case with ``_`` as ``-`` and ``prefix`` dropped
    (v1's ``bond-miimon``, ``bond_miimon``; network_data.json's ``bond_miimon``)."""
    values: Dict[str, Any] = {}
    ignored = 0
    for key, value in params.items():
        name = key.lower().replace("_", "-") if isinstance(key, str) else ""
        if prefix and name.startswith(prefix):
            name = name[len(prefix):]
        field = names.get(name)
        if field is None:
            ignored += 1
            continue
        values[field] = settings[field](fields, value, f"{where}.{key}")  # key: a known name
    return make(**values), ignored


# --- devices and their relations -----------------------------------------------------------------

class _Device:
    __slots__ = ("at", "kind", "interface")

    def __init__(self, at: str, kind: str, interface: NetworkInterface):
        self.at, self.kind, self.interface = at, kind, interface


class Topology:
    """The devices of one document, keyed by the document's names for them."""

    def __init__(self, fields: Fields, priority: int):
        self.fields = fields
        self.priority = priority
        self.virtual_priority = max(priority - VIRTUAL_PRIORITY_STEP, 0)
        self._devices: Dict[Any, _Device] = {}
        self._netdevs: Dict[Any, VirtualNetDev] = {}
        self._unrendered: set = set()
        self._skipped: List[str] = []

    # building

    def add_nic(self, key: Any, at: str, interface: NetworkInterface) -> None:
        self._add(key, at, "nic", interface._replace(priority=self.priority))

    def add_virtual(self, key: Any, at: str, netdev: VirtualNetDev,
                    interface: NetworkInterface) -> None:
        """A bond, bridge or VLAN: its netdev and the configuration of the device it makes."""
        self._add(key, at, netdev.kind, interface._replace(
            name=netdev.name, mac=None, priority=self.virtual_priority))
        self._netdevs[key] = netdev._replace(priority=self.virtual_priority)

    def add_unrendered(self, key: Any, at: str, why: str) -> None:
        """A device that is defined but cannot be rendered: references to it are dropped."""
        self._claim(key, at)
        self._unrendered.add(key)
        self.skip(f"{at} ({why})")

    def skip(self, what: str) -> None:
        self._skipped.append(what)

    def routes(self, implied: Sequence[Route], explicit: Sequence[Route],
               at: str) -> Tuple[Route, ...]:
        routes, dropped = merged_routes(implied, explicit)
        if dropped:
            self.skip(f"{at} ({dropped} conflicting default route{'s' * (dropped > 1)})")
        return routes

    def name(self, key: Any) -> Optional[str]:
        device = self._devices.get(key)
        return device.interface.name if device else None

    def join(self, member: Any, master: Any, at: str) -> None:
        """``member`` becomes a port of the bond or bridge ``master`` (a key of this document)."""
        device = self._lookup(member, at)
        if device is None:
            return
        kind = self._devices[master].kind
        if member == master:
            raise self.fields.error(at, f"a {kind} cannot be its own member")
        if kind == "bond" and device.kind != "nic":
            raise self.fields.error(at, "a bond's members must be NICs")
        if kind == "bridge" and device.kind == "bridge":
            raise self.fields.error(at, "a bridge cannot be a port of another bridge")
        if device.interface.bond is not None or device.interface.bridge is not None:
            raise self.fields.error(at, "names a device that is already a member of a bond "
                                        "or bridge")
        device.interface = device.interface._replace(**{kind: self.name(master)})

    def vlan(self, vlan: Any, parent: Any, at: str) -> None:
        """The VLAN ``vlan`` sits on ``parent`` (keys of this document)."""
        device = self._lookup(parent, at)
        if device is None:
            return
        if parent == vlan:
            raise self.fields.error(at, "a VLAN cannot sit on itself")
        device.interface = device.interface._replace(
            vlans=device.interface.vlans + (self.name(vlan),))

    def result(self, nameservers: Sequence[str] = ()) -> Tuple[List[NetworkInterface],
                                                               List[VirtualNetDev]]:
        """Interfaces (document order) with ``nameservers`` added to every one that is not a
        bond or bridge member, and the netdevs; logs what was not rendered."""
        if self._skipped:
            listed = ", ".join(self._skipped[:MAX_LISTED])
            more = len(self._skipped) - MAX_LISTED
            log.warning("%s: not rendered: %s%s", self.fields.source, listed,
                        f" and {more} more" if more > 0 else "")
        interfaces = []
        for device in self._devices.values():
            interface = device.interface
            if nameservers and interface.bond is None and interface.bridge is None:
                interface = interface._replace(
                    nameservers=unique(interface.nameservers + tuple(nameservers)))
            interfaces.append(interface)
        return interfaces, list(self._netdevs.values())

    # helpers

    def _claim(self, key: Any, at: str) -> None:
        if key in self._devices or key in self._unrendered:
            raise self.fields.error(at, "defines a device that is already defined")

    def _add(self, key: Any, at: str, kind: str, interface: NetworkInterface) -> None:
        self._claim(key, at)
        self._devices[key] = _Device(at, kind, interface)

    def _lookup(self, key: Any, at: str) -> Optional[_Device]:
        if key in self._unrendered:
            self.skip(f"{at} (refers to a device not rendered)")
            return None
        if key not in self._devices:
            raise self.fields.error(at, "refers to a device the document does not define")
        return self._devices[key]
