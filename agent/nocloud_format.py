"""The NoCloud seed (cloud-init's ``cidata`` drive, providers.md §3.3), parsed in one place for
``nocloud``, ``ibmcloud``, ``proxmoxve`` and ``kubevirt``'s NoCloud branch. ``qemu``'s firmware
config document has the meta-data shape, and ``vmware``'s guestinfo ``network`` key is network
config v2, so they use this module too.

- ``meta-data``: a YAML mapping (IBM's ``key: value`` lines are YAML as well): ``instance-id``,
  ``local-hostname``, optional ``public-keys`` (a string, a list, or a name → key mapping).
- ``user-data``: read only when its first line starts with ``#cloud-config`` (``hostname``,
  ``fqdn``, ``ssh_authorized_keys``); anything else (an Ignition config, a script) is not ours.
- ``vendor-data``: MIME multipart; the last ``text/cloud-config`` part that mentions
  ``ssh_authorized_keys`` gives the keys (IBM Cloud VPC).
- ``network-config``: cloud-init network config v1 (``physical`` and ``nameserver`` entries) or
  v2 (netplan ``ethernets``), YAML or JSON, optionally under a top-level ``network`` key. Bonds,
  VLANs and bridges cannot be expressed by the interface model yet: skipped with a warning.

YAML is read with PyYAML's safe loader, after the drive reader's size cap, with one change:
plain scalars stay the text written (only ``null``/``~``/empty is resolved), so an id ``0717``
is not read as the octal number 463 and a host named ``yes`` is not a boolean; upstream's serde
keeps string fields as written too. A top level of the wrong type is refused. Errors name the
file and the field path, never a value.
"""

from __future__ import annotations

import email
import logging
from typing import Any, Dict, List, Optional

import yaml

from cl_metadata import formats
from cl_metadata.errors import InvalidMetadata
from cl_metadata.model import NetworkInterface, Route
from cl_metadata.fields import Fields, dhcp_mode, unique

log = logging.getLogger("cl_metadata")

LABELS = ("cidata", "CIDATA")
META_DATA = "meta-data"
USER_DATA = "user-data"
VENDOR_DATA = "vendor-data"
NETWORK_CONFIG = "network-config"
CLOUD_CONFIG_HEADER = "#cloud-config"

_V1_UNSUPPORTED = ("bond", "bridge", "vlan", "route", "loopback")
_V2_UNSUPPORTED = ("bonds", "bridges", "vlans", "wifis", "tunnels", "vrfs", "modems")
_GLOB = set("*?[")


class _TextLoader(yaml.SafeLoader):
    """The safe loader, resolving no plain scalar but null: everything else stays a string."""


