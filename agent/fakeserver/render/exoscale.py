"""Exoscale: CloudStack's metadata service at ``/1.0/meta-data/`` (docs/protocols.md "exoscale"), plain-text items, no headers. Absent instance fields answer 404 (which the agent
treats as an error on this platform).

platform-data ``exoscale``: ``public-hostname``, ``cloud-identifier`` as for CloudStack.
"""

from __future__ import annotations

from typing import List

from ..instance import Instance
from . import Route
from .cloudstack import meta_data_items, tree_routes

PLATFORMS = ("exoscale",)
META_DATA = "/1.0/meta-data/"


def routes(instance: Instance) -> List[Route]:
    return tree_routes(META_DATA, meta_data_items(instance, "exoscale"))
