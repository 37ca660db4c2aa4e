"""NoCloud seed files (cloud-init's ``cidata`` drive, docs/protocols.md) from the instance,
shared by the nocloud, proxmoxve and ibmcloud renderers.

- ``meta-data``: ``instance-id``, ``local-hostname``; ``public-keys`` only when the user-data
  cannot carry them (it is not a ``#cloud-config`` document).
- ``user-data``: the instance's user-data; a ``#cloud-config`` one (or none at all) gets the
  keys as ``ssh_authorized_keys``.
- ``network-config``: cloud-init network config v1 (``physical`` + ``nameserver``, Proxmox
  style: address + netmask) or v2 (netplan ``ethernets`` matched by MAC with ``set-name``).
"""

from __future__ import annotations

from typing import Dict, Optional

import yaml

from ..instance import Instance
from ._network_data import netmask

CLOUD_CONFIG = "#cloud-config"


def dump(document: object) -> bytes:
    return yaml.safe_dump(document, default_flow_style=False, sort_keys=False,
                          width=4096).encode("utf-8")


def keys_in_user_data(instance: Instance) -> bool:
    """Whether the user-data is a ``#cloud-config`` document (or absent): other user-data,
    binary or gzip-compressed included, is served exactly as given."""
    text = instance.user_data_text()
    return instance.user_data is None or (text is not None and text.startswith(CLOUD_CONFIG))


def meta_data(instance: Instance) -> bytes:
    document = {"instance-id": instance.instance_id}
    if instance.hostname:
        document["local-hostname"] = instance.hostname
    if instance.ssh_keys and not keys_in_user_data(instance):
        document["public-keys"] = [key.key for key in instance.ssh_keys]
    return dump(document)


def user_data(instance: Instance) -> Optional[bytes]:
    if not keys_in_user_data(instance):
        return instance.user_data_bytes()
    config = yaml.safe_load(instance.user_data or "") or {}
    if not isinstance(config, dict):
        raise ValueError("the instance's #cloud-config user-data is not a mapping")
    if instance.ssh_keys:
        config["ssh_authorized_keys"] = [key.key for key in instance.ssh_keys]
    if not config and instance.user_data is None:
        return None
    return (CLOUD_CONFIG + "\n").encode("utf-8") + dump(config)


def network_config(instance: Instance, version: int) -> Optional[bytes]:
    if not instance.network_interfaces:
        return None
    return dump(network_v1(instance) if version == 1 else network_v2(instance))


def network_v1(instance: Instance) -> dict:
    config = []
    for nic in instance.network_interfaces:
        subnets = []
        if nic.local_ipv4:
            subnets.append({"type": "static", "address": nic.local_ipv4,
                            "netmask": netmask(nic.local_ipv4, nic.ipv4_prefix)})
            if nic.ipv4_gateway:
                subnets[-1]["gateway"] = nic.ipv4_gateway
        if nic.ipv6:
            subnets.append({"type": "static6", "address": f"{nic.ipv6}/{nic.ipv6_prefix}"})
            if nic.ipv6_gateway:
                subnets[-1]["gateway"] = nic.ipv6_gateway
        entry = {"type": "physical", "name": nic.name or f"eth{len(config)}",
                 "mac_address": nic.mac, "subnets": subnets or [{"type": "dhcp"}]}
        config.append(entry)
    if instance.nameservers:
        config.append({"type": "nameserver", "address": list(instance.nameservers)})
    return {"version": 1, "config": config}


def network_v2(instance: Instance) -> dict:
    ethernets = {}
    for index, nic in enumerate(instance.network_interfaces):
        name = nic.name or f"eth{index}"
        entry: dict = {"match": {"macaddress": nic.mac}, "set-name": name}
        addresses = []
        if nic.local_ipv4:
            addresses.append(f"{nic.local_ipv4}/{nic.ipv4_prefix}")
        if nic.ipv6:
            addresses.append(f"{nic.ipv6}/{nic.ipv6_prefix}")
        if addresses:
            entry["addresses"] = addresses
        else:
            entry["dhcp4"] = True
        routes = [{"to": "default", "via": gateway}
                  for gateway in (nic.ipv4_gateway, nic.ipv6_gateway) if gateway]
        if routes:
            entry["routes"] = routes
        if instance.nameservers:
            entry["nameservers"] = {"addresses": list(instance.nameservers)}
        ethernets[name] = entry
    return {"version": 2, "ethernets": ethernets}


def seed_files(instance: Instance, *, network_version: int = 2) -> Dict[str, bytes]:
    """``meta-data``, and ``user-data`` / ``network-config`` when the instance has them."""
    files = {"meta-data": meta_data(instance)}
    for name, content in (("user-data", user_data(instance)),
                          ("network-config", network_config(instance, network_version))):
        if content is not None:
            files[name] = content
    return files
