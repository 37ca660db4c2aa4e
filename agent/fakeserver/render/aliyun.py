"""Alibaba Cloud ECS metadata service (docs/protocols.md "aliyun"): plain text under
``/latest/meta-data/``, no headers; items the instance does not have answer 404. Keys: the
``public-keys/`` listing (``0/``, ``1/`` …; also served without the slash) and
``public-keys/<i>/openssh-key``.

``platform-data: {aliyun: {...}}``, optional strings: ``eipv4`` (default absent: no elastic
IP), ``vpc-id`` (default ``vpc-bp1fakevpc0000000000``), ``zone-id`` (default the instance's
availability zone), ``region-id`` (default the instance's region).
"""

from __future__ import annotations

from typing import List

from ..instance import Instance, InstanceError
from . import BINARY, Response, Route, text, user_data_body

PLATFORMS = ("aliyun",)
BASE = "/latest/meta-data/"
EXTRAS = ("eipv4", "vpc-id", "zone-id", "region-id")


def values(instance: Instance) -> dict:
    extra = dict(instance.extra("aliyun"))
    for key, value in extra.items():
        if key not in EXTRAS or not isinstance(value, str):
            raise InstanceError(f"platform-data aliyun: {key} is unknown or not a string; "
                                f"known: {', '.join(EXTRAS)}")
    found = {
        "eipv4": extra.get("eipv4"),
        "hostname": instance.hostname,
        "image-id": instance.image_id,
        "instance-id": instance.instance_id,
        "instance/instance-type": instance.instance_type,
        "private-ipv4": instance.local_ipv4,
        "public-ipv4": instance.public_ipv4,
        "region-id": extra.get("region-id", instance.region),
        "vpc-id": extra.get("vpc-id", "vpc-bp1fakevpc0000000000"),
        "zone-id": extra.get("zone-id", instance.availability_zone),
        "mac": instance.mac,
    }
    if instance.ssh_keys:
        listing = "".join(f"{i}/\n" for i in range(len(instance.ssh_keys)))
        found["public-keys/"] = found["public-keys"] = listing
        for i, key in enumerate(instance.ssh_keys):
            found[f"public-keys/{i}/openssh-key"] = key.key + "\n"
    return found


def routes(instance: Instance) -> List[Route]:
    found = [Route(BASE + path, text(value)) for path, value in values(instance).items()
             if value is not None]
    if instance.user_data is not None:
        found.append(Route("/latest/user-data", Response(body=user_data_body(instance),
                                                         content_type=BINARY)))
    return found
