"""OpenNebula's ``context.sh`` variables as this agent reads them: lookups, and the interfaces
the ``ETH<n>_*`` variables describe (docs/protocols.md "OpenNebula layout").

One interface per ``ETH<n>_MAC``, matched by that MAC: ``ETH<n>_METHOD`` ``static`` (the
default: ``ETH<n>_IP`` with ``ETH<n>_MASK``, default 255.255.255.0, and a default route via
``ETH<n>_GATEWAY``), ``dhcp`` or ``skip`` (no IPv4); ``ETH<n>_IP6_METHOD`` ``static`` or
``auto`` (``ETH<n>_IP6`` and ``ETH<n>_IP6_ULA`` with ``ETH<n>_IP6_PREFIX_LENGTH``, default 64,
and a default route via ``ETH<n>_IP6_GATEWAY``, else ``ETH<n>_GATEWAY6``; router advertisements
are networkd's default), ``dhcp`` (DHCPv6 as well), ``disable`` or ``skip`` (no IPv6);
``ETH<n>_ROUTES`` (``NET/LEN via GW, …``); nameservers from ``ETH<n>_DNS`` then ``DNS``. A NIC
with both families skipped, and variables of a NIC without ``ETH<n>_MAC``, are left out.
``ETH<n>_MTU`` and search domains are not modelled.
"""

from __future__ import annotations

import ipaddress
import re
from typing import List, Mapping, Optional

from cl_metadata.model import NetworkInterface, Route
from cl_metadata.parsing.fields import Fields, dhcp_mode, unique

UNIT_PRIORITY = 10
NIC = re.compile(r"ETH([0-9]{1,4})_MAC")
IPV4_METHODS = ("static", "dhcp", "skip")
IPV6_METHODS = ("static", "auto", "dhcp", "disable", "skip")
ROUTE = re.compile(r"\s*(\S+)\s+via\s+(\S+)\s*")


class ContextVariables:
    """The parsed variables of one ``context.sh``, checked through ``fields``."""

    def __init__(self, variables: Mapping[str, str], fields: Fields):
        self.variables, self.fields = variables, fields

    def get(self, *names: str) -> Optional[str]:
        """The first of ``names`` set to something other than blanks, stripped."""
        return next((v.strip() for v in map(self.variables.get, names) if v and v.strip()), None)

    def nics(self) -> List[str]:
        """The ``n`` of every ``ETH<n>_MAC``, in numeric order."""
        return sorted((m.group(1) for m in map(NIC.fullmatch, self.variables) if m), key=int)

    def interfaces(self) -> List[NetworkInterface]:
        return [i for i in map(self.interface, self.nics()) if i is not None]

    def interface(self, n: str) -> Optional[NetworkInterface]:
        eth, f = f"ETH{n}_", self.fields
        ipv4 = f.choice(self.get(eth + "METHOD") or "static", eth + "METHOD", IPV4_METHODS)
        ipv6 = f.choice(self.get(eth + "IP6_METHOD") or "static", eth + "IP6_METHOD",
                        IPV6_METHODS)
        ipv6 = "skip" if ipv6 == "disable" else ipv6  # IPv6 off is not modelled: leave it be
        if ipv4 == ipv6 == "skip":
            return None
        addresses, routes = [], []
        if ipv4 != "skip":
            if self.get(eth + "IP") is not None:
                addresses.append(f.cidr(self.get(eth + "IP"),
                                        self.get(eth + "MASK") or "255.255.255.0",
                                        eth + "IP", eth + "MASK"))
            routes += self._default_route("0.0.0.0/0", eth + "GATEWAY")
        if ipv6 != "skip":
            length = self.get(eth + "IP6_PREFIX_LENGTH") or "64"
            addresses += [f.cidr(self.get(name), length, name, eth + "IP6_PREFIX_LENGTH")
                          for name in (eth + "IP6", eth + "IP6_ULA")
                          if self.get(name) is not None]
            routes += self._default_route("::/0", eth + "IP6_GATEWAY", eth + "GATEWAY6")
        routes += self._routes(eth + "ROUTES")
        servers = (self.get(eth + "DNS") or "").split() + (self.get("DNS") or "").split()
        return NetworkInterface(
            name=f"eth{n}", mac=f.mac(self.get(eth + "MAC"), eth + "MAC"),
            priority=UNIT_PRIORITY, addresses=tuple(addresses), routes=tuple(routes),
            nameservers=unique([f.ip(server, eth + "DNS") for server in servers]),
            dhcp=dhcp_mode(ipv4 == "dhcp", ipv6 == "dhcp"))

    def _default_route(self, destination: str, *names: str) -> List[Route]:
        """The route via the first of ``names`` that is set (none when none is)."""
        name = next((name for name in names if self.get(name) is not None), None)
        if name is None:
            return []
        gateway, version = self.fields.ip(self.get(name), name), 6 if ":" in destination else 4
        if ipaddress.ip_address(gateway).version != version:
            raise self.fields.error(name, f"not an IPv{version} address")
        return [Route(destination, gateway)]

    def _routes(self, name: str) -> List[Route]:
        routes = []
        for entry in filter(str.strip, (self.get(name) or "").split(",")):
            found = ROUTE.fullmatch(entry)
            if found is None:
                raise self.fields.error(name, "an entry is not 'NETWORK/LENGTH via GATEWAY'")
            network = self.fields.destination(found.group(1), None, name, name)
            routes.append(Route(network, self.fields.ip(found.group(2), name)))
        return routes
