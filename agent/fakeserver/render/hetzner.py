"""Hetzner Cloud: YAML documents under ``/hetzner/v1/metadata`` (docs/protocols.md "hetzner").

- ``/hetzner/v1/metadata``: the root mapping (``instance-id`` as an integer when it is one),
  including ``network-config``; the scalar items also have their own paths.
- ``…/private-networks``: one entry per non-public NIC with a ``local-ipv4``.
- ``…/network-config``: cloud-init network config v1 with one ``physical`` entry per public
  NIC: a ``dhcp`` subnet for IPv4, a ``static`` IPv6 subnet (gateway ``ipv6-gateway``, else
  Hetzner's ``fe80::1``) carrying ``nameservers``.
- ``…/public-keys``: a JSON list; ``/hetzner/v1/userdata`` when the instance has user-data.

platform-data (``hetzner:``): ``network-id`` (integer, default 4124728).
"""

from __future__ import annotations

import ipaddress
from typing import Any, Dict, List

import yaml

from ..instance import Instance
from . import BINARY, Response, Route, json_body, text, user_data_body

PLATFORMS = ("hetzner",)
BASE = "/hetzner/v1/metadata"
DEFAULT_IPV6_GATEWAY = "fe80::1"
DEFAULT_NETWORK_ID = 4124728


def yaml_body(value: Any) -> Response:
    return text(yaml.safe_dump(value, default_flow_style=False, sort_keys=True))


def network_config(instance: Instance) -> Dict[str, Any]:
    entries = []
    for i, nic in enumerate(instance.network_interfaces):
        if not nic.public:
            continue
        subnets: List[Dict[str, Any]] = []
        if nic.local_ipv4 or nic.public_ipv4:
            subnets.append({"ipv4": True, "type": "dhcp"})
        if nic.ipv6:
            subnets.append({"ipv6": True, "type": "static",
                            "address": f"{nic.ipv6}/{nic.ipv6_prefix}",
                            "gateway": nic.ipv6_gateway or DEFAULT_IPV6_GATEWAY})
        if subnets and instance.nameservers:
            subnets[-1]["dns_nameservers"] = list(instance.nameservers)
        entries.append({"type": "physical", "name": nic.name or f"eth{i}",
                        "mac_address": nic.mac, "subnets": subnets})
    return {"version": 1, "config": entries}


def private_networks(instance: Instance) -> List[Dict[str, Any]]:
    network_id = instance.extra("hetzner").get("network-id", DEFAULT_NETWORK_ID)
    networks = []
    private = [nic for nic in instance.network_interfaces if not nic.public and nic.local_ipv4]
    for i, nic in enumerate(private):
        subnet = ipaddress.ip_interface(f"{nic.local_ipv4}/{nic.ipv4_prefix}").network
        networks.append({
            "ip": nic.local_ipv4, "alias_ips": [], "interface_num": i + 1,
            "mac_address": nic.mac, "network_id": network_id + i,
            "network_name": f"network-{i + 1}", "network": str(subnet), "subnet": str(subnet),
            "gateway": nic.ipv4_gateway or str(next(subnet.hosts())),
        })
    return networks


def root(instance: Instance) -> Dict[str, Any]:
    doc = {
        "availability-zone": instance.availability_zone,
        "hostname": instance.hostname,
        "instance-id": (int(instance.instance_id) if instance.instance_id.isdigit()
                        else instance.instance_id),
        "local-ipv4": "",
        "public-ipv4": instance.public_ipv4,
        "region": instance.region,
        "public-keys": [key.key for key in instance.ssh_keys],
        "vendor_data": "",
        "network-config": network_config(instance),
    }
    return {key: value for key, value in doc.items() if value is not None}


def routes(instance: Instance) -> List[Route]:
    doc = root(instance)
    found = [
        Route(BASE, yaml_body(doc)),
        Route(BASE + "/private-networks", yaml_body(private_networks(instance))),
        Route(BASE + "/network-config", yaml_body(doc["network-config"])),
        Route(BASE + "/public-keys", json_body(doc["public-keys"])),
    ]
    for key in ("hostname", "instance-id", "public-ipv4", "region", "availability-zone"):
        if key in doc:
            found.append(Route(f"{BASE}/{key}", text(str(doc[key]))))
    if instance.user_data is not None:
        found.append(Route("/hetzner/v1/userdata", Response(body=user_data_body(instance),
                                                            content_type=BINARY)))
    return found
