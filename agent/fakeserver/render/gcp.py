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

Every 200 answer carries an ``ETag`` (a digest of its body). The attribute directories
``instance/attributes/`` and ``project/attributes/`` list their names, or with
``?recursive=true`` answer one JSON object of names and values. ``?wait_for_change=true`` is the
metadata server's long poll (``hold``): with a ``last_etag`` other than the current ETag the
answer comes at once; otherwise it is held until the ETag changes (the server's instance is
replaced: ``Dispatcher.set_instance``) or ``timeout_sec`` seconds pass, then the current value.
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


def etag(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()[:16]


def answer(value: Optional[str]) -> Response:
    if value is None:
        return Response(404, b"Not Found", TEXT, HEADERS)
    return ok(value.encode("utf-8"))


def ok(body: bytes, content_type: str = TEXT) -> Response:
    return Response(200, body, content_type, HEADERS + (("ETag", etag(body)),))


def directory(entries: Dict[str, str]) -> Callable[[Request], Response]:
    """An attribute directory: its names, or (``recursive=true``) names and values as JSON."""
    listing = ok("".join(name + "\n" for name in entries).encode("utf-8"))
    document = ok(json.dumps(entries, sort_keys=True).encode("utf-8"), JSON)

    def respond(request: Request) -> Response:
        recursive = parse_qs(request.query).get("recursive", [""])[0].lower() == "true"
        return document if recursive else listing

    return respond


def hold(request: Request, response: Response,
         next_answer: Callable[[float], Optional[Response]]) -> Response:
    """``wait_for_change=true``: the answer once its ETag is not ``last_etag`` (or, without
    one, not the ETag it had when asked), else the current one after ``timeout_sec``."""
    query = parse_qs(request.query)
    if query.get("wait_for_change", [""])[0].lower() != "true" or response.status != 200:
        return response
    try:
        hang = min(float(query.get("timeout_sec", [DEFAULT_HANG])[0]), 3600.0)
    except ValueError:
        return Response(400, b"Bad Request: timeout_sec", TEXT, HEADERS)
    current = dict(response.headers).get("ETag")
    baseline = query.get("last_etag", [current])[0]
    if baseline != current:
        return response
    end = time.monotonic() + hang
    while (left := end - time.monotonic()) > 0:
        later = next_answer(left)
        if later is None:
            break
        response = later
        if response.status != 200 or dict(response.headers).get("ETag") != baseline:
            return response
    return response


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
