"""ibmcloud (VPC Gen2): a NoCloud seed on a ``cidata`` drive (docs/protocols.md); no HTTP.

``meta-data`` is ``key: value`` lines (``instance-id``, ``local-hostname`` = the first label of
the hostname); ``vendor-data`` is MIME multipart with a ``text/cloud-config`` part holding the
keys as ``ssh_authorized_keys`` next to a shell-script part; ``user-data`` is the instance's.
"""

from __future__ import annotations

from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from typing import Dict, List

from ..instance import Instance
from . import Route, user_data_body
from ._nocloud import CLOUD_CONFIG, dump

PLATFORMS = ("ibmcloud",)
DRIVE_LABEL = "cidata"
BOUNDARY = "===============cl-metadata-fake-vendor-data=="


def routes(instance: Instance) -> List[Route]:
    return []


def vendor_data(instance: Instance) -> bytes:
    message = MIMEMultipart(boundary=BOUNDARY)
    config = {"ssh_authorized_keys": [key.key for key in instance.ssh_keys]}
    parts = [(CLOUD_CONFIG + "\n" + dump(config).decode("utf-8"), "cloud-config",
              "vendor-cloud-config"),
             ("#!/bin/sh\necho vendor script\n", "x-shellscript", "vendor-script")]
    for body, subtype, filename in parts:
        part = MIMEText(body, subtype, "us-ascii")
        part.add_header("Content-Disposition", "attachment", filename=filename)
        message.attach(part)
    return message.as_bytes()


def drive_files(instance: Instance) -> Dict[str, bytes]:
    lines = [f"instance-id: {instance.instance_id}"]
    if instance.hostname:
        lines.append(f"local-hostname: {instance.hostname.split('.')[0]}")
    files = {"meta-data": ("\n".join(lines) + "\n").encode("utf-8"),
             "vendor-data": vendor_data(instance)}
    if instance.user_data is not None:
        files["user-data"] = user_data_body(instance)
    return files
