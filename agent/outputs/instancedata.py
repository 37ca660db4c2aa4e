"""The instance-data document: everything the platform says about this machine, in one JSON
object for other tools (``--instance-data FILE``) and for people (``cl-metadata query``).

It holds no secret, so the file is 0644 like the attributes file: the attributes as each
``--attributes-prefix`` would write them (the same values, the same dropped attributes), the
SSH keys as type, size and SHA256 fingerprint (never the key, never its comment: free text the
user typed), the host name as the hostname writer would write it, the network description as
checked for the network writers, whether the platform holds user-data (never any of it), and
whether the platform has a boot check-in (never performed for this). Its shape is
docs/instance-data.schema.json; ``schema_version`` changes when a field changes meaning or goes
away (new fields may appear without a change).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence

from cl_metadata.model import Metadata
from cl_metadata.outputs import envfile, fingerprints, fsutil
from cl_metadata.outputs.sshkeys import SshKey

logger = logging.getLogger("cl_metadata")

SCHEMA_VERSION = 1
FILE_MODE = 0o644
PREFIXES = ("COREOS", "AFTERBURN")


def document(provider, metadata: Metadata, hostname: Optional[str], keys: Sequence[SshKey], *,
             user_data: Optional[bool], warn: bool = True) -> Dict[str, Any]:
    """The document for what ``provider`` served (``metadata``, fetched in full) after the
    pipeline validated it: ``hostname`` normalised, ``keys`` the valid ones.

    ``user_data`` is True or False when the platform has user-data at all, else None. Raises
    ``InvalidMetadata`` for a network description no writer would accept. ``warn`` logs the
    dropped attributes (once, not per prefix); off when the attributes file's writer does.
    """
    from cl_metadata.network import netcheck
    from cl_metadata.providers.base import CHECK_IN

    checked = netcheck.check(metadata.interfaces, metadata.netdevs)
    return {
        "schema_version": SCHEMA_VERSION,
        "provider": provider.id,
        "source": provider.source,
        "features": sorted(provider.features),
        "attributes": attribute_files(metadata.attributes, provider.unprefixed_attributes,
                                      warn=warn),
        "ssh_keys": [{"type": key.type, "bits": fingerprints.bits(key),
                      "fingerprint": fingerprints.fingerprint(key)} for key in keys],
        "hostname": hostname,
        "interfaces": [_interface(item) for item in checked.interfaces],
        "netdevs": [_netdev(item) for item in checked.netdevs],
        "user_data": user_data,
        "check_in": CHECK_IN in provider.features,
    }


def attribute_files(attributes: Mapping[str, str], unprefixed: Sequence[str] = (), *,
                    warn: bool = True) -> Dict[str, Dict[str, str]]:
    """Prefix → the attributes file that prefix gives, as name → value, read back from the
    writer's own rendering so that it holds exactly what the file would."""
    files = {}
    for prefix in PREFIXES:
        with _quiet(not warn or prefix != PREFIXES[0]):  # the same drops under each prefix
            data, _ = envfile.render(attributes, prefix, unprefixed)
        files[prefix] = _parse_envfile(data)
    return files


def _parse_envfile(data: bytes) -> Dict[str, str]:
    """``envfile.render``'s lines back into name → value: bare, or double-quoted with
    ``\\``, ``"``, ``$`` and `````` backslash-escaped."""
    values = {}
    for line in data.decode("utf-8").splitlines():
        name, _, value = line.partition("=")
        if value.startswith('"'):
            chars, escaped = [], False
            for char in value[1:-1]:
                if escaped or char != "\\":
                    chars.append(char)
                escaped = not escaped and char == "\\"
            value = "".join(chars)
        values[name] = value
    return values


@contextlib.contextmanager
def _quiet(active: bool) -> Iterator[None]:
    """Drop the agent logger's records meanwhile (when ``active``)."""
    if not active:
        yield
        return
    drop = logging.Filter("a name no logger has")  # rejects every record of "cl_metadata"
    logger.addFilter(drop)
    try:
        yield
    finally:
        logger.removeFilter(drop)


def _interface(item) -> Dict[str, Any]:
    return {
        "mac": item.mac,
        "name": item.name,
        "virtual": item.virtual,
        "dhcp": item.dhcp,
        "addresses": [str(address) for address in item.addresses],
        "routes": [{"destination": str(route.destination), "gateway": str(route.gateway)}
                   for route in item.routes],
        "nameservers": [str(server) for server in item.nameservers],
        "bond": item.bond,
        "bridge": item.bridge,
        "vlans": list(item.vlans),
        "unmanaged": item.unmanaged,
    }


