"""Interface descriptions every network writer is tested with (networkd, netplan,
NetworkManager), and values that must never reach any of their files.

Each fixture is ``(interfaces, netdevs)`` as a provider hands them over; the writers' tests hold
each stack's exact files for them, and tests/test_network_tools.py feeds every one to the real
tools (``netplan generate``, NetworkManager's keyfile reader).
"""

from cl_metadata.model import BondOptions, BridgeOptions, NetworkInterface, Route, VirtualNetDev

LACP = BondOptions(mode="802.3ad", lacp_rate="fast")

MAC_CANONICAL = ([NetworkInterface(
    mac="FA:16:3E:4C:2D:7A", nameservers=("192.0.2.53", "2001:DB8:0::53"),
    addresses=("203.0.113.25/24", "2001:db8:1:2:0:0:0:15/64"),
    routes=(Route("203.0.113.25/24", "203.0.113.1"), Route("0.0.0.0/0", "203.0.113.1"),
            Route("::/0", "2001:db8:1:2::1")))], [])

BOND_AND_UNMANAGED = ([
    NetworkInterface(mac="0c:c4:7a:e1:3d:d0", bond="bond0"),
    NetworkInterface(mac="0c:c4:7a:e1:3d:d1", unmanaged=True),
    NetworkInterface(name="bond0", priority=5, addresses=("10.0.0.1/31",),
                     routes=(Route("10.0.0.0/8", "10.0.0.0"),)),
], [VirtualNetDev(name="bond0", kind="bond", mac="0c:c4:7a:e1:3d:d0", priority=5, bond=LACP)])

NAME_WITH_DHCP = ([NetworkInterface(name="eth0", priority=20, dhcp="ipv4",
                                    addresses=("2001:db8::15/64",),
                                    routes=(Route("::/0", "fe80::1"),))], [])

NAME_AND_MAC = ([NetworkInterface(name="eth0", mac="FA:16:3E:4C:2D:7A", priority=20,
                                  dhcp="yes")], [])

BOND_BRIDGE_VLAN = ([
    NetworkInterface(name="eth0", mac="00:11:22:33:44:55", bond="bond0"),
    NetworkInterface(name="eth1", mac="00:11:22:33:44:56", bond="bond0"),
    NetworkInterface(name="eth2", bridge="br0", vlans=("vlan100",)),
    NetworkInterface(name="bond0", priority=5, vlans=("bond0.200",), dhcp="ipv6"),
    NetworkInterface(name="bond0.200", priority=5, addresses=("192.168.200.10/24",)),
    NetworkInterface(name="vlan100", priority=5, bridge="br0"),
    NetworkInterface(name="br0", priority=5, addresses=("172.16.1.10/24",),
                     routes=(Route("0.0.0.0/0", "172.16.1.1"),), nameservers=("1.1.1.1",)),
], [
    VirtualNetDev(name="bond0", kind="bond", mac="00:11:22:33:44:77", bond=BondOptions(
        mode="802.3ad", transmit_hash_policy="layer2+3", lacp_rate="fast",
        ad_select="bandwidth", mii_monitor_ms=100, up_delay_ms=2000, down_delay_ms=0,
        min_links=1)),
    VirtualNetDev(name="bond0.200", kind="vlan", vlan_id=200),
    VirtualNetDev(name="vlan100", kind="vlan", vlan_id=100, mac="00:11:22:33:44:66"),
    VirtualNetDev(name="br0", kind="bridge", bridge=BridgeOptions(
        stp=True, priority=2048, forward_delay_ms=4000, hello_time_ms=2000,
        max_age_ms=20000, ageing_time_ms=300000)),
    VirtualNetDev(name="br1", kind="bridge", bridge=BridgeOptions(stp=False)),
    VirtualNetDev(name="bond1", kind="bond"),  # the driver's defaults: no settings
])

ROUTE_GIVEN_TWICE = ([NetworkInterface(name="eth0", routes=(
    Route("10.0.0.0/8", "10.1.0.1"), Route("10.0.0.1/8", "10.1.0.1"),
    Route("::/0", "2001:db8::1"), Route("::0/0", "2001:DB8::1")))], [])

