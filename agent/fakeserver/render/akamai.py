"""Akamai Connected Cloud (Linode) metadata service (docs/protocols.md "akamai").

``PUT /v1/token`` needs ``Metadata-Token-Expiry-Seconds`` (else 403; outside 1–86400: 400) and
answers a fresh hex token. ``GET /v1/instance``, ``/v1/network`` and ``/v1/ssh-keys`` need
``Accept: application/json`` (else 403) and a token this server issued in ``Metadata-Token``
(else 401). Addresses carry their prefix (``/32``, ``/128``).

``platform-data: {akamai: {...}}``, each optional: ``id`` (int, default 52311234),
``host-uuid`` (default the instance uuid), ``tags`` (list, default ``[]``), ``shared-ipv4``,
``ipv6-ranges``, ``ipv6-shared-ranges`` (lists, default ``[]``), ``link-local`` (default
``fe80::f03c:94ff:fe4c:2d7a/128``), ``users`` (mapping user → list of keys; default all the
instance's keys for ``root``).
"""

from __future__ import annotations

import secrets
import threading
from typing import Callable, List

from ..instance import Instance, InstanceError
from . import Request, Response, Route, json_body, text, user_data_body

PLATFORMS = ("akamai",)
TTL_HEADER = "Metadata-Token-Expiry-Seconds"
TOKEN_HEADER = "Metadata-Token"
EXTRAS = {"id": int, "host-uuid": str, "tags": list, "shared-ipv4": list, "ipv6-ranges": list,
          "ipv6-shared-ranges": list, "link-local": str, "users": dict}


def extras(instance: Instance) -> dict:
    extra = dict(instance.extra("akamai"))
    for key, value in extra.items():
        if key not in EXTRAS or not isinstance(value, EXTRAS[key]) or isinstance(value, bool):
            raise InstanceError(f"platform-data akamai: {key} is unknown or of the wrong type; "
                                f"known: {', '.join(EXTRAS)}")
    return extra


def instance_document(instance: Instance, extra: dict) -> dict:
    return {
        "id": extra.get("id", 52311234),
        "host_uuid": extra.get("host-uuid", instance.uuid),
        "label": instance.hostname.split(".")[0] if instance.hostname else None,
        "region": instance.region,
        "type": instance.instance_type,
        "tags": extra.get("tags", []),
        "specs": {"vcpus": 1, "memory": 2048, "disk": 51200, "transfer": 2000, "gpus": 0},
        "backups": {"enabled": False, "status": None},
    }


def network_document(instance: Instance, extra: dict) -> dict:
    return {
        "interfaces": [],
        "ipv4": {"public": [f"{instance.public_ipv4}/32"] if instance.public_ipv4 else [],
                 "private": [f"{instance.local_ipv4}/32"] if instance.local_ipv4 else [],
                 "shared": extra.get("shared-ipv4", [])},
        "ipv6": {"slaac": f"{instance.ipv6}/128" if instance.ipv6 else None,
                 "link_local": extra.get("link-local", "fe80::f03c:94ff:fe4c:2d7a/128"),
                 "ranges": extra.get("ipv6-ranges", []),
                 "shared_ranges": extra.get("ipv6-shared-ranges", [])},
    }


class Tokens:
    def __init__(self) -> None:
        self._issued = set()
        self._lock = threading.Lock()

    def put(self, request: Request) -> Response:
        ttl = request.headers.get(TTL_HEADER, "").strip()
        if not ttl.isdigit() or not 1 <= int(ttl) <= 86400:
            return text("Bad Request", 400)
        token = secrets.token_hex(32)
        with self._lock:
            self._issued.add(token)
        return text(token)

    def guard(self, answer: Response) -> Callable[[Request], Response]:
        def respond(request: Request) -> Response:
            with self._lock:
                known = request.headers.get(TOKEN_HEADER) in self._issued
            return answer if known else text("Unauthorized", 401)
        return respond


def routes(instance: Instance) -> List[Route]:
    extra = extras(instance)
    tokens = Tokens()
    users = extra.get("users", {"root": [k.key for k in instance.ssh_keys]})
    documents = {"/v1/instance": instance_document(instance, extra),
                 "/v1/network": network_document(instance, extra),
                 "/v1/ssh-keys": {"users": users}}
    found = [Route(path, tokens.guard(json_body(doc)),
                   required_headers={"Accept": "application/json"})
             for path, doc in documents.items()]
    found.append(Route("/v1/token", tokens.put, method="PUT", required_headers={TTL_HEADER: None}))
    if instance.user_data is not None:  # Linode keeps user-data base64-encoded
        found.append(Route("/v1/user-data",
                           tokens.guard(Response(body=user_data_body(instance, "base64")))))
    return found
