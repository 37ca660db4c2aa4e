"""Azure's WireServer ("fabric"): where it is, what it says, and the Ready report.

Protocol (docs/protocols.md "azure", docs/attributes.md): the address is DHCP option 245 when a
lease carries it, else ``168.63.129.16``; every request carries ``x-ms-agent-name`` and
``x-ms-version: 2012-11-30``; ``/?comp=versions`` must list ``2012-11-30`` (the platform
check); ``/machine/?comp=goalstate`` names the incarnation, container, role instance and the
SharedConfig URL; the Ready report is ``POST /machine/?comp=health``.

SharedConfig rules (decided here): the ``Instances/Instance`` whose ``id`` equals the
``Incarnation`` element's ``instance`` (the first such, ids being unique) gives its ``address``
(``AZURE_IPV4_DYNAMIC``, must be IPv4); of its ``InputEndpoints/Endpoint``
``loadBalancedPublicAddress`` values (``ip:port``), the **last** one that parses as an IPv4
address and port gives ``AZURE_IPV4_VIRTUAL``, as every Rust build Container Linux shipped did
(Go took the first). No matching instance: neither attribute. URLs named by the goal state must
be on the WireServer's own address (IP literals only, docs/hardening.md).

XML: standard library only, and no document type at all: a ``<!DOCTYPE``/``<!ENTITY`` is refused
before parsing, and the parser refuses one again if an encoding hid it (billion laughs, external
entities). The client already caps the size.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from typing import List, NamedTuple, Optional, Tuple
from urllib.parse import urlsplit
from xml.etree.ElementTree import Element, TreeBuilder
from xml.parsers import expat
from xml.sax.saxutils import escape

from cl_metadata.sources import dhcp
from cl_metadata.sources.deadline import Deadline
from cl_metadata.errors import InvalidMetadata, MetadataError

log = logging.getLogger("cl_metadata")

FALLBACK_ADDRESS = "168.63.129.16"
FABRIC_OPTION = 245
VERSION = "2012-11-30"
AGENT_NAME = "com.coreos.metadata"  # Container Linux's agent name: this is its drop-in
HEADERS = {"x-ms-agent-name": AGENT_NAME, "x-ms-version": VERSION}
HEALTH_HEADERS = {**HEADERS, "Content-Type": "text/xml; charset=utf-8"}
VERSIONS = "/?comp=versions"
GOAL_STATE = "/machine/?comp=goalstate"
HEALTH = "/machine/?comp=health"

_DECLARATION = re.compile(rb"<!\s*(?:DOCTYPE|ENTITY)", re.IGNORECASE)


class _Refused(Exception):
    pass


class GoalState(NamedTuple):
    incarnation: str
    container_id: str
    instance_id: Optional[str]  # of the first RoleInstance
    shared_config: Optional[str]  # URL
    certificates: Optional[str] = None  # URL; absent when the fabric has no certificates


def address(deadline: Deadline) -> str:
    """The WireServer's IPv4 address: DHCP option 245, else the well-known fallback."""
    found = dhcp.option_ipv4(FABRIC_OPTION, deadline=deadline)
    if found is None:
        log.info("azure: no DHCP lease carries option 245; WireServer %s", FALLBACK_ADDRESS)
        return FALLBACK_ADDRESS
    log.info("azure: WireServer %s from DHCP option 245 in %s", found.value, found.source)
    return found.value


def parse_xml(body: bytes, source: str) -> Element:
    refused = InvalidMetadata("XML with a DOCTYPE or ENTITY declaration refused", source=source)
    if _DECLARATION.search(body):
        raise refused
    builder, parser = TreeBuilder(), expat.ParserCreate()

    def refuse(*_args):
        raise _Refused()

    parser.StartDoctypeDeclHandler = parser.EntityDeclHandler = refuse
    parser.ExternalEntityRefHandler = refuse
    parser.StartElementHandler, parser.EndElementHandler = builder.start, builder.end
    parser.CharacterDataHandler = builder.data
    try:
        parser.Parse(body, True)
    except _Refused:
        raise refused from None
    except expat.ExpatError as err:
        raise InvalidMetadata(f"invalid XML at line {err.lineno} column {err.offset}",
                              source=source) from None
    return builder.close()


