"""lxd, incus: the guest API LXD and Incus serve inside an instance on a unix socket
(``/dev/lxd/sock``, ``/dev/incus/sock``; providers/lxd.py). Serve it with
``cl-metadata-fake-server --platform lxd --unix-socket PATH`` (``UnixFakeServer``) and point the
agent at it with ``CL_METADATA_LXD_SOCKET=PATH``; faults work as over TCP.

- ``GET /``: ``["/1.0"]``; ``GET /1.0``: ``api_version``, ``instance_type``, ``location``,
  ``state`` (JSON).
- ``GET /1.0/meta-data``: ``#cloud-config`` then ``instance-id`` and ``local-hostname``, as LXD
  writes it.
- ``GET /1.0/config``: the URLs of the keys set; ``GET /1.0/config/KEY``: the value as given,
  404 for a key that is not set.
- keys: the user-data (``#cloud-config`` user-data, or none, gets the instance's keys as
  ``ssh_authorized_keys``) under ``cloud-init.user-data``, the network config (v2 by default)
  under ``cloud-init.network-config``.

``platform-data: {lxd: {…}}`` (both ids): ``instance-type`` (default ``container``),
``user-data-key`` and ``network-config-key`` (e.g. the older ``user.user-data``),
``network-config-version`` (1 or 2), ``config`` (more keys: name → text value).
"""

from __future__ import annotations

from typing import Dict, List

from ..instance import Instance
from . import BINARY, TEXT, Response, Route, json_body
from ._nocloud import CLOUD_CONFIG, dump, network_config, user_data

PLATFORMS = ("lxd", "incus")
NOT_FOUND = Response(404, b'{"error": "not found", "error_code": 404, "type": "error"}',
                     "application/json")


def config(instance: Instance) -> Dict[str, bytes]:
    """The instance configuration keys the guest API shows, with their values."""
    extra = instance.extra("lxd")
    keys: Dict[str, bytes] = {}
    data = user_data(instance)
    if data is not None:
        keys[extra.get("user-data-key", "cloud-init.user-data")] = data
    network = network_config(instance, int(extra.get("network-config-version", 2)))
    if network is not None:
        keys[extra.get("network-config-key", "cloud-init.network-config")] = network
    for name, value in (extra.get("config") or {}).items():
        keys[str(name)] = str(value).encode("utf-8")
    return keys


def meta_data(instance: Instance) -> bytes:
    document = {"instance-id": instance.instance_id}
    if instance.hostname:
        document["local-hostname"] = instance.hostname
    return (CLOUD_CONFIG + "\n").encode("utf-8") + dump(document)


def routes(instance: Instance) -> List[Route]:
    extra = instance.extra("lxd")
    keys = config(instance)
    about = {"api_version": "1.0", "instance_type": extra.get("instance-type", "container"),
             "location": "none", "state": "Started"}
    table = [
        Route("/", json_body(["/1.0"])),
        Route("/1.0", json_body(about)),
        Route("/1.0/meta-data", Response(body=meta_data(instance), content_type=TEXT)),
        Route("/1.0/config", json_body(sorted(f"/1.0/config/{name}" for name in keys))),
    ]
    table += [Route(f"/1.0/config/{name}", Response(body=value, content_type=BINARY))
              for name, value in keys.items()]
    # the unset keys the agent may ask for answer LXD's 404 (any other path: the server's own)
    for name in ("cloud-init.user-data", "user.user-data", "cloud-init.network-config",
                 "user.network-config"):
        if name not in keys:
            table.append(Route(f"/1.0/config/{name}", NOT_FOUND))
    return table
