"""CloudStack: the metadata service of the virtual router (docs/protocols.md "cloudstack-metadata"), plain-text items under ``/latest/meta-data/``, no headers.

Platform ``cloudstack`` (the config drive, else this service) is served by the same routes and
writes ``cloudstack-configdrive``'s drive, so one instance can be read through either source.

The agent finds this server through the DHCP server identifier; tests give it a lease file and
point the endpoint override here. Absent instance fields are absent here too (404). Exoscale's
service is CloudStack's, under another prefix (``exoscale.py`` uses :func:`meta_data_items`).

platform-data ``cloudstack-metadata`` (all optional strings):
``public-hostname`` (default: the public IPv4, as CloudStack answers),
``cloud-identifier`` (default ``CloudStack-{<project-id, else uuid, else instance-id>}``).
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional

from ..instance import Instance, InstanceError
from . import BINARY, Response, Route, cloudstack_configdrive, text, user_data_body

PLATFORMS = ("cloudstack-metadata", "cloudstack")
META_DATA = "/latest/meta-data/"
DRIVE_LABEL = cloudstack_configdrive.DRIVE_LABEL


def extra_string(instance: Instance, platform: str, key: str,
                 default: Optional[str]) -> Optional[str]:
    value: Any = instance.extra(platform).get(key, default)
    if value is not None and not isinstance(value, str):
        raise InstanceError(f"platform-data: {platform}: {key} must be a string")
    return value


def meta_data_items(instance: Instance, platform: str) -> Dict[str, Optional[str]]:
    """CloudStack's item names and this instance's values (None = not served)."""
    keys = "".join(f"{key.key}\n" for key in instance.ssh_keys) or None
    # a real zone always has an identifier: derive one when the description names no project
    identifier = f"CloudStack-{{{instance.project_id or instance.uuid or instance.instance_id}}}"
    public_hostname = extra_string(instance, platform, "public-hostname", instance.public_ipv4)
    return {
        "instance-id": instance.instance_id,
        "local-hostname": instance.hostname,
        "public-hostname": public_hostname,
        "availability-zone": instance.availability_zone,
        "public-ipv4": instance.public_ipv4,
        "local-ipv4": instance.local_ipv4,
        "service-offering": instance.instance_type,
        "cloud-identifier": extra_string(instance, platform, "cloud-identifier", identifier),
        "vm-id": instance.uuid,
        "public-keys": keys,
    }


def tree_routes(prefix: str, items: Mapping[str, Optional[str]]) -> List[Route]:
    """One text route per present item, plus the directory listing at ``prefix``."""
    present = {name: value for name, value in items.items() if value is not None}
    routes = [Route(prefix + name, text(value)) for name, value in present.items()]
    routes.append(Route(prefix, text("\n".join(present))))
    return routes


def routes(instance: Instance) -> List[Route]:
    found = tree_routes(META_DATA, meta_data_items(instance, "cloudstack-metadata"))
    if instance.user_data is not None:
        found.append(Route("/latest/user-data", Response(body=user_data_body(instance),
                                                         content_type=BINARY)))
    return found


def drive_files(instance: Instance) -> Dict[str, bytes]:
    """The config drive of platform ``cloudstack``: the one ``cloudstack-configdrive`` reads."""
    return cloudstack_configdrive.drive_files(instance)