# a VLAN on a NIC matched by MAC (NetworkManager names the parent by its profile's uuid), the
# shape OpenStack's network_data.json gives for a VLAN on a physical link
VLAN_ON_A_MAC = ([
    NetworkInterface(mac="fa:16:3e:00:00:01", vlans=("vlan602",)),
    NetworkInterface(name="vlan602", priority=5, addresses=("2.2.2.13/29",),
                     routes=(Route("0.0.0.0/0", "2.2.2.9"),), nameservers=("1.1.1.4",)),
], [VirtualNetDev(name="vlan602", kind="vlan", vlan_id=602)])

# four interfaces as a cloud describes a server: two NICs bonded, a VLAN on the bond, and a
# third NIC with DHCP (the rendering benchmark's description)
FOUR_INTERFACES = ([
    NetworkInterface(mac="0c:c4:7a:34:6e:3c", bond="bond0"),
    NetworkInterface(mac="0c:c4:7a:34:6e:3d", bond="bond0"),
    NetworkInterface(name="bond0", priority=5, vlans=("bond0.602",),
                     addresses=("203.0.113.10/24", "2001:db8::10/64"),
                     routes=(Route("0.0.0.0/0", "203.0.113.1"), Route("::/0", "2001:db8::1")),
                     nameservers=("192.0.2.53", "2001:db8::53")),
    NetworkInterface(name="bond0.602", priority=5, addresses=("10.60.2.13/24",),
                     routes=(Route("10.0.0.0/8", "10.60.2.1"),)),
    NetworkInterface(mac="0c:c4:7a:34:6e:3e", dhcp="yes"),
], [VirtualNetDev(name="bond0", kind="bond", mac="0c:c4:7a:34:6e:3c", priority=5,
                  bond=BondOptions(mode="802.3ad", lacp_rate="fast", mii_monitor_ms=100,
                                   transmit_hash_policy="layer3+4")),
    VirtualNetDev(name="bond0.602", kind="vlan", vlan_id=602)])

FIXTURES = {
    "mac_canonical": MAC_CANONICAL,
    "bond_and_unmanaged": BOND_AND_UNMANAGED,
    "name_with_dhcp": NAME_WITH_DHCP,
    "name_and_mac": NAME_AND_MAC,
    "bond_bridge_vlan": BOND_BRIDGE_VLAN,
    "route_given_twice": ROUTE_GIVEN_TWICE,
    "vlan_on_a_mac": VLAN_ON_A_MAC,
    "four_interfaces": FOUR_INTERFACES,
}


# --- values that must never reach a file -------------------------------------------------------

HOSTILE = "6.6.6.6\n[Network]\nDNS=6.6.6.6"
NIC = NetworkInterface(mac="fa:16:3e:4c:2d:7a")
BOND = VirtualNetDev(name="bond0", kind="bond")