def _netdev(item) -> Dict[str, Any]:
    settings = {"bond": item.bond, "bridge": item.bridge}.get(item.kind)
    given = {} if settings is None else {
        field: value for field, value in settings._asdict().items() if value is not None}
    return {"name": item.name, "kind": item.kind, "mac": item.mac, "vlan_id": item.vlan_id,
            "settings": given}


def render(doc: Mapping[str, Any]) -> bytes:
    """The document as the file holds it: indented JSON, ASCII only, one final newline."""
    return (json.dumps(doc, indent=2) + "\n").encode("ascii")


def write(path: "os.PathLike[str] | str", doc: Mapping[str, Any]) -> None:
    """Atomically replace ``path`` (mode 0644) with the document; ``-`` prints it instead."""
    fsutil.write_output(path, render(doc), mode=FILE_MODE)
    logger.info("wrote instance data to %s",
                "standard output" if fsutil.is_stdout(path) else os.fspath(path))


# --- for people ------------------------------------------------------------------------------

def _shown(value: Optional[str]) -> str:
    """A value on one line: as it is when plain, else JSON-quoted (empty, spaces at its ends,
    characters a terminal would act on)."""
    if value is None:
        return "-"
    if value and value.strip() == value and value.isprintable():
        return value
    return json.dumps(value)


def _table(rows: Sequence[Sequence[Any]], indent: str = "  ") -> List[str]:
    """Rows of columns, each column as wide as its widest cell; a last cell that is a list
    gives one line per item, the later ones under the first."""
    if not rows:
        return [indent + "(none)"]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    lines = []
    for row in rows:
        lead = indent + "".join(cell.ljust(width) + "  " for cell, width in zip(row, widths))
        items = row[-1] if isinstance(row[-1], list) else [row[-1]]
        lines += [((lead if n == 0 else " " * len(lead)) + item).rstrip()
                  for n, item in enumerate(items)]
    return lines


def text(doc: Mapping[str, Any]) -> str:
    """The document for a terminal: aligned, in a fixed order, one fact per line."""
    user_data = {True: "present", False: "none", None: "the platform has no user-data"}
    lines = _table([
        ("provider", f"{doc['provider']} ({doc['source']})"),
        ("features", " ".join(doc["features"]) or "-"),
        ("hostname", _shown(doc["hostname"])),
        ("user-data", user_data[doc["user_data"]]),
        ("check-in", "supported (not performed)" if doc["check_in"] else "not supported"),
    ], indent="")
    for prefix, values in doc["attributes"].items():
        lines += ["", f"attributes ({prefix})"]
        lines += _table([(name, _shown(value)) for name, value in values.items()])
    lines += ["", "ssh keys"]
    lines += _table([(key["type"], str(key["bits"] or "?"), key["fingerprint"])
                     for key in doc["ssh_keys"]])
    lines += ["", "interfaces"]
    rows: List[List[str]] = []
    for item in doc["interfaces"]:
        rows.append(["mac" if item["mac"] else "name", item["mac"] or item["name"],
                     _interface_facts(item)])
    lines += _table(rows)
    lines += ["", "netdevs"]
    lines += _table([
        (item["kind"], item["name"], (
            ([f"mac {item['mac']}"] if item["mac"] else [])
            + ([f"vlan-id {item['vlan_id']}"] if item["vlan_id"] is not None else [])
            + [f"{field} {_setting(value)}" for field, value in item["settings"].items()])
         or ["-"])
        for item in doc["netdevs"]])
    return "\n".join(lines) + "\n"


def _setting(value: object) -> str:
    return ("yes" if value else "no") if isinstance(value, bool) else str(value)


def _interface_facts(item: Mapping[str, Any]) -> List[str]:
    facts = [f"dhcp {item['dhcp']}"] if item["dhcp"] else []
    facts += [f"address {address}" for address in item["addresses"]]
    facts += [f"route {route['destination']} via {route['gateway']}" for route in item["routes"]]
    facts += [f"dns {server}" for server in item["nameservers"]]
    facts += [f"{kind} {item[kind]}" for kind in ("bond", "bridge") if item[kind]]
    facts += [f"vlan {vlan}" for vlan in item["vlans"]]
    facts += ["virtual"] if item["virtual"] else []
    facts += ["unmanaged"] if item["unmanaged"] else []
    return facts or ["-"]
