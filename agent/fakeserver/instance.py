"""The one instance description every platform renderer works from.

A YAML mapping with hyphenated keys (``instance-id``, ``local-ipv4``, ``ssh-keys`` …), loaded
with ``yaml.safe_load`` and checked strictly: unknown keys and wrongly typed values are refused
with a message naming the file and the key (never the value). Only ``instance-id`` is required;
an absent optional field means "the platform does not have it" (renderers answer 404 or leave
the field out).
"""

from __future__ import annotations

import gzip
import ipaddress
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple, Union

import yaml

from ..errors import UsageError

SAMPLE_PATH = Path(__file__).with_name("sample-instance.yaml")

_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


class InstanceError(UsageError):
    """The instance description is missing, unreadable or invalid (exit status 2)."""


@dataclass(frozen=True)
class SshKey:
    name: str
    key: str  # one OpenSSH public key line, without a trailing newline


@dataclass(frozen=True)
class NetworkInterface:
    mac: str
    name: Optional[str] = None
    public: bool = False  # a public (internet-facing) interface, as DigitalOcean/Packet say
    local_ipv4: Optional[str] = None
    ipv4_prefix: int = 24
    ipv4_gateway: Optional[str] = None
    public_ipv4: Optional[str] = None
    ipv6: Optional[str] = None
    ipv6_prefix: int = 64
    ipv6_gateway: Optional[str] = None


@dataclass(frozen=True)
class Instance:
    instance_id: str
    uuid: Optional[str] = None
    hostname: Optional[str] = None
    local_ipv4: Optional[str] = None
    public_ipv4: Optional[str] = None  # None = no floating IP
    ipv6: Optional[str] = None
    mac: Optional[str] = None
    region: Optional[str] = None
    availability_zone: Optional[str] = None
    project_id: Optional[str] = None
    instance_type: Optional[str] = None
    image_id: Optional[str] = None
    # The end user's configuration: text, or bytes (YAML ``!!binary``); with ``user-data-gzip:
    # true`` the user handed the platform its gzip compression (see ``user_data_bytes``).
    user_data: Optional[Union[str, bytes]] = None
    user_data_gzip: bool = False
    ssh_keys: Tuple[SshKey, ...] = ()
    network_interfaces: Tuple[NetworkInterface, ...] = ()
    nameservers: Tuple[str, ...] = ()
    # Free-form extras per platform id (e.g. {"gcp": {"project-ssh-keys": [...]}}); each render
    # module documents and checks the keys it reads, and derives the rest from the fields above.
    platform_data: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def extra(self, platform: str) -> Mapping[str, Any]:
        """This platform's extras (an empty mapping when there are none)."""
        return self.platform_data.get(platform, {})

    def user_data_bytes(self) -> Optional[bytes]:
        """The user-data as the user gave it to the platform, before the platform's own
        transport encoding: the text's UTF-8 bytes (or the bytes), gzip-compressed (with a fixed
        timestamp, so every server process serves the same bytes) when ``user_data_gzip``."""
        if self.user_data is None:
            return None
        data = (self.user_data.encode("utf-8") if isinstance(self.user_data, str)
                else self.user_data)
        return gzip.compress(data, mtime=0) if self.user_data_gzip else data

    def user_data_text(self) -> Optional[str]:
        """The user-data as text, for documents that embed it as a string; None when there
        is none or it is not plain text (binary or gzip-compressed)."""
        if isinstance(self.user_data, str) and not self.user_data_gzip:
            return self.user_data
        return None


# Scalar fields and how each is checked beyond "is a string".
_IP_CHECKS = {
    "local_ipv4": ipaddress.IPv4Address,
    "public_ipv4": ipaddress.IPv4Address,
    "ipv6": ipaddress.IPv6Address,
}


def _check_str(where: str, key: str, value: Any) -> str:
    if not isinstance(value, str):
        raise InstanceError(f"{where}: {key} must be a string (quote it in YAML)")
    checker = _IP_CHECKS.get(key.replace("-", "_"))
    if checker is not None:
        try:
            checker(value)
        except ValueError:
            raise InstanceError(f"{where}: {key} is not a valid {checker.__name__[:4]} address") from None
    if key == "mac" and not _MAC.match(value):
        raise InstanceError(f"{where}: {key} must be a lower-case MAC like 02:00:00:00:00:01")
    return value


def _check_mapping(where: str, raw: Any, allowed: set[str]) -> dict:
    if not isinstance(raw, dict):
        raise InstanceError(f"{where}: expected a mapping")
    unknown = sorted(str(k) for k in raw if k not in allowed)
    if unknown:
        raise InstanceError(f"{where}: unknown key(s) {', '.join(unknown)}; "
                            f"allowed: {', '.join(sorted(allowed))}")
    return raw