# (interface added after NIC, or a netdev instead of BOND; words the error's cause holds)
REFUSED = [
    (NetworkInterface(mac="fa:16:3e:4c:2d:7a\n[Network]\nDNS=6.6.6.6"), None, "MAC address"),
    (NetworkInterface(mac="fa:16:3e:4c:2d"), None, "MAC address"),
    (NetworkInterface(name="eth0\nUnmanaged=no"), None, "name"),
    (NetworkInterface(name="eth0/../x"), None, "name"),
    (NetworkInterface(name="a-name-longer-than-15"), None, "name"),
    (NetworkInterface(name='eth0"'), None, "name"),
    (NetworkInterface(name="eth0: {}"), None, "name"),
    (NetworkInterface(mac=NIC.mac, bond="bond0\n[Link]"), None, "bond"),
    (NetworkInterface(mac=NIC.mac, addresses=("10.0.0.1]/24",)), None, "address 0"),
    (NetworkInterface(mac=NIC.mac, addresses=("[2001:db8::1]/64",)), None, "address 0"),
    (NetworkInterface(mac=NIC.mac, addresses=("10.0.0.1/24\n" + HOSTILE,)), None, "address 0"),
    (NetworkInterface(mac=NIC.mac, addresses=("fe80::1%eth0/64",)), None, "address 0"),
    (NetworkInterface(mac=NIC.mac, addresses=("10.0.0.1",)), None, "address 0"),
    (NetworkInterface(mac=NIC.mac, addresses=("10.0.0.1/33",)), None, "address 0"),
    (NetworkInterface(mac=NIC.mac, nameservers=("192.0.2.53\nDNS=6.6.6.6",)), None, "nameserver 0"),
    (NetworkInterface(mac=NIC.mac, nameservers=("192.0.2.53;6.6.6.6",)), None, "nameserver 0"),
    (NetworkInterface(mac=NIC.mac, nameservers=("fe80::53%eth0",)), None, "nameserver 0"),
    (NetworkInterface(mac=NIC.mac, routes=(Route("0.0.0.0/0\n[Route]", "10.0.0.1"),)), None,
     "route 0"),
    (NetworkInterface(mac=NIC.mac, routes=(Route("0.0.0.0/0", "10.0.0.1\n" + HOSTILE),)), None,
     "route 0"),
    (NetworkInterface(mac=NIC.mac, routes=(Route("0.0.0.0/0", "10.0.0.1,6.6.6.6"),)), None,
     "route 0"),
    (NetworkInterface(mac=NIC.mac, routes=(Route("::/0", "10.0.0.1"),)), None, "route 0"),
    (NetworkInterface(mac=NIC.mac, dhcp="yes\nDNS=6.6.6.6"), None, "DHCP"),
    (NetworkInterface(mac=NIC.mac, unmanaged="yes"), None, "unmanaged"),
    (NetworkInterface(mac=NIC.mac, priority=100), None, "priority"),
    (NetworkInterface(mac=NIC.mac, priority=-1), None, "priority"),
    (NetworkInterface(mac=NIC.mac, priority=True), None, "priority"),
    (NetworkInterface(), None, "neither a name nor a MAC"),
    (None, VirtualNetDev(name="bond0\n[Network]", kind="bond"), "name"),
    (None, VirtualNetDev(name="bond0", kind="bond\nMode=balance-rr"), "kind"),
    (None, VirtualNetDev(name="bond0", kind="bond", mac="x\n"), "MAC address"),
    (None, VirtualNetDev(name="bond0", kind="tunnel"), "kind is not one of bond, bridge, vlan"),
    (None, VirtualNetDev(name="bond0", kind="bond",
                         bond=BondOptions(mode="802.3ad\n" + HOSTILE)), "bond mode"),
    (None, VirtualNetDev(name="bond0", kind="bond", bond=BondOptions(mode="a b")), "bond mode"),
    (None, VirtualNetDev(name="bond0", kind="bond", bond=BondOptions(transmit_hash_policy="l2")),
     "transmit hash policy"),
    (None, VirtualNetDev(name="bond0", kind="bond", bond=BondOptions(lacp_rate="1")),
     "LACP rate"),
    (None, VirtualNetDev(name="bond0", kind="bond", bond=BondOptions(mii_monitor_ms="100")),
     "MII monitor interval"),
    (None, VirtualNetDev(name="bond0", kind="bond", bond=BondOptions(up_delay_ms=-1)),
     "up delay"),
    (None, VirtualNetDev(name="bond0", kind="bond", bond=BondOptions(min_links=True)),
     "min links"),
    (None, VirtualNetDev(name="bond0", kind="bond", bond=(("Mode", "x"),)), "BondOptions"),
    (None, VirtualNetDev(name="bond0", kind="bond", vlan_id=5), "settings of another kind"),
    (None, VirtualNetDev(name="br0", kind="bridge", bridge=BridgeOptions(stp="yes")), "STP"),
    (None, VirtualNetDev(name="br0", kind="bridge", bridge=BridgeOptions(priority=65536)),
     "bridge priority"),
    (None, VirtualNetDev(name="br0", kind="bridge",
                         bridge=BridgeOptions(ageing_time_ms=24 * 3600 * 1000 + 1)), "ageing time"),
    (None, VirtualNetDev(name="vlan5", kind="vlan"), "VLAN id"),
    (None, VirtualNetDev(name="vlan5", kind="vlan", vlan_id=4095), "VLAN id"),
    (None, VirtualNetDev(name="vlan5", kind="vlan", vlan_id="5\n[Network]"), "VLAN id"),
    (None, VirtualNetDev(name="vlan5", kind="vlan", vlan_id=5), "not on exactly one interface"),
    (NetworkInterface(mac=NIC.mac, bond="bond1"), None, "bond is not a bond netdev"),
    (NetworkInterface(mac=NIC.mac, bridge="bond0"), None, "bridge is not a bridge netdev"),
    (NetworkInterface(mac=NIC.mac, vlans=("vlan5\nDNS=6.6.6.6",)), None, "vlan is not an"),
    (NetworkInterface(mac=NIC.mac, vlans="vlan5"), None, "vlans"),
    (NetworkInterface(name="bond0", mac=NIC.mac), None, "virtual device is matched by name"),
    (NetworkInterface(mac=NIC.mac, unmanaged=True, bond="bond0"), None, "unmanaged device"),
]


