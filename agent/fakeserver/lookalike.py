"""Instance descriptions that look like a given platform's machines, for ``scripts/demo``.

The bundled sample (``sample-instance.yaml``) is an OpenStack machine: ``RegionOne``, zone
``nova``, flavor ``m1.small``, a ``fa:16:3e`` MAC. Shown as an EC2 or Hetzner machine it would
look wrong, so this table overrides the fields each platform names its own way (ids, regions
and zones, machine types or plans, image ids, MAC prefixes, host names). ``None`` removes a
field the platform does not have. The OpenStack family (``openstack``, ``openstack-metadata``)
is the sample itself, and ``vagrant-virtualbox`` reads the machine it runs on, so they have no
entry. Used only by the demo: the tests keep working from the sample and their own instances.
"""

from __future__ import annotations

import copy
from typing import Any, Dict

import yaml

from .instance import SAMPLE_PATH

_EC2 = {
    "instance-id": "i-0f3e5a7c9b1d24680",
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
# Linode ids are integers (platform-data), labels short names, types g6-*/g7-*
_AKAMAI = {
    "uuid": "3a9c0f7e52b14d6a8e1f0b2c4d6e8f0a1b3c5d7e",
    "hostname": "demo-1",
    "local-ipv4": "192.168.139.15",
    "region": "us-east",
    "availability-zone": None,
    "instance-type": "g6-standard-1",
    "image-id": "linode/flatcar",
    "project-id": None,
    "mac": "f2:3c:94:4c:2d:7a",
    "platform-data": {"akamai": {"id": 52311234}},
}
# ECS: i-<region code><random>, regions cn-hangzhou, zones cn-hangzhou-<letter>, 00:16:3e MACs
_ALIYUN = {
    "instance-id": "i-bp1h2ixzp0lwg2xcjqd8",
    "hostname": "izbp1h2ixzp0lwg2xcjqd8z",
    "local-ipv4": "172.16.0.15",
    "region": "cn-hangzhou",
    "availability-zone": "cn-hangzhou-h",
    "instance-type": "ecs.g7.large",
    "image-id": "flatcar_stable_x64_20G_alibase_20240101.vhd",
    "project-id": None,
    "mac": "00:16:3e:0c:5d:21",
    "platform-data": {"aliyun": {"vpc-id": "vpc-bp1qpo0kug3a20qqe50ab"}},
}
# CloudStack names machines by UUID, zones by the operator's zone name, sizes by offering;
# guest MACs come from 02:00:xx (isolated networks) or 1e:00:xx (shared)
_CLOUDSTACK = {
    "instance-id": "0d1e2f3a-4b5c-4d6e-8f70-81a2b3c4d5e6",
    "uuid": "0d1e2f3a-4b5c-4d6e-8f70-81a2b3c4d5e6",
    "hostname": "demo-1",
    "region": None,
    "availability-zone": "zone1",
    "instance-type": "Small Instance",
    "image-id": None,
    "project-id": "b4c1a8e2-6f3d-4a7b-9c0e-1d2f3a4b5c6d",
    "mac": "02:00:4c:2d:7a:01",
}
# Exoscale: CloudStack's protocol, UUID ids, zones ch-gva-2 …, types standard.<size>
_EXOSCALE = {
    "instance-id": "6b0f3a2e-1c4d-4e5f-8a9b-0c1d2e3f4a5b",
    "uuid": "6b0f3a2e-1c4d-4e5f-8a9b-0c1d2e3f4a5b",
    "hostname": "demo-1",
    "region": None,
    "availability-zone": "ch-gva-2",
    "instance-type": "standard.small",
    "image-id": "Linux Flatcar Container Linux stable 64-bit",
    "project-id": "e1a2b3c4-d5e6-4f70-8192-a3b4c5d6e7f8",
    "mac": "06:4c:2d:00:00:15",
}
# Hetzner Cloud: integer server ids, location-dc zones (fsn1-dc14), cx/cpx/cax types
_HETZNER = {
    "instance-id": "42143291",
    "hostname": "demo-1",
    "local-ipv4": "10.0.0.2",
    "region": "eu-central",
    "availability-zone": "fsn1-dc14",
    "instance-type": "cx22",
    "image-id": "flatcar",
    "project-id": None,
    "mac": "96:00:02:4c:2d:7a",
}
# IBM Cloud VPC: <zone code>_<uuid> ids, us-south / us-south-1, <family>-<cpu>x<mem> profiles
_IBMCLOUD = {
    "instance-id": "0717_6f4b1c2d-3e5a-4b6c-9d7e-8f9a0b1c2d3e",
    "hostname": "demo-1",
    "local-ipv4": "10.240.0.4",
    "region": "us-south",
    "availability-zone": "us-south-1",
    "instance-type": "bx2-2x8",
    "image-id": "r006-8f2a1b3c-4d5e-4f6a-8b7c-9d0e1f2a3b4c",
    "project-id": None,
    "mac": "02:00:04:4c:2d:7a",
}
# IBM Cloud classic: a virtual server in a data centre (dal13), FQDN host names, 06: MACs
_IBMCLOUD_CLASSIC = {
    "instance-id": "130645231",
    "uuid": "5b7c9d1e-2f3a-4b5c-8d6e-7f8091a2b3c4",
    "hostname": "demo-1.example.cloud",
    "local-ipv4": "10.93.12.15",
    "region": None,
    "availability-zone": "dal13",
    "instance-type": "B1_2X4X25",
    "image-id": None,
    "project-id": None,
    "mac": "06:4c:2d:7a:00:15",
}
# KubeVirt: a VirtualMachineInstance (UID, name), an instancetype, no region
_KUBEVIRT = {
    "instance-id": "demo-1",
    "uuid": "c3a1e7b2-9d4f-4a6e-8b0c-2f5d7e9a1b3c",
    "hostname": "demo-1",
    "local-ipv4": "10.0.2.2",
    "region": None,
    "availability-zone": None,
    "instance-type": "u1.medium",
    "image-id": None,
    "project-id": None,
    "mac": "02:4c:2d:7a:00:15",
}
# LXD/Incus: the instance name is its host name, cloud-init's instance id a UUID, MACs from
# LXD's 00:16:3e prefix, addresses from the lxdbr0 bridge's 10.x/24
_LXD = {
    "instance-id": "6b1d3a52-8c0e-4f7a-9d21-3e5f7a9c0b14",
    "uuid": None,
    "hostname": "demo-1",
    "local-ipv4": "10.158.27.15",
    "public-ipv4": None,
    "region": None,
    "availability-zone": None,
    "instance-type": None,
    "image-id": None,
    "project-id": None,
    "mac": "00:16:3e:4c:2d:7a",
}
# cloud-init's own NoCloud example id; local QEMU/KVM MACs
_NOCLOUD = {
    "instance-id": "iid-local01",
    "hostname": "demo-1",
    "local-ipv4": "192.168.122.15",
    "region": None,
    "availability-zone": None,
    "instance-type": None,
    "image-id": None,
    "project-id": None,
    "mac": "52:54:00:4c:2d:7a",
}
# Nutanix AHV: VM UUIDs, 50:6b:8d MACs, no regions or flavors
_NUTANIX = {
    "instance-id": "8a7b6c5d-4e3f-4a1b-9c0d-e1f2a3b4c5d6",
    "uuid": "8a7b6c5d-4e3f-4a1b-9c0d-e1f2a3b4c5d6",
    "hostname": "demo-1",
    "local-ipv4": "10.42.10.15",
    "region": None,
    "availability-zone": None,
    "instance-type": None,
    "image-id": None,
    "project-id": None,
    "mac": "50:6b:8d:4c:2d:7a",
}
# OpenNebula: numeric VM ids, VM names as host names, MACs of its default 02:00 prefix followed
# by the IPv4 address (02:00:0a:00:01:0f is 10.0.1.15)
_OPENNEBULA = {
    "instance-id": "1042",
    "uuid": None,
    "hostname": "demo-1",
    "region": None,
    "availability-zone": None,
    "instance-type": None,
    "image-id": None,
    "project-id": None,
    "mac": "02:00:0a:00:01:0f",
}
# OCI: ocid1.* ids, us-phoenix-1, VM.Standard.* shapes, 02:00:17 MACs
_ORACLECLOUD = {
    "instance-id": "ocid1.instance.oc1.phx.anyhqljtniwq6syc2xdfs7hbyi4nymbm5f6ltcnqkcd3rpxvl4pha2qcwnha",
    "hostname": "demo-1",
    "local-ipv4": "10.0.0.15",
    "region": "us-phoenix-1",
    "availability-zone": None,
    "instance-type": "VM.Standard.E4.Flex",
    "image-id": "ocid1.image.oc1.phx.aaaaaaaa5gqmn2sdzvxr4wa3wkp4nqkt6ptnvxwcmhc7rkwxg5nqf4dvrtba",
    "project-id": None,
    "mac": "02:00:17:4c:2d:7a",
}
# Equinix Metal: UUID devices, plans (c3.small.x86), metro (da) and facility (da11)
_PACKET = {
    "instance-id": "7c1f2e3d-4a5b-4c6d-8e7f-9a0b1c2d3e4f",
    "uuid": "7c1f2e3d-4a5b-4c6d-8e7f-9a0b1c2d3e4f",
    "hostname": "demo-1",
    "local-ipv4": "10.70.114.131",
    "region": "da",
    "availability-zone": "da11",
    "instance-type": "c3.small.x86",
    "image-id": "flatcar_stable",
    "project-id": "2b4d6f8a-1c3e-4a5b-9d7f-0e2a4c6e8b1d",
    "mac": "b4:96:91:4c:2d:7a",
}
# IBM Power Virtual Server: UUID ids, data centres (dal12), system types
_POWERVS = {
    "instance-id": "d9e8f7a6-b5c4-4d3e-9f2a-1b0c9d8e7f6a",
    "uuid": "d9e8f7a6-b5c4-4d3e-9f2a-1b0c9d8e7f6a",
    "hostname": "demo-1",
    "local-ipv4": "192.168.100.15",
    "region": "us-south",
    "availability-zone": "dal12",
    "instance-type": "s922",
    "image-id": None,
    "project-id": None,
    "mac": "fa:f5:4c:2d:7a:20",
}
# Proxmox VE: the VM's cloud-init drive; its MACs come from Proxmox's bc:24:11 range
_PROXMOXVE = {
    "instance-id": "2f1c0e9d8b7a6f5e4d3c2b1a0f9e8d7c6b5a4f3e",
    "hostname": "demo-1.lan",
    "local-ipv4": "192.168.1.115",
    "region": None,
    "availability-zone": None,
    "instance-type": None,
    "image-id": None,
    "project-id": None,
    "mac": "bc:24:11:4c:2d:7a",
}
# a local QEMU guest: QEMU's default MAC range, no cloud fields
_QEMU = dict(_NOCLOUD, **{"instance-id": "iid-qemu-demo-1", "mac": "52:54:00:12:34:56"})
# Scaleway: UUID ids, fr-par-1 zones, DEV1-S / PLAY2 commercial types
_SCALEWAY = {
    "instance-id": "3e5a7c9e-1b2d-4f6a-8c0e-2a4c6e8a0c2e",
    "uuid": "3e5a7c9e-1b2d-4f6a-8c0e-2a4c6e8a0c2e",
    "hostname": "demo-1",
    "local-ipv4": "10.64.12.15",
    "region": "fr-par",
    "availability-zone": "fr-par-1",
    "instance-type": "DEV1-S",
    "image-id": "9c2a4b6d-8e0f-4a1b-9c3d-5e7f9a1b3c5d",
    "project-id": "f4a6c8e0-2b4d-4f6a-8c0e-2a4c6e8a0b1c",
    "mac": "de:00:00:4c:2d:7a",
}
# UpCloud: UUID servers (00…), zones such as fi-hel1, plans like 1xCPU-1GB
_UPCLOUD = {
    "instance-id": "00a1b2c3-d4e5-4f60-8172-a3b4c5d6e7f8",
    "uuid": "00a1b2c3-d4e5-4f60-8172-a3b4c5d6e7f8",
    "hostname": "demo-1",
    "local-ipv4": "10.4.2.15",
    "region": "fi-hel1",
    "availability-zone": None,
    "instance-type": "1xCPU-1GB",
    "image-id": None,
    "project-id": None,
    "mac": "ee:1b:db:4c:2d:7a",
}
# VMware: guestinfo carries little more than the id and name; VMware's 00:50:56 MACs
_VMWARE = {
    "instance-id": "vm-demo-1",
    "hostname": "demo-1",
    "local-ipv4": "192.168.10.15",
    "region": None,
    "availability-zone": None,
    "instance-type": None,
    "image-id": None,
    "project-id": None,
    "mac": "00:50:56:4c:2d:7a",
}
# Vultr: hex instance ids, a v2 UUID, region codes (ewr), vc2-* plans, 56:00:04 MACs
_VULTR = {
    "instance-id": "a7f2c9e4b1d8",
    "uuid": "4b1d8a7f-2c9e-4b1d-8a7f-2c9e4b1d8a7f",
    "hostname": "demo-1",
    "local-ipv4": "10.1.96.3",
    "region": "ewr",
    "availability-zone": None,
    "instance-type": "vc2-1c-1gb",
    "image-id": None,
    "project-id": None,
    "mac": "56:00:04:4c:2d:7a",
}

# platform id -> the sample's fields replaced (None: the platform has no such field)
OVERRIDES: Dict[str, Dict[str, Any]] = {
    "akamai": _AKAMAI,
    "aliyun": _ALIYUN,
    "aws": _EC2, "ec2": _EC2,
    "azure": _AZURE, "azurestack": _AZURE,
    "cloudstack": _CLOUDSTACK, "cloudstack-configdrive": _CLOUDSTACK,
    "cloudstack-metadata": _CLOUDSTACK,
    "digitalocean": _DIGITALOCEAN,
    "exoscale": _EXOSCALE,
    "gcp": _GCE, "gce": _GCE,
    "hetzner": _HETZNER,
    "ibmcloud": _IBMCLOUD,
    "ibmcloud-classic": _IBMCLOUD_CLASSIC,
    "incus": _LXD,
    "kubevirt": _KUBEVIRT,
    "lxd": _LXD,
    "nocloud": _NOCLOUD,
    "nutanix": _NUTANIX,
    "opennebula": _OPENNEBULA,
    "oraclecloud": _ORACLECLOUD,
    "packet": _PACKET,
    "powervs": _POWERVS,
    "proxmoxve": _PROXMOXVE,
    "qemu": _QEMU,
    "scaleway": _SCALEWAY,
    "upcloud": _UPCLOUD,
    "vmware": _VMWARE,
    "vultr": _VULTR,
}
# the platforms that keep the sample: it is an OpenStack machine, and vagrant-virtualbox reports
# the machine it runs on whatever the fake server holds
SAMPLE_PLATFORMS = ("openstack", "openstack-metadata", "vagrant-virtualbox")


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