_TextLoader.yaml_implicit_resolvers = {
    first: [(tag, pattern) for tag, pattern in resolvers if tag == "tag:yaml.org,2002:null"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}


def load_yaml(text: str, source: str) -> Any:
    try:
        return yaml.load(text, Loader=_TextLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f" at line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
        raise InvalidMetadata(f"invalid YAML{at}", source=source) from None
    except RecursionError:
        raise InvalidMetadata("invalid YAML: nested too deeply", source=source) from None


def parse_meta_data(text: str, source: str) -> Dict[str, Any]:
    """A YAML mapping (an empty document is an empty mapping)."""
    return Fields(source).mapping(load_yaml(text, source), "top level")


def parse_cloud_config(text: Optional[str], source: str) -> Optional[Dict[str, Any]]:
    """The ``#cloud-config`` mapping; ``None`` for absent or other user-data."""
    if text is None or not text.startswith(CLOUD_CONFIG_HEADER):
        return None
    return parse_meta_data(text, source)


def meta_data_keys(meta: Dict[str, Any], source: str) -> List[str]:
    fields = Fields(source)
    field = "public-keys" if "public-keys" in meta else "public_keys"
    value = meta.get(field)
    if isinstance(value, dict):  # a name → key map has no order of its own: sort by name
        values = [fields.string(value[name], f"{field}[{i}]", required=True)
                  for i, name in enumerate(sorted(value, key=str))]
    else:
        values = fields.strings(value, field)
    return [line for text in values for line in formats.key_lines(text)]


def cloud_config_keys(config: Optional[Dict[str, Any]], source: str) -> List[str]:
    if not config:
        return []
    values = Fields(source).strings(config.get("ssh_authorized_keys"), "ssh_authorized_keys")
    return [line for text in values for line in formats.key_lines(text)]


def seed_keys(meta: Dict[str, Any], config: Optional[Dict[str, Any]]) -> List[str]:
    """meta-data ``public-keys`` then cloud-config ``ssh_authorized_keys``, each key once (as
    cloud-init merges the two sources)."""
    return list(unique(meta_data_keys(meta, META_DATA) + cloud_config_keys(config, USER_DATA)))


def seed_hostname(meta: Dict[str, Any], config: Optional[Dict[str, Any]]) -> Optional[str]:
    """cloud-config ``hostname``, else ``fqdn``, else meta-data ``local-hostname`` (user-data
    overrides the datasource, as in cloud-init)."""
    config = config or {}
    for document, field, source in ((config, "hostname", USER_DATA), (config, "fqdn", USER_DATA),
                                    (meta, "local-hostname", META_DATA)):
        value = Fields(source).string(document.get(field), field)
        if value:
            return value
    return None


def vendor_data_keys(data: Optional[bytes], source: str) -> List[str]:
    if data is None:
        return []
    if data.lstrip().startswith(CLOUD_CONFIG_HEADER.encode()):
        bodies = [data]
    else:
        message = email.message_from_bytes(data)
        bodies = [part.get_payload(decode=True) or b"" for part in message.walk()
                  if part.get_content_type() == "text/cloud-config"]
    keys: List[str] = []
    for number, body in enumerate(bodies, 1):
        where = f"{source} (cloud-config part {number})"
        text = formats.text(body, where)
        if "ssh_authorized_keys" in text:  # several such parts: the last one wins
            keys = cloud_config_keys(parse_meta_data(text, where), where)
    return keys


# --- network-config ------------------------------------------------------------------------------

def parse_network_config(text: Optional[str], source: str, *,
                         priority: int = 10) -> List[NetworkInterface]:
    if text is None or not text.strip():
        return []
    if text.lstrip().startswith("{"):
        document = formats.json_document(text.encode("utf-8"), source)
    else:
        document = load_yaml(text, source)
    fields = Fields(source)
    doc = fields.mapping(document, "top level")
    if "network" in doc:
        return network_interfaces(fields.mapping(doc["network"], "network"), fields, "network.",
                                  priority)
    return network_interfaces(doc, fields, "", priority)


def network_interfaces(doc: Dict[str, Any], fields: Fields, where: str,
                       priority: int) -> List[NetworkInterface]:
    """Interfaces of a network config v1 or v2 mapping (``where`` prefixes error paths)."""
    version = doc.get("version")
    if not doc or doc.get("config") == "disabled":
        return []
    if version in (1, "1"):
        return _v1(doc, fields, where, priority)
    if version in (2, "2"):
        return _v2(doc, fields, where, priority)
    raise fields.error(where + "version", "expected 1 or 2")


def _default_route(gateway: str) -> Route:
    return Route("::/0" if ":" in gateway else "0.0.0.0/0", gateway)


def _interface(fields: Fields, at: str, name: Any, name_field: str, mac: Any, mac_field: str,
               **values) -> NetworkInterface:
    name = fields.ifname(name, f"{at}.{name_field}") if name is not None else None
    mac = fields.mac(mac, f"{at}.{mac_field}") if mac is not None else None
    if name is None and mac is None:
        raise fields.error(at, "names neither an interface nor a MAC address")
    return NetworkInterface(name=name, mac=mac, **values)


def _v1(doc, fields: Fields, where: str, priority: int) -> List[NetworkInterface]:
    interfaces, nameservers = [], []
    for i, entry in enumerate(fields.items(doc.get("config"), where + "config")):
        at = f"{where}config[{i}]"
        entry = fields.mapping(entry, at)
        kind = fields.string(entry.get("type"), at + ".type", required=True)
        if kind == "physical":
            interfaces.append(_v1_physical(entry, fields, at, priority))
        elif kind == "nameserver":
            nameservers += fields.ips(entry.get("address"), at + ".address")
        else:
            log.warning("%s: %s: %s entries are not supported; skipped", fields.source, at,
                        kind if kind in _V1_UNSUPPORTED else "unknown")
    return [i._replace(nameservers=unique(i.nameservers + tuple(nameservers)))
            for i in interfaces]


def _v1_physical(entry, fields: Fields, at: str, priority: int) -> NetworkInterface:
    addresses, routes, dns = [], [], []
    ipv4 = ipv6 = False
    for j, subnet in enumerate(fields.items(entry.get("subnets"), at + ".subnets")):
        sub = f"{at}.subnets[{j}]"
        subnet = fields.mapping(subnet, sub)
        kind = fields.string(subnet.get("type"), sub + ".type", required=True)
        if kind in ("dhcp", "dhcp4"):
            ipv4 = True
        elif kind in ("dhcp6", "ipv6_dhcpv6-stateful"):
            ipv6 = True
        elif kind in ("static", "static6"):
            addresses.append(fields.cidr(subnet.get("address"), subnet.get("netmask"),
                                         sub + ".address", sub + ".netmask"))
            if subnet.get("gateway") is not None:
                routes.append(_default_route(fields.ip(subnet["gateway"], sub + ".gateway")))
            for k, route in enumerate(fields.items(subnet.get("routes"), sub + ".routes")):
                r = f"{sub}.routes[{k}]"
                route = fields.mapping(route, r)
                routes.append(Route(
                    fields.destination(route.get("network"), route.get("netmask"),
                                       r + ".network", r + ".netmask"),
                    fields.ip(route.get("gateway"), r + ".gateway")))
            dns += fields.ips(subnet.get("dns_nameservers"), sub + ".dns_nameservers")
        else:  # manual, ipv6_slaac, ipv6_dhcpv6-stateless: networkd's defaults cover them
            log.info("%s: %s: subnet type not configured by unit files", fields.source, sub)
    return _interface(fields, at, entry.get("name"), "name", entry.get("mac_address"),
                      "mac_address", priority=priority, addresses=unique(addresses),
                      routes=unique(routes), nameservers=unique(dns), dhcp=dhcp_mode(ipv4, ipv6))


def _v2(doc, fields: Fields, where: str, priority: int) -> List[NetworkInterface]:
    for kind in _V2_UNSUPPORTED:
        if doc.get(kind):
            log.warning("%s: %s%s are not supported; skipped", fields.source, where, kind)
    ethernets = fields.mapping(doc.get("ethernets"), where + "ethernets")
    found = (_v2_ethernet(key, value, fields, f"{where}ethernets[{i}]", priority)
             for i, (key, value) in enumerate(ethernets.items()))
    return [interface for interface in found if interface is not None]


def _v2_ethernet(key, config, fields: Fields, at: str, priority: int):
    config = fields.mapping(config, at)
    match = fields.mapping(config.get("match"), at + ".match")
    mac = match.get("macaddress")
    if config.get("set-name") is not None:
        name, name_field = config["set-name"], "set-name"
    elif match.get("name") is not None:
        name, name_field = match["name"], "match.name"
    else:  # the id names the interface only when nothing else selects one
        name, name_field = (None if match else key), "id"
    if isinstance(name, str) and _GLOB & set(name):
        if mac is None:
            log.warning("%s: %s: interface name patterns are not supported; skipped",
                        fields.source, at)
            return None
        name = None
    addresses = [fields.cidr(a, None, f"{at}.addresses[{j}]", f"{at}.addresses[{j}]")
                 for j, a in enumerate(fields.items(config.get("addresses"), at + ".addresses"))]
    routes = [_default_route(fields.ip(config[g], f"{at}.{g}"))
              for g in ("gateway4", "gateway6") if config.get(g) is not None]
    for j, route in enumerate(fields.items(config.get("routes"), at + ".routes")):
        r = f"{at}.routes[{j}]"
        route = fields.mapping(route, r)
        via = fields.ip(route.get("via"), r + ".via")
        to = fields.string(route.get("to"), r + ".to", required=True)
        routes.append(_default_route(via) if to == "default" else
                      Route(fields.destination(to, None, r + ".to", r + ".to"), via))
    nameservers = fields.mapping(config.get("nameservers"), at + ".nameservers")
    dns = fields.ips(nameservers.get("addresses"), at + ".nameservers.addresses")
    return _interface(fields, at, name, name_field, mac, "match.macaddress", priority=priority,
                      addresses=unique(addresses), routes=unique(routes), nameservers=unique(dns),
                      dhcp=dhcp_mode(fields.flag(config.get("dhcp4"), at + ".dhcp4"),
                                     fields.flag(config.get("dhcp6"), at + ".dhcp6")))
