"""nutanix: the ``config-2`` drive Nutanix AHV attaches for guest customization; no HTTP.

``openstack/latest/meta_data.json`` as Nova writes it (shared with the openstack renderer),
and no ``ec2/`` tree: AHV writes none. ``openstack/latest/network_data.json`` describes the
instance's interfaces when it has any.
"""

from __future__ import annotations

from typing import Dict, List

from ..instance import Instance
from . import Route, json_document, user_data_body
from ._network_data import network_data
from .openstack import meta_data

PLATFORMS = ("nutanix",)
DRIVE_LABEL = "config-2"


def routes(instance: Instance) -> List[Route]:
    return []


def drive_files(instance: Instance) -> Dict[str, bytes]:
    files = {"openstack/latest/meta_data.json": json_document(meta_data(instance))}
    if instance.network_interfaces:
        files["openstack/latest/network_data.json"] = json_document(network_data(instance))
    if instance.user_data is not None:
        files["openstack/latest/user_data"] = user_data_body(instance)
    return files
