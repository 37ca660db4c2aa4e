"""Google Compute Engine metadata server for the ids ``gcp`` and ``gce`` (docs/protocols.md "gcp").

Every request needs ``Metadata-Flavor: Google`` (else 403) and every answer of this platform,
404s for absent items included, carries ``Metadata-Flavor: Google`` as the real server does.
Instance and project attributes the instance does not have answer 404 (with the header).

``platform-data: {gcp: {...}}`` (read for ``gce`` too), each optional:
``instance-ssh-keys`` (list of ``user:key`` lines; default: the instance's keys as
``<name>:<key>``), ``instance-sshKeys``, ``project-ssh-keys``, ``project-sshKeys`` (lists of
lines; default absent), ``block-project-ssh-keys`` (string, default absent),
``numeric-project-id`` (default ``123456789012``), ``numeric-id`` (default
``5417201749913470931``).
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Callable, Dict, List, Optional
from urllib.parse import parse_qs

from ..instance import Instance, InstanceError
from . import BINARY, JSON, Request, Response, Route, TEXT, user_data_body

PLATFORMS = ("gcp", "gce")
BASE = "/computeMetadata/v1/"
FLAVOR = ("Metadata-Flavor", "Google")
HEADERS = (FLAVOR, ("Server", "Metadata Server for VM"))
KEY_LISTS = {"instance-ssh-keys": "instance/attributes/ssh-keys",
             "instance-sshKeys": "instance/attributes/sshKeys",
             "project-ssh-keys": "project/attributes/ssh-keys",
             "project-sshKeys": "project/attributes/sshKeys"}
STRINGS = ("block-project-ssh-keys", "numeric-project-id", "numeric-id")
DIRECTORIES = ("instance/attributes/", "project/attributes/")
DEFAULT_HANG = 300  # seconds a long poll without timeout_sec is held (a test never waits it out)


def extras(instance: Instance) -> dict:
    extra = dict(instance.extra("gcp"))
    for key, value in extra.items():
        ok = (key in KEY_LISTS and isinstance(value, list)
              and all(isinstance(line, str) for line in value)) \
            or (key in STRINGS and isinstance(value, str))
        if not ok:
            raise InstanceError(f"platform-data gcp: {key} is unknown or of the wrong type; "
                                f"known: lists {', '.join(KEY_LISTS)}, strings "
                                f"{', '.join(STRINGS)}")
    return extra


def answer(value: Optional[str]) -> Response:
    if value is None:
        return Response(404, b"Not Found", TEXT, HEADERS)
    return Response(200, value.encode("utf-8"), TEXT, HEADERS)


def values(instance: Instance) -> Dict[str, Optional[str]]:
    """Path under BASE -> value; None = the instance has none (404)."""
    extra = extras(instance)
    project = extra.get("numeric-project-id", "123456789012")
    zone = instance.availability_zone
    found: Dict[str, Optional[str]] = {
        "instance/id": extra.get("numeric-id", "5417201749913470931"),
        "instance/hostname": instance.hostname,
        "instance/name": instance.hostname.split(".")[0] if instance.hostname else None,
        "instance/zone": f"projects/{project}/zones/{zone}" if zone else None,
        "instance/machine-type": (f"projects/{project}/machineTypes/{instance.instance_type}"
                                  if instance.instance_type else None),
        "instance/image": instance.image_id,
        "instance/network-interfaces/0/ip": instance.local_ipv4,
        "instance/network-interfaces/0/mac": instance.mac,
        "instance/network-interfaces/0/access-configs/0/external-ip": instance.public_ipv4,
        "instance/attributes/block-project-ssh-keys": extra.get("block-project-ssh-keys"),
        "project/numeric-project-id": project,
    }
    default_keys = [f"{key.name}:{key.key}" for key in instance.ssh_keys] or None
    for name, path in KEY_LISTS.items():
        lines = extra.get(name, default_keys if name == "instance-ssh-keys" else None)
        found[path] = "\n".join(lines) + "\n" if lines else None
    return found


def routes(instance: Instance) -> List[Route]:
    found = [Route(BASE + path, answer(value), required_headers={FLAVOR[0]: FLAVOR[1]})
             for path, value in values(instance).items()]
    body = user_data_body(instance)  # served as given (an attribute is text on real GCE)
    found.append(Route(BASE + "instance/attributes/user-data",
                       answer(None) if body is None else ok(body, BINARY),
                       required_headers={FLAVOR[0]: FLAVOR[1]}))
    served = values(instance)
    for prefix in DIRECTORIES:
        entries = {path[len(prefix):]: value for path, value in served.items()
                   if path.startswith(prefix) and value is not None}
        if prefix == "instance/attributes/" and body is not None:
            entries["user-data"] = body.decode("utf-8", "replace")
        found.append(Route(BASE + prefix, directory(dict(sorted(entries.items()))),
                           required_headers={FLAVOR[0]: FLAVOR[1]}))
    return found
