"""Azure: the Instance Metadata Service and the WireServer on one origin (docs/protocols.md "azure"); the agent's endpoint override sends both addresses here.

IMDS (``/metadata/instance/compute/…``) wants ``Metadata: true`` and an ``api-version`` (400
without; leaves also ``format=text``). WireServer paths want ``x-ms-version: 2012-11-30`` and an
``x-ms-agent-name``: ``/?comp=versions``, ``/machine/?comp=goalstate``, the SharedConfig URL the
goal state names, and ``POST /machine/?comp=health``, which checks the Ready report (400 with the
reason when a field is wrong; the server records the body either way).

platform-data ``azure`` (all optional): ``vm-name`` (default: hostname), ``admin-username``
(``azureuser``), ``incarnation`` (``1``), ``container-id`` (the uuid), ``role-name`` (first
label of vm-name), ``shared-config-instance`` (the SharedConfig ``Incarnation instance``,
default role-name: set another to get no match), ``endpoints`` (list of
``loadBalancedPublicAddress`` values, default ``<public-ipv4>:22``), ``versions`` (Supported
list, default ``2015-04-05, 2012-11-30``), ``wireserver`` (host in goal-state URLs,
``168.63.129.16``), ``certificates`` (bool: name a Certificates URL).
"""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from typing import Any, List, Optional
from urllib.parse import parse_qs
from xml.sax.saxutils import escape, quoteattr

from ..instance import Instance, InstanceError
from . import Request, Response, Route, json_body, text, user_data_body

PLATFORMS = ("azure",)
XML = "text/xml; charset=utf-8"
IMDS = {"Metadata": "true"}
WIRESERVER = {"x-ms-version": "2012-11-30", "x-ms-agent-name": None}
COMPUTE = "/metadata/instance/compute/"


@dataclass(frozen=True)
class Fabric:
    """What the WireServer documents say about this instance."""

    incarnation: str
    container: str
    role: str
    role_instance: str
    host: str
    certificates: bool

    @property
    def config_path(self) -> str:
        return f"/machine/{self.container}/{self.role_instance}"

    def url(self, kind: str) -> str:
        return (f"http://{self.host}:80{self.config_path}?comp=config&type={kind}"
                f"&incarnation={self.incarnation}")


def _extra(instance: Instance, key: str, default: Any, kind=str) -> Any:
    value = instance.extra("azure").get(key, default)
    fits = isinstance(value, kind) and (kind is not list or all(isinstance(v, str) for v in value))
    if value is not None and not fits:
        raise InstanceError(f"platform-data: azure: {key} must be a {kind.__name__}"
                            + (" of strings" if kind is list else ""))
    return value


def _xml(body: str) -> Response:
    return Response(body=('<?xml version="1.0" encoding="utf-8"?>\n' + body).encode(),
                    content_type=XML)


def _imds(answer: Response, *, leaf: bool):
    def respond(request: Request) -> Response:
        query = parse_qs(request.query)
        if "api-version" not in query or (leaf and query.get("format") != ["text"]):
            return text("Bad request: api-version (and format=text for leaves) required", 400)
        return answer
    return respond


def versions_xml(versions: List[str]) -> str:
    listed = "".join(f"    <Version>{escape(v)}</Version>\n" for v in versions)
    preferred = escape(versions[0]) if versions else ""
    return (f"<Versions>\n  <Preferred>\n    <Version>{preferred}</Version>\n  </Preferred>\n"
            f"  <Supported>\n{listed}  </Supported>\n</Versions>\n")


def goal_state_xml(fabric: Fabric) -> str:
    certificates = (f"          <Certificates>{escape(fabric.url('certificates'))}"
                    "</Certificates>\n") if fabric.certificates else ""
    return (
        '<GoalState xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        'xsi:noNamespaceSchemaLocation="goalstate10.xsd">\n'
        "  <Version>2012-11-30</Version>\n"
        f"  <Incarnation>{escape(fabric.incarnation)}</Incarnation>\n"
        "  <Machine>\n    <ExpectedState>Started</ExpectedState>\n  </Machine>\n"
        f"  <Container>\n    <ContainerId>{escape(fabric.container)}</ContainerId>\n"
        "    <RoleInstanceList>\n      <RoleInstance>\n"
        f"        <InstanceId>{escape(fabric.role_instance)}</InstanceId>\n"
        "        <State>Started</State>\n        <Configuration>\n"
        f"          <SharedConfig>{escape(fabric.url('sharedConfig'))}</SharedConfig>\n"
        f"{certificates}"
        "        </Configuration>\n      </RoleInstance>\n    </RoleInstanceList>\n"
        "  </Container>\n</GoalState>\n")


