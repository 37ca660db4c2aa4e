"""DigitalOcean: the droplet document ``/metadata/v1.json`` (docs/protocols.md "digitalocean").

Interfaces come from ``network_interfaces``: a ``public`` one lists its ``public-ipv4`` as
``ipv4`` (gateway: the first host of its network) and its ``local-ipv4`` as ``anchor_ipv4``;
a private one (or a public one without a public address) lists ``local-ipv4`` as ``ipv4``.
``ipv6`` is listed with its prefix as ``cidr``. A missing gateway is the network's first host,
as DigitalOcean always names one. DNS comes from ``nameservers``.

platform-data (``digitalocean:``): ``droplet-id`` (integer, default 3164494).
"""

from __future__ import annotations

import ipaddress
from typing import List, Optional

from ..instance import Instance, NetworkInterface
from . import BINARY, Response, Route, json_body, user_data_body

PLATFORMS = ("digitalocean",)
DEFAULT_DROPLET_ID = 3164494


def _block(ip: str, prefix: int, gateway: Optional[str]) -> dict:
    network = ipaddress.ip_interface(f"{ip}/{prefix}").network
    block = {"ip_address": ip,
             "gateway": gateway or str(next(iter(network.hosts()), network.network_address))}
    if network.version == 4:
        block["netmask"] = str(network.netmask)
    else:
        block["cidr"] = prefix
    return block


def interface(nic: NetworkInterface) -> dict:
    entry = {"mac": nic.mac, "type": "public" if nic.public else "private"}
    if nic.public and nic.public_ipv4:
        entry["ipv4"] = _block(nic.public_ipv4, nic.ipv4_prefix, None)
        if nic.local_ipv4:
            entry["anchor_ipv4"] = _block(nic.local_ipv4, nic.ipv4_prefix, nic.ipv4_gateway)
    elif nic.local_ipv4:
        entry["ipv4"] = _block(nic.local_ipv4, nic.ipv4_prefix, nic.ipv4_gateway)
    if nic.ipv6:
        entry["ipv6"] = _block(nic.ipv6, nic.ipv6_prefix, nic.ipv6_gateway)
    return entry


def document(instance: Instance) -> dict:
    public: List[dict] = []
    private: List[dict] = []
    for nic in instance.network_interfaces:
        (public if nic.public else private).append(interface(nic))
    doc = {
        "droplet_id": instance.extra("digitalocean").get("droplet-id", DEFAULT_DROPLET_ID),
        "hostname": instance.hostname,
        "region": instance.region,
        "public_keys": [key.key for key in instance.ssh_keys],
        "dns": {"nameservers": list(instance.nameservers)},
        "interfaces": {"public": public, "private": private},
        "floating_ip": {"ipv4": {"active": False}},
        "tags": [],
        "features": {"dhcp_enabled": False},
        "user_data": instance.user_data_text(),
    }
    return {key: value for key, value in doc.items() if value is not None}


def routes(instance: Instance) -> List[Route]:
    found = [Route("/metadata/v1.json", json_body(document(instance)))]
    if instance.user_data is not None:  # Ignition's source: the bytes as given
        found.append(Route("/metadata/v1/user-data",
                           Response(body=user_data_body(instance), content_type=BINARY)))
    return found