# --- platform documents ------------------------------------------------------------------------

# OpenStack network_data.json with a bond of two NICs, a VLAN on it carrying a static IPv4 network
# and a route, a DHCPv6 network on the bond, and a dns service (cloud-init's NETWORK_DATA_BOND
# shape, unnamed links)
OPENSTACK_BOND_VLAN = {
    "links": [
        {"id": "eth0", "type": "phy", "ethernet_mac_address": "fa:16:3e:34:6e:3c"},
        {"id": "eth1", "type": "phy", "ethernet_mac_address": "fa:16:3e:34:6e:3d"},
        {"id": "bond0", "type": "bond", "bond_links": ["eth0", "eth1"], "bond_mode": "802.3ad",
         "bond_miimon": 100, "bond_xmit_hash_policy": "layer3+4",
         "ethernet_mac_address": "fa:16:3e:34:6e:3c"},
        {"id": "vlan0", "type": "vlan", "vlan_link": "bond0", "vlan_id": 602,
         "vlan_mac_address": "fa:16:3e:34:6e:3c"}],
    "networks": [
        {"id": "n0", "link": "vlan0", "type": "ipv4", "ip_address": "2.2.2.13",
         "netmask": "255.255.255.248",
         "routes": [{"network": "0.0.0.0", "netmask": "0.0.0.0", "gateway": "2.2.2.9"},
                    {"network": "10.0.0.0", "netmask": "255.0.0.0", "gateway": "2.2.2.10"}]},
        {"id": "n1", "link": "bond0", "type": "ipv6_dhcp"}],
    "services": [{"type": "dns", "address": "1.1.1.4"}],
}

# cloud-init v1 with a bridge that forwards at once (ifupdown's bridge_fd 0, STP off)
NOCLOUD_V1_BRIDGE = """
version: 1
config:
  - {type: physical, name: eth0, mac_address: "52:54:00:00:00:03"}
  - {type: physical, name: eth1, mac_address: "52:54:00:00:00:04"}
  - type: bridge
    name: br0
    bridge_interfaces: [eth0, eth1]
    params: {bridge_stp: "off", bridge_fd: 0, bridge_bridgeprio: 22}
    subnets:
    - {type: static, address: 192.168.14.2/24, gateway: 192.168.14.1}
  - {type: nameserver, address: [8.8.8.8]}
"""


def platform_descriptions():
    """name → (interfaces, netdevs) parsed from platform documents: the fake server's sample
    instance as OpenStack and NoCloud (v1, v2) give it, and the bond/VLAN/bridge documents."""
    import json

    from cl_metadata.sources import nocloud_format, openstack_drive
    from cl_metadata.fakeserver.instance import load_instance
    from cl_metadata.fakeserver.render import _network_data, _nocloud

    sample = load_instance(None)
    return {
        "openstack_sample": openstack_drive.parse_network_data(
            json.dumps(_network_data.network_data(sample)).encode()),
        "openstack_bond_vlan": openstack_drive.parse_network_data(
            json.dumps(OPENSTACK_BOND_VLAN).encode()),
        "nocloud_v1_sample": nocloud_format.parse_network_config(
            _nocloud.dump(_nocloud.network_v1(sample)).decode(), "network-config"),
        "nocloud_v2_sample": nocloud_format.parse_network_config(
            _nocloud.dump(_nocloud.network_v2(sample)).decode(), "network-config", priority=20),
        "nocloud_v1_bridge": nocloud_format.parse_network_config(NOCLOUD_V1_BRIDGE,
                                                                 "network-config"),
    }
