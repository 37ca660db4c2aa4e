"""Vultr metadata service (docs/protocols.md "vultr"): plain text under ``/v1/``, no headers,
plus the ``/v1.json`` document. Items the instance does not have answer 404.

``platform-data: {vultr: {...}}``, optional: ``region-code`` (default the instance's region),
``instance-v2-id`` (default the instance's uuid).
"""

from __future__ import annotations

from typing import List

from ..instance import Instance, InstanceError
from . import BINARY, Response, Route, json_body, text, user_data_body

PLATFORMS = ("vultr",)
EXTRAS = ("region-code", "instance-v2-id")


def values(instance: Instance) -> dict:
    extra = dict(instance.extra("vultr"))
    for key, value in extra.items():
        if key not in EXTRAS or not isinstance(value, str):
            raise InstanceError(f"platform-data vultr: {key} is unknown or not a string; "
                                f"known: {', '.join(EXTRAS)}")
    keys = "".join(k.key + "\n" for k in instance.ssh_keys) or None
    return {
        "hostname": instance.hostname,
        "instanceid": instance.instance_id,
        "instance-v2-id": extra.get("instance-v2-id", instance.uuid),
        "region/regioncode": extra.get("region-code", instance.region),
        "public-keys": keys,
        "user-data": instance.user_data_text(),
    }


def routes(instance: Instance) -> List[Route]:
    found = values(instance)
    document = {
        "hostname": found["hostname"], "instanceid": found["instanceid"],
        "instance-v2-id": found["instance-v2-id"],
        "region": {"regioncode": found["region/regioncode"]},
        "public-keys": [k.key for k in instance.ssh_keys],
    }
    return [Route(f"/v1/{path}", text(value)) for path, value in found.items()
            if value is not None] + [Route("/v1.json", json_body(document))] + [
        Route("/user-data/user-data", Response(body=body, content_type=BINARY))  # Ignition's
        for body in (user_data_body(instance),) if body is not None]
