"""kubevirt: KubeVirt's ``cloudInitConfigDrive`` volume, a ``config-2`` drive in the OpenStack
layout (docs/protocols.md); no HTTP.

``openstack/latest/meta_data.json`` (``uuid``, ``hostname``, ``instance_type``,
``public_keys``), ``network_data.json`` from the instance's interfaces and ``user_data`` (the
instance's, as given). For KubeVirt's
``cloudInitNoCloud`` volume write a ``cidata`` drive with ``--platform nocloud``: the kubevirt
provider reads those files too.
"""

from __future__ import annotations

from typing import Dict, List

from ..instance import Instance
from . import Route, json_document, user_data_body
from ._network_data import network_data

PLATFORMS = ("kubevirt",)
DRIVE_LABEL = "config-2"


def routes(instance: Instance) -> List[Route]:
    return []


def meta_data(instance: Instance) -> dict:
    document = {
        "uuid": instance.uuid or instance.instance_id,
        "hostname": instance.hostname,
        "instance_type": instance.instance_type,
        "public_keys": {key.name: key.key for key in instance.ssh_keys},
    }
    return {key: value for key, value in document.items() if value is not None}


def drive_files(instance: Instance) -> Dict[str, bytes]:
    files = {
        "openstack/latest/meta_data.json": json_document(meta_data(instance)),
        "openstack/latest/network_data.json": json_document(network_data(instance)),
    }
    if instance.user_data is not None:
        files["openstack/latest/user_data"] = user_data_body(instance)
    return files
