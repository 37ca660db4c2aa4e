"""Instance descriptions that look like a given platform's machines, for ``scripts/demo``.

The bundled sample (``sample-instance.yaml``) is an OpenStack machine: ``RegionOne``, zone
``nova``, flavor ``m1.small``, a ``fa:16:3e`` MAC. Shown as an EC2 or DigitalOcean machine it
would look wrong, so this table overrides the fields each platform names its own way (ids,
regions and zones, machine types, image ids, MAC prefixes, host names). Platforms without an
entry (the OpenStack family and the rest) get the sample unchanged. Used only by the demo: the
tests keep working from the sample and their own instances.
"""

from __future__ import annotations

import copy
from typing import Any, Dict

import yaml

from .instance import SAMPLE_PATH

_EC2 = {
    "instance-id": "i-0a1b2c3d4e5f60718",
    "hostname": "ip-10-0-1-15.ec2.internal",
    "region": "us-east-1",
    "availability-zone": "us-east-1a",
    "instance-type": "t3.micro",
    "image-id": "ami-0c2b8ca1dad447f8a",
    "project-id": None,
    "mac": "0e:3f:8a:1c:5d:21",
}
_GCE = {
    "instance-id": "5417201749913470931",
    "hostname": "demo-1.us-central1-a.c.demo-project.internal",
    "local-ipv4": "10.128.0.15",
    "region": "us-central1",
    "availability-zone": "us-central1-a",
    "instance-type": "e2-medium",
    "image-id": "projects/flatcar-cloud/global/images/flatcar-stable-3815-2-0",
    "project-id": "demo-project",
    "mac": "42:01:0a:80:00:0f",
}
_AZURE = {
    "instance-id": "9f0c6e1a-5b2d-4c7e-8a31-0d4f6b2e9c58",
    "uuid": "9f0c6e1a-5b2d-4c7e-8a31-0d4f6b2e9c58",
    "hostname": "demo-1",
    "local-ipv4": "10.0.0.4",
    "region": "eastus",
    "availability-zone": "1",
    "instance-type": "Standard_B2s",
    "image-id": "kinvolk:flatcar-container-linux-free:stable:3815.2.0",
    "project-id": "7d2e8a4c-1f3b-4e6d-9c05-b8a1e2f4d6c3",
    "mac": "00:0d:3a:5e:21:7c",
}
_DIGITALOCEAN = {
    "instance-id": "378349082",
    "hostname": "demo-1",
    "local-ipv4": "10.116.0.2",
    "region": "nyc3",
    "availability-zone": None,
    "instance-type": "s-1vcpu-1gb",
    "image-id": "flatcar-stable",
    "project-id": None,
    "mac": "6a:5b:9c:1d:2e:3f",
    "platform-data": {"digitalocean": {"droplet-id": 378349082}},
}

# platform id -> the sample's fields replaced (None: the platform has no such field)
OVERRIDES: Dict[str, Dict[str, Any]] = {
    "aws": _EC2, "ec2": _EC2,
    "gcp": _GCE, "gce": _GCE,
    "azure": _AZURE, "azurestack": _AZURE,
    "digitalocean": _DIGITALOCEAN,
}


def instance_document(platform: str) -> Dict[str, Any]:
    """The sample instance as a YAML-ready mapping, with ``platform``'s look where it has one.

    The interfaces follow the machine's MAC (the first gets it, the second the next one) and
    its private address, so the network units agree with the attributes.
    """
    document = yaml.safe_load(SAMPLE_PATH.read_text(encoding="utf-8"))
    overrides = copy.deepcopy(OVERRIDES.get(platform, {}))
    document.update(overrides)
    mac = document.get("mac")
    if "mac" in overrides and mac:
        head, last = mac.rsplit(":", 1)
        for i, nic in enumerate(document.get("network-interfaces") or []):
            nic["mac"] = f"{head}:{(int(last, 16) + i) % 256:02x}"
    interfaces = document.get("network-interfaces") or []
    if "local-ipv4" in overrides and interfaces:
        interfaces[0]["local-ipv4"] = document["local-ipv4"]
        interfaces[0]["ipv4-gateway"] = document["local-ipv4"].rsplit(".", 1)[0] + ".1"
    return {key: value for key, value in document.items() if value is not None}
