"""ibmcloud-classic: a vfat ``config-2`` drive in the OpenStack layout (docs/protocols.md);
no HTTP. Write it with ``--drive-format vfat`` as IBM does.

``openstack/latest/``: ``meta_data.json`` (Nova's document: ``uuid``, ``name``, ``hostname`` =
FQDN, ``public_keys``), ``network_data.json`` from the instance's interfaces (see
``_network_data.py``) and an empty ``vendor_data.json``.
"""

from __future__ import annotations

from typing import Dict, List

from ..instance import Instance
from . import Route, json_document, user_data_body
from ._network_data import network_data
from .openstack import meta_data

PLATFORMS = ("ibmcloud-classic",)
DRIVE_LABEL = "config-2"


def routes(instance: Instance) -> List[Route]:
    return []


def drive_files(instance: Instance) -> Dict[str, bytes]:
    files = {
        "openstack/latest/meta_data.json": json_document(meta_data(instance)),
        "openstack/latest/network_data.json": json_document(network_data(instance)),
        "openstack/latest/vendor_data.json": json_document({}),
    }
    if instance.user_data is not None:
        files["openstack/latest/user_data"] = user_data_body(instance)
    return files
