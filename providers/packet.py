"""Equinix Metal (Packet): one JSON document at ``https://metadata.packet.net/metadata``.

Protocol (docs/protocols.md "packet", docs/attributes.md): the one provider whose base
is a DNS name (HTTPS, so the name is authenticated); one GET, not 404-tolerant.

- ``hostname``, ``phone_home_url``, ``plan`` → ``PACKET_HOSTNAME``, ``PACKET_PHONE_HOME_URL``,
  ``PACKET_PLAN``.
- ``network.addresses[]`` in order, four counters by family (of the parsed address) × ``public``:
  ``PACKET_IPV{4,6}_{PUBLIC,PRIVATE}_<n>`` and, from the same entry's ``gateway``,
  ``…_GATEWAY_<n>`` (canonical text: ``2604:1380::0`` → ``2604:1380::``).
- ``ssh_keys[]`` → SSH keys; ``hostname`` → the hostname.
- Network units: per NIC of ``network.interfaces`` a ``10-<mac>.network`` enslaving it to its
  ``bond`` (``[Link] Unmanaged=yes`` when it has none); per bond a ``05-<bond>.netdev`` (MAC of
  its first NIC, mode from ``network.bonding.mode``) and a ``05-<bond>.network``; every address
  goes on the first bond with a route via its gateway: public IPv4 → ``0.0.0.0/0``, private IPv4
  → ``10.0.0.0/8``, IPv6 → ``::/0``. The document names no DNS servers (upstream read networkd's
  state file instead), so the bond unit sets none and DNS stays with the network stack.
- Check-in (``--check-in``; the unit runs it on first boot only): ``POST <phone_home_url>``,
  ``Content-Type: application/json``, empty body.
"""

from __future__ import annotations

import ipaddress
import logging
from typing import Any, Dict, List, Optional, Tuple
from urllib.parse import urlsplit

from cl_metadata.parsing import formats
from cl_metadata.errors import InvalidMetadata
from cl_metadata.model import BOND_MODES, BondOptions, NetworkInterface, Route, VirtualNetDev
from cl_metadata.network.networkd import netmask_prefix, parse_ip
from cl_metadata.providers.base import (ATTRIBUTES, CHECK_IN, HOSTNAME, NETWORK_UNITS, SSH_KEYS,
                                        USER_DATA, Provider)

logger = logging.getLogger("cl_metadata")

METADATA = "https://metadata.packet.net/metadata"
SOURCE = "GET " + METADATA
CHECK_IN_HEADERS = {"Content-Type": "application/json"}
LACP = 4  # network.bonding.mode is the bonding driver's number: an index of BOND_MODES
BOND_OPTIONS = BondOptions(transmit_hash_policy="layer3+4", mii_monitor_ms=100, up_delay_ms=200,
                           down_delay_ms=200)
BOND_PRIORITY = 5
PRIVATE_IPV4_ROUTE = "10.0.0.0/8"
SCALAR_ATTRIBUTES = {"PACKET_HOSTNAME": "hostname", "PACKET_PHONE_HOME_URL": "phone_home_url",
                     "PACKET_PLAN": "plan"}


USER_DATA_URL = "https://metadata.packet.net/userdata"  # raw; 404 = none


class PacketProvider(Provider):
    id = "packet"
    description = "Equinix Metal (Packet) metadata service"
    source = "http"
    features = frozenset({ATTRIBUTES, SSH_KEYS, HOSTNAME, NETWORK_UNITS, CHECK_IN, USER_DATA})
    user_data_source = "GET " + USER_DATA_URL

    def _document(self) -> Dict[str, Any]:
        return formats.json_object(self.context.http.get(METADATA), SOURCE)

    def attributes(self) -> Dict[str, str]:
        return parse_attributes(self._document())

    def ssh_keys(self) -> List[str]:
        keys = self._document().get("ssh_keys") or []
        if not isinstance(keys, list) or not all(isinstance(key, str) for key in keys):
            raise InvalidMetadata("field 'ssh_keys': expected a list of strings", source=SOURCE)
        return [line for key in keys for line in formats.key_lines(key)]

    def hostname(self) -> Optional[str]:
        return formats.string_field(self._document(), "hostname", SOURCE) or None

    def network(self) -> Tuple[List[NetworkInterface], List[VirtualNetDev]]:
        return parse_network(self._document())

    def check_in(self) -> None:
        url = parse_phone_home_url(self._document())
        self.context.http.request("POST", url, headers=CHECK_IN_HEADERS, data=b"")

    def user_data(self) -> Optional[bytes]:
        return self.context.http.get(USER_DATA_URL, optional=True)


