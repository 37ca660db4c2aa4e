"""Typed access to decoded metadata documents (JSON or YAML), shared by the drive parsers.

:class:`Fields` checks one document's values and turns addresses into the ``ip/prefix`` strings
of :mod:`cl_metadata.model`; every error names the file and the field path
(``config[0].subnets[1].netmask``), never the value. :func:`first_addresses` is the rule behind
the ``KUBEVIRT_``/``PROXMOXVE_``/``NOCLOUD_`` ``IPV4``/``IPV6`` attributes.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any, Dict, List, Optional, Sequence, Tuple

from cl_metadata.errors import InvalidMetadata
from cl_metadata.model import NetworkInterface

_MAC = re.compile(r"[0-9a-f]{2}([:-][0-9a-f]{2}){5}")
_IFNAME = re.compile(r"[A-Za-z0-9_.-]{1,15}")  # IFNAMSIZ - 1; no '/', ':' or blanks


class Fields:
    """Checks for the values of one document named ``source`` (a drive path or guestinfo key)."""

    def __init__(self, source: str):
        self.source = source

    def error(self, where: str, cause: str) -> InvalidMetadata:
        return InvalidMetadata(f"{where}: {cause}" if where else cause, source=self.source)

    def mapping(self, value: Any, where: str) -> Dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.error(where, f"expected a mapping, got {_kind(value)}")
        return value

    def items(self, value: Any, where: str) -> List[Any]:
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.error(where, f"expected a list, got {_kind(value)}")
        return value

    def string(self, value: Any, where: str, *, required: bool = False) -> Optional[str]:
        """A stripped string; YAML integers (``instance-id: 1234``) count as their digits."""
        if value is None:
            if required:
                raise self.error(where, "missing")
            return None
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise self.error(where, f"expected a string, got {_kind(value)}")
        return str(value).strip()

    def strings(self, value: Any, where: str) -> List[str]:
        """One string or a list of strings (cloud-init accepts both for addresses and keys)."""
        if isinstance(value, str):
            return [value]
        return [self.string(item, f"{where}[{i}]", required=True)
                for i, item in enumerate(self.items(value, where))]

    def flag(self, value: Any, where: str) -> bool:
        if value is None or isinstance(value, bool):
            return bool(value)
        if isinstance(value, str) and value.lower() in ("true", "yes", "false", "no"):
            return value.lower() in ("true", "yes")
        raise self.error(where, f"expected true or false, got {_kind(value)}")

    def ip(self, value: Any, where: str) -> str:
        try:
            return str(ipaddress.ip_address(self.string(value, where, required=True)))
        except ValueError:
            raise self.error(where, "not an IP address") from None

    def ips(self, value: Any, where: str) -> List[str]:
        """One address or a list of addresses (nameservers)."""
        return [self.ip(item, f"{where}[{i}]") for i, item in enumerate(self.strings(value, where))]

    def mac(self, value: Any, where: str) -> str:
        text = self.string(value, where, required=True).lower()
        if not _MAC.fullmatch(text):
            raise self.error(where, "not a MAC address")
        return text.replace("-", ":")

    def ifname(self, value: Any, where: str) -> str:
        text = self.string(value, where, required=True)
        if not _IFNAME.fullmatch(text) or text in (".", ".."):
            raise self.error(where, "not a usable interface name")
        return text

    def prefix(self, address: str, netmask: Any, where: str) -> int:
        """A netmask given as a prefix length, a dotted IPv4 mask or an IPv6 mask."""
        version = ipaddress.ip_address(address).version
        bits = 32 if version == 4 else 128
        if netmask is None:
            return bits
        text = self.string(netmask, where, required=True)
        if re.fullmatch(r"[0-9]{1,3}", text) and int(text) <= bits:
            return int(text)
        try:
            mask = ipaddress.ip_address(text)
        except ValueError:
            raise self.error(where, "not a netmask or prefix length") from None
        value = int(mask)
        length = bin(value).count("1")
        if mask.version != version or value != ((1 << length) - 1) << (bits - length):
            raise self.error(where, "not a netmask or prefix length")
        return length

    def cidr(self, address: Any, netmask: Any, where: str, mask_where: str) -> str:
        """``ip/prefix`` of an interface address (``10.0.1.15/24``)."""
        text = self.string(address, where, required=True)
        if "/" in text:  # "10.0.1.15/24": the prefix travels with the address
            text, netmask = text.split("/", 1)
            mask_where = where
        ip = self.ip(text, where)
        return f"{ip}/{self.prefix(ip, netmask, mask_where)}"

    def integer(self, value: Any, where: str, low: int, high: int) -> int:
        """A whole number from ``low`` to ``high``: a JSON number or YAML digits (``100``)."""
        if isinstance(value, str) and re.fullmatch(r"[0-9]{1,9}", value.strip()):
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise self.error(where, f"expected a whole number from {low} to {high}")
        return value

    def duration_ms(self, value: Any, where: str, *, unit_ms: int) -> int:
        """Milliseconds of a time given as a number of ``unit_ms`` or with an ``ms``/``s``
        suffix (netplan's ``100``, ``100ms``, ``2s``)."""
        text = value.strip() if isinstance(value, str) else value
        if isinstance(text, str):
            found = re.fullmatch(r"([0-9]{1,9})(ms|s)?", text)
            if found is None:
                raise self.error(where, "expected a time (a number, or with ms or s)")
            number, suffix = int(found.group(1)), found.group(2)
            value, unit_ms = number, {"ms": 1, "s": 1000}.get(suffix, unit_ms)
        return self.integer(value, where, 0, 86_400_000 // unit_ms) * unit_ms

    def choice(self, value: Any, where: str, allowed: Sequence[str]) -> str:
        text = self.string(value, where, required=True).lower()
        if text not in allowed:
            raise self.error(where, "expected one of " + ", ".join(allowed))
        return text

    def destination(self, network: Any, netmask: Any, where: str, mask_where: str) -> str:
        """``network/prefix`` of a route; ``default`` is left to the caller."""
        address, prefix = self.cidr(network, netmask, where, mask_where).split("/")
        return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))


def dhcp_mode(ipv4: bool, ipv6: bool) -> Optional[str]:
    """The ``NetworkInterface.dhcp`` value for DHCP on neither, one or both families."""
    return {(True, True): "yes", (True, False): "ipv4", (False, True): "ipv6"}.get((ipv4, ipv6))


def unique(values: Sequence[Any]) -> Tuple[Any, ...]:
    """``values`` in order, each once."""
    return tuple(dict.fromkeys(values))


def first_addresses(interfaces: Sequence[NetworkInterface]) -> Tuple[Optional[str], Optional[str]]:
    """(IPv4, IPv6) without prefix: the first of each family on the first interface that has
    static addresses (KubeVirt's rule, used for every drive platform here)."""
    for interface in interfaces:
        if interface.addresses:
            ips = [ipaddress.ip_interface(a).ip for a in interface.addresses]
            v4 = next((str(ip) for ip in ips if ip.version == 4), None)
            v6 = next((str(ip) for ip in ips if ip.version == 6), None)
            return v4, v6
    return None, None


def _kind(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean",
            type(None): "null"}.get(type(value), "a number" if isinstance(value, (int, float))
                                     else type(value).__name__)