def _parse_ssh_keys(where: str, raw: Any) -> Tuple[SshKey, ...]:
    if not isinstance(raw, list):
        raise InstanceError(f"{where}: ssh-keys must be a list of {{name, key}}")
    keys = []
    for i, item in enumerate(raw):
        item_where = f"{where}: ssh-keys[{i}]"
        _check_mapping(item_where, item, {"name", "key"})
        if "name" not in item or "key" not in item:
            raise InstanceError(f"{item_where}: needs both name and key")
        name = _check_str(item_where, "name", item["name"])
        key = _check_str(item_where, "key", item["key"]).strip()
        if not name or not key or "\n" in key or "=" in name or "/" in name:
            raise InstanceError(f"{item_where}: name must be non-empty without '=' or '/', "
                                "key one non-empty line")
        keys.append(SshKey(name=name, key=key))
    names = [k.name for k in keys]
    if len(set(names)) != len(names):
        raise InstanceError(f"{where}: ssh-keys names must be unique")
    return tuple(keys)


_INTERFACE_KEYS = {"mac": str, "name": str, "public": bool, "local-ipv4": str,
                   "ipv4-prefix": int, "ipv4-gateway": str, "public-ipv4": str, "ipv6": str,
                   "ipv6-prefix": int, "ipv6-gateway": str}
_IP_KEYS = {"ipv4-gateway": ipaddress.IPv4Address, "ipv6-gateway": ipaddress.IPv6Address}


def _parse_interfaces(where: str, raw: Any) -> Tuple[NetworkInterface, ...]:
    if not isinstance(raw, list):
        raise InstanceError(f"{where}: network-interfaces must be a list of mappings")
    interfaces = []
    for i, item in enumerate(raw):
        item_where = f"{where}: network-interfaces[{i}]"
        _check_mapping(item_where, item, set(_INTERFACE_KEYS))
        if "mac" not in item:
            raise InstanceError(f"{item_where}: mac is required")
        values = {}
        for key, value in item.items():
            kind = _INTERFACE_KEYS[key]
            if kind is str:
                value = _check_str(item_where, key, value)
                if key in _IP_KEYS:
                    try:
                        _IP_KEYS[key](value)
                    except ValueError:
                        raise InstanceError(f"{item_where}: {key} is not an IP address") from None
            elif not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
                raise InstanceError(f"{item_where}: {key} must be a {kind.__name__}")
            values[key.replace("-", "_")] = value
        interfaces.append(NetworkInterface(**values))
    return tuple(interfaces)


def _parse_nameservers(where: str, raw: Any) -> Tuple[str, ...]:
    if not isinstance(raw, list):
        raise InstanceError(f"{where}: nameservers must be a list of addresses")
    for value in raw:
        try:
            ipaddress.ip_address(_check_str(where, "nameservers", value))
        except ValueError:
            raise InstanceError(f"{where}: nameservers holds something that is not an IP "
                                "address") from None
    return tuple(raw)


def _parse_platform_data(where: str, raw: Any) -> Dict[str, Dict[str, Any]]:
    if not isinstance(raw, dict) or not all(
            isinstance(k, str) and isinstance(v, dict) for k, v in raw.items()):
        raise InstanceError(f"{where}: platform-data must map platform ids to mappings")
    return raw


def parse_instance(raw: Any, where: str = "instance") -> Instance:
    """Build an :class:`Instance` from a decoded YAML document; ``where`` names it in errors."""
    allowed = {f.name.replace("_", "-") for f in fields(Instance)}
    _check_mapping(where, raw, allowed)
    if "instance-id" not in raw:
        raise InstanceError(f"{where}: instance-id is required")
    values: dict[str, Any] = {}
    for key, value in raw.items():
        name = key.replace("-", "_")
        if value is None:
            continue  # an explicit `key:` with no value means absent
        if name == "ssh_keys":
            values[name] = _parse_ssh_keys(where, value)
        elif name == "network_interfaces":
            values[name] = _parse_interfaces(where, value)
        elif name == "nameservers":
            values[name] = _parse_nameservers(where, value)
        elif name == "platform_data":
            values[name] = _parse_platform_data(where, value)
        elif name == "user_data":
            if not isinstance(value, (str, bytes)):
                raise InstanceError(f"{where}: {key} must be text or !!binary")
            values[name] = value
        elif name == "user_data_gzip":
            if not isinstance(value, bool):
                raise InstanceError(f"{where}: {key} must be true or false")
            values[name] = value
        else:
            values[name] = _check_str(where, key, value)
    if not values.get("instance_id"):
        raise InstanceError(f"{where}: instance-id must not be empty")
    return Instance(**values)


def load_instance(path: Union[str, Path, None] = None) -> Instance:
    """Load an instance description; ``None`` loads the bundled sample."""
    source = Path(path) if path is not None else SAMPLE_PATH
    try:
        text = source.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise InstanceError(f"{source}: cannot read instance description: "
                            f"{getattr(err, 'strerror', None) or type(err).__name__}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise InstanceError(f"{source}: invalid YAML{at}") from None
    return parse_instance(raw, str(source))
