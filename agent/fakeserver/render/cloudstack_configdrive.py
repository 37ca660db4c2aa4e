"""cloudstack-configdrive: CloudStack's ``config-2`` drive (docs/protocols.md); no HTTP.

One text file per item under ``cloudstack/metadata/``, each ending in a newline as CloudStack
writes them: ``availability_zone.txt``, ``cloud_identifier.txt``
(``platform-data: {cloudstack-configdrive: {cloud-identifier: …}}``, default
``CloudStack-{<project-id>}``), ``instance_id.txt``, ``local_hostname.txt`` (first label of the
hostname), ``service_offering.txt`` (instance type), ``vm_id.txt`` (uuid), ``public_keys.txt``;
``cloudstack/userdata/user_data.txt`` when the instance has user-data, and
``openstack/latest/network_data.json`` when it has interfaces. An absent instance field leaves
its file out.
"""

from __future__ import annotations

from typing import Dict, List, Optional

from ..instance import Instance
from . import Route, json_document, user_data_body
from ._network_data import network_data

PLATFORMS = ("cloudstack-configdrive",)
DRIVE_LABEL = "config-2"
METADATA_DIR = "cloudstack/metadata/"


def routes(instance: Instance) -> List[Route]:
    return []


def _values(instance: Instance) -> Dict[str, Optional[str]]:
    extra = instance.extra("cloudstack-configdrive")
    default_identifier = f"CloudStack-{{{instance.project_id}}}" if instance.project_id else None
    return {
        "availability_zone.txt": instance.availability_zone,
        "cloud_identifier.txt": extra.get("cloud-identifier", default_identifier),
        "instance_id.txt": instance.instance_id,
        "local_hostname.txt": instance.hostname.split(".")[0] if instance.hostname else None,
        "service_offering.txt": instance.instance_type,
        "vm_id.txt": instance.uuid,
        "public_keys.txt": "\n".join(key.key for key in instance.ssh_keys) or None,
    }


def drive_files(instance: Instance) -> Dict[str, bytes]:
    files = {METADATA_DIR + name: (value + "\n").encode("utf-8")
             for name, value in _values(instance).items() if value is not None}
    if instance.user_data is not None:
        files["cloudstack/userdata/user_data.txt"] = user_data_body(instance)
    if instance.network_interfaces:
        files["openstack/latest/network_data.json"] = json_document(network_data(instance))
    return files