def _list(value: Any, field: str) -> List[Dict[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise InvalidMetadata(f"field {field!r}: expected a list of objects", source=SOURCE)
    return value


def _network(document: Dict[str, Any]) -> Dict[str, Any]:
    network = document.get("network") or {}
    if not isinstance(network, dict):
        raise InvalidMetadata("field 'network': expected an object", source=SOURCE)
    return network


def _addresses(document: Dict[str, Any]):
    """(field path, address, public, gateway or None) for each ``network.addresses`` entry."""
    for i, entry in enumerate(_list(_network(document).get("addresses"), "network.addresses")):
        path = f"network.addresses[{i}]"
        address = parse_ip(entry.get("address"), field=path + ".address", source=SOURCE)
        public = entry.get("public", False)
        if not isinstance(public, bool):
            raise InvalidMetadata(f"field {path + '.public'!r}: expected a boolean", source=SOURCE)
        gateway = None
        if entry.get("gateway") is not None:
            gateway = parse_ip(entry["gateway"], field=path + ".gateway", source=SOURCE,
                               version=address.version)
        yield path, entry, address, public, gateway


def parse_attributes(document: Dict[str, Any]) -> Dict[str, str]:
    attributes = {}
    for name, field in SCALAR_ATTRIBUTES.items():
        value = formats.string_field(document, field, SOURCE)
        if value is not None:
            attributes[name] = value
    counters: Dict[str, int] = {}
    for _, _, address, public, gateway in _addresses(document):
        bucket = f"PACKET_IPV{address.version}_{'PUBLIC' if public else 'PRIVATE'}"
        n = counters[bucket] = counters.get(bucket, -1) + 1
        attributes[f"{bucket}_{n}"] = str(address)
        if gateway is not None:
            attributes[f"{bucket}_GATEWAY_{n}"] = str(gateway)
    return attributes


def parse_network(document: Dict[str, Any]) -> Tuple[List[NetworkInterface], List[VirtualNetDev]]:
    network = _network(document)
    nics: List[NetworkInterface] = []
    first_slave: Dict[str, str] = {}  # bond name → MAC of its first NIC, in metadata order
    for i, entry in enumerate(_list(network.get("interfaces"), "network.interfaces")):
        mac, bond = entry.get("mac"), entry.get("bond") or None
        if not isinstance(mac, str) or not isinstance(bond, (str, type(None))):
            raise InvalidMetadata(f"field 'network.interfaces[{i}]': mac and bond must be "
                                  "strings", source=SOURCE)
        nics.append(NetworkInterface(mac=mac.lower(), bond=bond, unmanaged=bond is None))
        if bond is not None:
            first_slave.setdefault(bond, mac.lower())
    if not first_slave:
        logger.warning("packet: no NIC belongs to a bond; the addresses are not configured")
        return nics, []

    addresses, routes = [], []
    for path, entry, address, public, gateway in _addresses(document):
        prefix = netmask_prefix(entry.get("netmask"), field=path + ".netmask", source=SOURCE,
                                version=address.version)
        addresses.append(str(ipaddress.ip_interface(f"{address}/{prefix}")))
        if gateway is not None:
            destination = ("::/0" if address.version == 6
                           else "0.0.0.0/0" if public else PRIVATE_IPV4_ROUTE)
            routes.append(Route(destination, str(gateway)))
    first_bond = next(iter(first_slave))
    bonds = [NetworkInterface(name=bond, priority=BOND_PRIORITY,
                              addresses=tuple(addresses) if bond == first_bond else (),
                              routes=tuple(routes) if bond == first_bond else ())
             for bond in first_slave]
    mode = parse_bond_mode(network)
    options = BOND_OPTIONS._replace(mode=BOND_MODES[mode],
                                    lacp_rate="fast" if mode == LACP else None)
    netdevs = [VirtualNetDev(name=bond, kind="bond", mac=mac, priority=BOND_PRIORITY,
                             bond=options)
               for bond, mac in first_slave.items()]
    return nics + bonds, netdevs


def parse_bond_mode(network: Dict[str, Any]) -> int:
    bonding = network.get("bonding")
    mode = bonding.get("mode") if isinstance(bonding, dict) else None
    if isinstance(mode, bool) or not isinstance(mode, int) or not 0 <= mode < len(BOND_MODES):
        raise InvalidMetadata("field 'network.bonding.mode': expected a bonding mode 0 to 6",
                              source=SOURCE)
    return mode


def parse_phone_home_url(document: Dict[str, Any]) -> str:
    url = formats.string_field(document, "phone_home_url", SOURCE, required=True)
    parts = urlsplit(url)
    if (parts.scheme not in ("http", "https") or not parts.hostname or "@" in parts.netloc
            or any(ch.isspace() or ord(ch) < 0x20 for ch in url)):
        raise InvalidMetadata("field 'phone_home_url' is not an http(s) URL", source=SOURCE)
    return url
