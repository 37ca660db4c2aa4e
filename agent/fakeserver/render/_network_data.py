"""OpenStack ``network_data.json`` for the instance's interfaces (docs/protocols.md), shared by
the renderers that carry network configuration (the ``config-2`` drives of ibmcloud-classic,
kubevirt, openstack, nutanix and cloudstack-configdrive, and OpenStack's metadata service).

One ``phy`` link per interface (named when the interface has a name), a static ``ipv4`` and/or
``ipv6`` network with a default route via the gateway when one is given, ``ipv4_dhcp`` for an
interface without addresses, and one ``dns`` service per nameserver.
"""

from __future__ import annotations

import ipaddress

from ..instance import Instance


def netmask(address: str, prefix: int) -> str:
    """The dotted (IPv4) or colon (IPv6) mask, as Nova writes them."""
    return str(ipaddress.ip_interface(f"{address}/{prefix}").netmask)


def network_data(instance: Instance) -> dict:
    links, networks = [], []
    for index, nic in enumerate(instance.network_interfaces):
        link = {"id": f"interface{index}", "type": "phy", "ethernet_mac_address": nic.mac,
                "mtu": 1500}
        if nic.name:
            link["name"] = nic.name
        links.append(link)
        families = [("ipv4", nic.local_ipv4, nic.ipv4_prefix, nic.ipv4_gateway, "0.0.0.0"),
                    ("ipv6", nic.ipv6, nic.ipv6_prefix, nic.ipv6_gateway, "::")]
        for kind, address, prefix, gateway, anywhere in families:
            if address is None:
                continue
            routes = ([{"network": anywhere, "netmask": anywhere, "gateway": gateway}]
                      if gateway else [])
            networks.append({"id": f"network{len(networks)}", "link": link["id"], "type": kind,
                             "ip_address": address, "netmask": netmask(address, prefix),
                             "routes": routes})
        if nic.local_ipv4 is None and nic.ipv6 is None:
            networks.append({"id": f"network{len(networks)}", "link": link["id"],
                             "type": "ipv4_dhcp"})
    services = [{"type": "dns", "address": address} for address in instance.nameservers]
    return {"links": links, "networks": networks, "services": services}
