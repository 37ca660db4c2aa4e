"""Exoscale: CloudStack's metadata service at ``/1.0/meta-data/`` (docs/protocols.md "exoscale"), plain-text items, no headers. Absent instance fields answer 404 (which the agent
treats as an error on this platform).

platform-data ``exoscale``: ``public-hostname``, ``cloud-identifier`` as for CloudStack.
"""

from __future__ import annotations

from typing import List

from ..instance import Instance
from . import BINARY, Response, Route, user_data_body
from .cloudstack import meta_data_items, tree_routes

PLATFORMS = ("exoscale",)
META_DATA = "/1.0/meta-data/"


def routes(instance: Instance) -> List[Route]:
    found = tree_routes(META_DATA, meta_data_items(instance, "exoscale"))
    if instance.user_data is not None:
        found.append(Route("/1.0/user-data", Response(body=user_data_body(instance),
                                                      content_type=BINARY)))
    return found
