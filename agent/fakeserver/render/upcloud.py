"""UpCloud metadata service (docs/protocols.md "upcloud"): plain text under ``/metadata/v1/``
(underscores in the paths), no headers, plus the ``/metadata/v1.json`` document. Items the
instance does not have answer 404.

``platform-data: {upcloud: {...}}``, optional: ``instance-id`` (default the instance's uuid, as
UpCloud ids are UUIDs; else its instance id), ``region`` (default the instance's region).
"""

from __future__ import annotations

from typing import List

from ..instance import Instance, InstanceError
from . import BINARY, Response, Route, json_body, text, user_data_body

PLATFORMS = ("upcloud",)
EXTRAS = ("instance-id", "region")


def values(instance: Instance) -> dict:
    extra = dict(instance.extra("upcloud"))
    for key, value in extra.items():
        if key not in EXTRAS or not isinstance(value, str):
            raise InstanceError(f"platform-data upcloud: {key} is unknown or not a string; "
                                f"known: {', '.join(EXTRAS)}")
    return {
        "hostname": instance.hostname,
        "instance_id": extra.get("instance-id", instance.uuid or instance.instance_id),
        "region": extra.get("region", instance.region),
        "public_keys": "".join(k.key + "\n" for k in instance.ssh_keys) or None,
    }


def routes(instance: Instance) -> List[Route]:
    found = values(instance)
    document = {"cloud_name": "upcloud", "hostname": found["hostname"],
                "instance_id": found["instance_id"], "region": found["region"],
                "public_keys": [k.key for k in instance.ssh_keys]}
    return [Route(f"/metadata/v1/{path}", text(value)) for path, value in found.items()
            if value is not None] + [Route("/metadata/v1.json", json_body(document))] + [
        Route("/metadata/v1/user_data", Response(body=body, content_type=BINARY))
        for body in (user_data_body(instance),) if body is not None]
