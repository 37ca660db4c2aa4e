"""Equinix Metal (Packet): ``GET /metadata`` and the phone-home check-in (docs/protocols.md "packet").

Every NIC of ``network_interfaces`` is listed under ``network.interfaces`` and enslaved to one
bond; its addresses become ``network.addresses`` entries in Packet's order: public IPv4, IPv6
(public when the NIC is), private IPv4. Netmasks come from the prefixes; a missing gateway is
the network's first host. ``phone_home_url`` points back at this server (built from the
request's ``Host`` header), so an agent rewriting origins for tests reaches it too;
``POST /phone-home`` requires ``Content-Type: application/json`` and an empty body (else 400).

platform-data (``packet:``): ``bond`` (default ``bond0``), ``bonding-mode`` (0–6, default 4),
``unbonded`` (MACs of NICs left out of the bond, default none).
"""

from __future__ import annotations

import ipaddress
import uuid
from typing import Dict, List, Optional

from ..instance import Instance
from . import JSON, TEXT, Request, Response, Route, json_body, user_data_body

PLATFORMS = ("packet",)
PHONE_HOME_PATH = "/phone-home"


def _address(ip: str, prefix: int, gateway: Optional[str], public: bool) -> Dict[str, object]:
    interface = ipaddress.ip_interface(f"{ip}/{prefix}")
    network = interface.network
    return {
        "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"packet-address:{ip}")),
        "address_family": interface.version,
        "netmask": str(network.netmask),
        "cidr": prefix,
        "network": str(network.network_address),
        "public": public,
        "management": True,
        "enabled": True,
        "address": ip,
        "gateway": gateway or str(next(iter(network.hosts()), network.network_address)),
    }


def network(instance: Instance) -> Dict[str, object]:
    extra = instance.extra("packet")
    unbonded = set(extra.get("unbonded", ()))
    interfaces: List[dict] = []
    addresses: List[dict] = []
    for i, nic in enumerate(instance.network_interfaces):
        interfaces.append({"name": nic.name or f"eth{i}", "mac": nic.mac,
                           "bond": None if nic.mac in unbonded else extra.get("bond", "bond0")})
        if nic.public_ipv4:
            addresses.append(_address(nic.public_ipv4, nic.ipv4_prefix, None, True))
        if nic.ipv6:
            addresses.append(_address(nic.ipv6, nic.ipv6_prefix, nic.ipv6_gateway, nic.public))
        if nic.local_ipv4:
            addresses.append(_address(nic.local_ipv4, nic.ipv4_prefix, nic.ipv4_gateway, False))
    return {"bonding": {"mode": extra.get("bonding-mode", 4)}, "interfaces": interfaces,
            "addresses": addresses}


def document(instance: Instance, host: str) -> Dict[str, object]:
    doc = {
        "id": instance.instance_id,
        "hostname": instance.hostname,
        "iqn": f"iqn.2024-01.net.packet:device.{instance.instance_id[:8]}",
        "plan": instance.instance_type,
        "class": instance.instance_type,
        "facility": instance.availability_zone,
        "metro": instance.region,
        "tags": [],
        "ssh_keys": [key.key for key in instance.ssh_keys],
        "operating_system": {"slug": "flatcar_stable", "distro": "flatcar", "version": "current"},
        "network": network(instance),
        "volumes": [],
        "phone_home_url": f"http://{host}{PHONE_HOME_PATH}",
    }
    return {key: value for key, value in doc.items() if value is not None}


def phone_home(request: Request) -> Response:
    if request.body:
        return Response(400, b"phone-home takes an empty body", TEXT)
    return Response(200, b"", JSON)


def routes(instance: Instance) -> List[Route]:
    found = [
        Route("/metadata", lambda request: json_body(
            document(instance, request.headers.get("Host") or "localhost"))),
        Route(PHONE_HOME_PATH, phone_home, method="POST",
              required_headers={"Content-Type": "application/json"}),
    ]
    if instance.user_data is not None:
        found.append(Route("/userdata", Response(body=user_data_body(instance))))
    return found
