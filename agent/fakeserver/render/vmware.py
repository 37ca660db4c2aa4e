"""vmware: guestinfo keys as files (docs/protocols.md); no HTTP, no drive.

``drive_files`` gives one file per guestinfo key: ``guestinfo.metadata`` (YAML with
``instance-id``, ``local-hostname`` and a netplan-shaped ``network`` key built from the
instance's interfaces, as cloud-init's VMware datasource documents it) and
``guestinfo.metadata.encoding``. ``platform-data: {vmware: {encoding: plain|base64|gzip+base64}}``
chooses the encoding (default ``gzip+base64``). The instance's user-data goes to Ignition's
``guestinfo.ignition.config.data``, base64 (``gzip+base64`` when the user gzipped it). A
test's fake ``vmware-rpctool`` answers
``info-get <key>`` from such a directory; on a real VM set them with ``govc vm.change -e``.
"""

from __future__ import annotations

import base64
import gzip
from typing import Dict, List

from ..instance import Instance
from . import Route, user_data_body
from ._nocloud import dump, network_v2

PLATFORMS = ("vmware",)
DRIVE_LABEL = "guestinfo"  # no filesystem: only the "dir" format makes sense


def routes(instance: Instance) -> List[Route]:
    return []


def metadata(instance: Instance) -> dict:
    doc = {"instance-id": instance.instance_id, "local-hostname": instance.hostname,
           "network": network_v2(instance) if instance.network_interfaces else None}
    return {key: value for key, value in doc.items() if value is not None}


def drive_files(instance: Instance) -> Dict[str, bytes]:
    encoding = instance.extra("vmware").get("encoding", "gzip+base64")
    body = dump(metadata(instance))
    if encoding == "gzip+base64":
        body = base64.b64encode(gzip.compress(body, mtime=0))
    elif encoding == "base64":
        body = base64.b64encode(body)
    elif encoding != "plain":
        raise ValueError("platform-data vmware encoding: plain, base64 or gzip+base64")
    files = {"guestinfo.metadata": body,
             "guestinfo.metadata.encoding": b"" if encoding == "plain" else encoding.encode()}
    if instance.user_data is not None:  # Ignition's keys; a guestinfo value is text: base64
        files["guestinfo.ignition.config.data"] = user_data_body(instance, "base64")
        files["guestinfo.ignition.config.data.encoding"] = (
            b"gzip+base64" if instance.user_data_gzip else b"base64")
    return files
