"""Scaleway: ``GET /conf?format=json`` and the ``PATCH /state`` check-in (docs/protocols.md "scaleway").

The document follows Scaleway's field names: ``id`` (the instance id), ``hostname``,
``commercial_type`` (``instance-type``), ``private_ip`` (``local-ipv4``), ``public_ip.address``,
``ipv6.address`` (``null`` when the instance has none; IPv6 gateway and prefix from the NIC
holding that address), ``location.zone_id`` (``availability-zone``), ``ssh_public_keys[].key``.
``/conf`` without ``format=json`` answers 400 (the shell-variable format is not rendered).
``PATCH /state`` requires ``Content-Type: application/json`` and a JSON object with a string
``state_detail`` (else 400); the body is recorded like every request.

platform-data (``scaleway:``): ``zone-id`` (default: ``availability-zone``, else ``region``).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Dict, List, Optional
from urllib.parse import parse_qs

from ..instance import Instance
from . import BINARY, TEXT, Request, Response, Route, json_body, user_data_body

PLATFORMS = ("scaleway",)


def _ipv6(instance: Instance) -> Optional[Dict[str, Any]]:
    if instance.ipv6 is None:
        return None
    nic = next((n for n in instance.network_interfaces if n.ipv6 == instance.ipv6), None)
    block: Dict[str, Any] = {"address": instance.ipv6,
                             "netmask": str(nic.ipv6_prefix if nic else 64)}
    if nic is not None and nic.ipv6_gateway:
        block["gateway"] = nic.ipv6_gateway
    return block


def _fingerprint(key: str, name: str) -> str:
    digest = hashlib.md5(key.encode("utf-8"), usedforsecurity=False).hexdigest()
    return f"MD5:{':'.join(digest[i:i + 2] for i in range(0, 32, 2))} {name}"


def document(instance: Instance) -> Dict[str, Any]:
    hostname = instance.hostname
    zone = instance.extra("scaleway").get("zone-id",
                                          instance.availability_zone or instance.region)
    return {
        "id": instance.instance_id,
        "name": hostname.split(".")[0] if hostname else None,
        "hostname": hostname,
        "commercial_type": instance.instance_type,
        "organization": instance.project_id,
        "project": instance.project_id,
        "tags": [],
        "state_detail": "booting",
        "private_ip": instance.local_ipv4,
        "public_ip": ({"address": instance.public_ipv4, "dynamic": False, "family": "inet"}
                      if instance.public_ipv4 else None),
        "ipv6": _ipv6(instance),
        "location": {"zone_id": zone},
        "ssh_public_keys": [{"key": k.key, "fingerprint": _fingerprint(k.key, k.name)}
                            for k in instance.ssh_keys],
        "extra_networks": [],
        "timezone": "UTC",
    }


def conf(instance: Instance):
    body = json_body(document(instance))

    def respond(request: Request) -> Response:
        if parse_qs(request.query).get("format") != ["json"]:
            return Response(400, b"this fake server renders /conf?format=json only", TEXT)
        return body
    return respond


def patch_state(request: Request) -> Response:
    try:
        state = json.loads(request.body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        state = None
    if not isinstance(state, dict) or not isinstance(state.get("state_detail"), str):
        return Response(400, b"expected a JSON object with a string state_detail", TEXT)
    return json_body({"state_detail": state["state_detail"]})


def routes(instance: Instance) -> List[Route]:
    return [Route("/conf", conf(instance)),
            Route("/state", patch_state, method="PATCH",
                  required_headers={"Content-Type": "application/json"})] + [
        Route("/user_data/cloud-init", Response(body=body, content_type=BINARY))
        for body in (user_data_body(instance),) if body is not None]
