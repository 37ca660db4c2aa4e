"""vmware: guestinfo keys as files (docs/protocols.md); no HTTP, no drive.

``drive_files`` gives one file per guestinfo key: ``guestinfo.metadata`` (YAML with
``instance-id``, ``local-hostname``, ``public-keys`` (a list of authorized_keys lines) and a
netplan-shaped ``network`` key built from the instance's interfaces, as cloud-init's VMware
data source documents it) and ``guestinfo.metadata.encoding``. ``platform-data: {vmware: …}``:

- ``encoding``: ``plain``, ``base64`` or ``gzip+base64`` (the default) for the whole document;
- ``network-encoding``: ``base64`` or ``gzip+base64`` writes ``network`` as a string in that
  encoding, named by the document's ``network.encoding`` (default: a mapping);
- ``user-data-key``: ``ignition`` (the default: Ignition's
  ``guestinfo.ignition.config.data``) or ``cloud-init`` (``guestinfo.userdata``) for the
  instance's user-data, base64 (``gzip+base64`` when the user gzipped it);
- ``network-kargs``: a string for Afterburn's ``guestinfo.afterburn.initrd.network-kargs``.

A test's fake ``vmware-rpctool`` (``cl_metadata.fakeserver.standins``) answers
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


USER_DATA_KEYS = {"ignition": "guestinfo.ignition.config.data",
                  "cloud-init": "guestinfo.userdata"}


def _encode(body: bytes, encoding: str, what: str) -> bytes:
    if encoding == "gzip+base64":
        return base64.b64encode(gzip.compress(body, mtime=0))
    if encoding == "base64":
        return base64.b64encode(body)
    if encoding != "plain":
        raise ValueError(f"platform-data vmware {what}: plain, base64 or gzip+base64")
    return body


def metadata(instance: Instance) -> dict:
    network = network_v2(instance) if instance.network_interfaces else None
    network_encoding = instance.extra("vmware").get("network-encoding")
    doc = {"instance-id": instance.instance_id, "local-hostname": instance.hostname,
           "public-keys": [key.key for key in instance.ssh_keys] or None, "network": network}
    if network is not None and network_encoding:
        doc["network"] = _encode(dump(network), network_encoding, "network-encoding").decode()
        doc["network.encoding"] = network_encoding
    return {key: value for key, value in doc.items() if value is not None}


def drive_files(instance: Instance) -> Dict[str, bytes]:
    extra = instance.extra("vmware")
    encoding = extra.get("encoding", "gzip+base64")
    files = {"guestinfo.metadata": _encode(dump(metadata(instance)), encoding, "encoding"),
             "guestinfo.metadata.encoding": b"" if encoding == "plain" else encoding.encode()}
    if instance.user_data is not None:  # a guestinfo value is text: base64
        key = USER_DATA_KEYS[extra.get("user-data-key", "ignition")]
        files[key] = user_data_body(instance, "base64")
        files[key + ".encoding"] = b"gzip+base64" if instance.user_data_gzip else b"base64"
    if extra.get("network-kargs"):
        files["guestinfo.afterburn.initrd.network-kargs"] = extra["network-kargs"].encode()
    return files