def shared_config_xml(fabric: Fabric, incarnation_instance: str, address: Optional[str],
                      endpoints: List[str]) -> str:
    address_attribute = f" address={quoteattr(address)}" if address else ""
    listed = "".join(f'        <Endpoint name="ep{i}" loadBalancedPublicAddress={quoteattr(e)}'
                     ' protocol="tcp" isPublic="true" />\n' for i, e in enumerate(endpoints))
    return (
        '<SharedConfig version="1.0.0.0" goalStateIncarnation="1">\n'
        f'  <Incarnation number="1" instance={quoteattr(incarnation_instance)} />\n'
        f'  <Role name={quoteattr(fabric.role)} settleTimeSeconds="0" />\n'
        f"  <Instances>\n    <Instance id={quoteattr(fabric.role)}{address_attribute}>\n"
        '      <FaultDomains randomId="0" updateId="0" updateCount="0" />\n'
        f"      <InputEndpoints>\n{listed}      </InputEndpoints>\n"
        "    </Instance>\n  </Instances>\n</SharedConfig>\n")


def routes(instance: Instance) -> List[Route]:
    vm_name = _extra(instance, "vm-name", instance.hostname)
    container = _extra(instance, "container-id",
                       instance.uuid or "00000000-0000-0000-0000-000000000001")
    role = _extra(instance, "role-name", (vm_name or "vm0").split(".")[0])
    fabric = Fabric(incarnation=_extra(instance, "incarnation", "1"), container=container,
                    role=role, role_instance=f"{container.replace('-', '')}.{role}",
                    host=_extra(instance, "wireserver", "168.63.129.16"),
                    certificates=_extra(instance, "certificates", False, bool))
    user = _extra(instance, "admin-username", "azureuser")
    keys = [{"keyData": key.key, "path": f"/home/{user}/.ssh/authorized_keys"}
            for key in instance.ssh_keys]
    found = [Route(COMPUTE + "publicKeys", _imds(json_body(keys), leaf=False),
                   required_headers=IMDS)]
    for leaf, value in (("name", vm_name), ("vmSize", instance.instance_type)):
        if value is not None:
            found.append(Route(COMPUTE + leaf, _imds(text(value), leaf=True),
                               required_headers=IMDS))
    # IMDS keeps user-data base64-encoded and answers an empty body when there is none
    found.append(Route(COMPUTE + "userData",
                       _imds(Response(body=user_data_body(instance, "base64") or b""), leaf=True),
                       required_headers=IMDS))

    goal_state = _xml(goal_state_xml(fabric))

    def machine(request: Request) -> Response:
        if parse_qs(request.query).get("comp") != ["goalstate"]:
            return text("Bad request: comp=goalstate expected", 400)
        return goal_state

    def health(request: Request) -> Response:
        problem = health_problem(request, fabric)
        return text(f"Bad request: {problem}", 400) if problem else Response(status=200)

    versions = _extra(instance, "versions", ["2015-04-05", "2012-11-30"], list)
    endpoints = _extra(instance, "endpoints",
                       [f"{instance.public_ipv4}:22"] if instance.public_ipv4 else [], list)
    shared_config = shared_config_xml(fabric, _extra(instance, "shared-config-instance", role),
                                      instance.local_ipv4, endpoints)
    found += [
        Route("/", _xml(versions_xml(versions)), required_headers=WIRESERVER),
        Route("/machine/", machine, required_headers=WIRESERVER),
        Route("/machine/", health, method="POST", required_headers=WIRESERVER),
        Route(fabric.config_path, _xml(shared_config), required_headers=WIRESERVER),
    ]
    return found


def health_problem(request: Request, fabric: Fabric) -> str:
    """What is wrong with a Ready report ("" when nothing is)."""
    if parse_qs(request.query).get("comp") != ["health"]:
        return "comp=health expected"
    if not (request.headers.get("Content-Type") or "").startswith("text/xml"):
        return "Content-Type must be text/xml"
    try:
        root = ElementTree.fromstring(request.body)  # the agent's own report, not hostile input
    except ElementTree.ParseError:
        return "body is not XML"
    if root.tag != "Health":
        return "root element must be Health"
    wanted = {"GoalStateIncarnation": fabric.incarnation,
              "Container/ContainerId": fabric.container,
              "Container/RoleInstanceList/Role/InstanceId": fabric.role_instance,
              "Container/RoleInstanceList/Role/Health/State": "Ready"}
    for path, value in wanted.items():
        if root.findtext(path) != value:
            return f"{path} must be {value}"
    return ""
