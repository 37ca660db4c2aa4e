"""OpenStack: the Nova metadata service (EC2-compatible tree + ``/openstack``) and the
``config-2`` config drive (docs/protocols.md "openstack-metadata").

Absent instance fields are absent here too: the EC2 path is not served (404) and the JSON documents
leave the key out, except the drive's ``ec2/latest/meta-data.json`` ``public-ipv4``, which a
real drive writes as ``""`` when there is no floating IP. ``openstack/latest/network_data.json``
(service and drive) describes the instance's interfaces when it has any (``_network_data.py``).
"""

from __future__ import annotations

from typing import Dict, List

from ..instance import Instance
from . import BINARY, Response, Route, json_body, json_document, text, user_data_body
from ._network_data import network_data

PLATFORMS = ("openstack", "openstack-metadata")
DRIVE_LABEL = "config-2"

META_DATA_VERSIONS = ("2012-08-10", "latest")
EC2_SCALARS = {  # EC2 meta-data path -> Instance attribute
    "hostname": "hostname",
    "instance-id": "instance_id",
    "instance-type": "instance_type",
    "local-ipv4": "local_ipv4",
    "public-ipv4": "public_ipv4",
}


def meta_data(instance: Instance) -> dict:
    """The Nova ``meta_data.json`` document (service and drive share the schema)."""
    doc = {
        "uuid": instance.uuid,
        "hostname": instance.hostname,
        "name": instance.hostname.split(".")[0] if instance.hostname else None,
        "availability_zone": instance.availability_zone,
        "project_id": instance.project_id,
        "launch_index": 0,
        "public_keys": {k.name: k.key + "\n" for k in instance.ssh_keys},
        "keys": [{"name": k.name, "type": "ssh", "data": k.key + "\n"} for k in instance.ssh_keys],
        "meta": {},
    }
    return {key: value for key, value in doc.items() if value is not None}


def routes(instance: Instance) -> List[Route]:
    found: List[Route] = []
    for path, attribute in EC2_SCALARS.items():
        value = getattr(instance, attribute)
        if value is not None:
            found.append(Route(f"/latest/meta-data/{path}", text(value)))

    if instance.ssh_keys:
        index = "\n".join(f"{i}={k.name}" for i, k in enumerate(instance.ssh_keys))
        found.append(Route("/latest/meta-data/public-keys", text(index)))
        for i, key in enumerate(instance.ssh_keys):
            found.append(Route(f"/latest/meta-data/public-keys/{i}/openssh-key", text(key.key + "\n")))

    document = json_body(meta_data(instance))
    for version in META_DATA_VERSIONS:
        found.append(Route(f"/openstack/{version}/meta_data.json", document))
    found.append(Route("/openstack", text("\n".join(META_DATA_VERSIONS))))
    if instance.network_interfaces:
        found.append(Route("/openstack/latest/network_data.json",
                           json_body(network_data(instance))))
    if instance.user_data is not None:
        found.append(Route("/openstack/latest/user_data",
                           Response(body=user_data_body(instance), content_type=BINARY)))
    return found


def ec2_meta_data(instance: Instance) -> dict:
    doc = {
        "instance-id": instance.instance_id,
        "instance-type": instance.instance_type,
        "local-ipv4": instance.local_ipv4,
        "public-ipv4": instance.public_ipv4 or "",
        "hostname": instance.hostname,
        "placement": ({"availability-zone": instance.availability_zone}
                      if instance.availability_zone else None),
    }
    return {key: value for key, value in doc.items() if value is not None}


def drive_files(instance: Instance) -> Dict[str, bytes]:
    files = {
        "openstack/latest/meta_data.json": json_document(meta_data(instance)),
        "ec2/latest/meta-data.json": json_document(ec2_meta_data(instance)),
    }
    if instance.network_interfaces:
        files["openstack/latest/network_data.json"] = json_document(network_data(instance))
    if instance.user_data is not None:
        files["openstack/latest/user_data"] = user_data_body(instance)
    return files