def _text(root: Element, path: str, source: str) -> str:
    value = (root.findtext(path) or "").strip()
    if not value:
        raise InvalidMetadata(f"{path} is missing or empty", source=source)
    return value


def check_versions(body: bytes, source: str) -> None:
    root = parse_xml(body, source)
    supported = [(v.text or "").strip() for v in root.findall("Supported/Version")]
    if VERSION not in supported:
        raise MetadataError(f"the WireServer does not list version {VERSION} as supported "
                            "(not Azure, or an incompatible fabric)", source=source)


def parse_goal_state(body: bytes, source: str) -> GoalState:
    root = parse_xml(body, source)
    role = root.find("Container/RoleInstanceList/RoleInstance")
    return GoalState(
        incarnation=_text(root, "Incarnation", source),
        container_id=_text(root, "Container/ContainerId", source),
        instance_id=None if role is None else (role.findtext("InstanceId") or "").strip() or None,
        shared_config=None if role is None else
        (role.findtext("Configuration/SharedConfig") or "").strip() or None,
        certificates=None if role is None else
        (role.findtext("Configuration/Certificates") or "").strip() or None)


def fabric_url(url: Optional[str], wireserver: str, what: str, source: str) -> str:
    """A URL from the goal state, accepted only on the WireServer's own address."""
    if not url:
        raise InvalidMetadata(f"{what} URL is missing", source=source)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or parts.hostname != wireserver:
        raise InvalidMetadata(f"{what} URL is not on the WireServer's address", source=source)
    return url


def shown(what: str) -> str:
    """How logs and errors name the goal state's ``what`` URL: its path carries the container
    id and the role instance name (the VM's name), values that never go into a message."""
    return f"<the goal state's {what} URL>"


def parse_shared_config(body: bytes, source: str) -> Tuple[Optional[str], Optional[str]]:
    """(``AZURE_IPV4_DYNAMIC``, ``AZURE_IPV4_VIRTUAL``) by the rules in the module docstring."""
    root = parse_xml(body, source)
    incarnation = root.find("Incarnation")
    wanted = None if incarnation is None else incarnation.get("instance")
    if not wanted:
        raise InvalidMetadata("Incarnation/@instance is missing", source=source)
    for instance in root.findall("Instances/Instance"):
        if instance.get("id") != wanted:
            continue
        try:
            dynamic = str(ipaddress.IPv4Address((instance.get("address") or "").strip()))
        except ValueError:
            raise InvalidMetadata("Instance/@address of this instance is not an IPv4 address",
                                  source=source) from None
        virtual = None
        for endpoint in instance.findall("InputEndpoints/Endpoint"):
            virtual = endpoint_ipv4(endpoint.get("loadBalancedPublicAddress")) or virtual
        return dynamic, virtual
    return None, None


def endpoint_ipv4(value: Optional[str]) -> Optional[str]:
    """The IPv4 part of ``ip:port``; None when it is not exactly that."""
    ip, _, port = (value or "").strip().rpartition(":")
    if not (port.isdigit() and int(port) <= 65535):
        return None
    try:
        return str(ipaddress.IPv4Address(ip))
    except ValueError:
        return None


def health_report(goal: GoalState, source: str) -> bytes:
    """The Ready report for this goal state (the real incarnation, unlike 3.1.0's fixed 1);
    ``source`` names the goal state in errors."""
    if goal.instance_id is None:
        raise InvalidMetadata("Container/RoleInstanceList/RoleInstance/InstanceId is missing",
                              source=source)
    lines: List[str] = [
        '<?xml version="1.0" encoding="utf-8"?>',
        '<Health xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"'
        ' xmlns:xsd="http://www.w3.org/2001/XMLSchema">',
        f"  <GoalStateIncarnation>{escape(goal.incarnation)}</GoalStateIncarnation>",
        "  <Container>",
        f"    <ContainerId>{escape(goal.container_id)}</ContainerId>",
        "    <RoleInstanceList>", "      <Role>",
        f"        <InstanceId>{escape(goal.instance_id)}</InstanceId>",
        "        <Health>", "          <State>Ready</State>", "        </Health>",
        "      </Role>", "    </RoleInstanceList>", "  </Container>", "</Health>", ""]
    return "\n".join(lines).encode("utf-8")
