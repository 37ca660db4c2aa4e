"""powervs: an OpenStack-layout ``config-2`` drive (docs/protocols.md); no HTTP.

``openstack/latest/meta_data.json`` as Nova writes it (``uuid``, ``name`` = first label of the
hostname, ``hostname``, ``public_keys`` …), shared with the openstack renderer.
"""

from __future__ import annotations

from typing import Dict, List

from ..instance import Instance
from . import Route, json_document, user_data_body
from .openstack import meta_data

PLATFORMS = ("powervs",)
DRIVE_LABEL = "config-2"


def routes(instance: Instance) -> List[Route]:
    return []


def drive_files(instance: Instance) -> Dict[str, bytes]:
    files = {"openstack/latest/meta_data.json": json_document(meta_data(instance))}
    if instance.user_data is not None:
        files["openstack/latest/user_data"] = user_data_body(instance)
    return files
