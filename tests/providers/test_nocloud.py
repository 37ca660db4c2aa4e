"""nocloud: meta-data, #cloud-config user-data and network-config v1/v2 on a cidata drive
directory (docs/protocols.md), through the provider and the real process."""

import dataclasses
import logging
import os

import pytest

from cl_metadata.network import networkd
from cl_metadata.errors import InvalidMetadata, MetadataError
from cl_metadata.model import NetworkInterface, Route
from cl_metadata.network.networkd import HEADER
from cl_metadata.sources.nocloud_format import parse_network_config

from conftest import needs_root
from drive_fixtures import (ALICE, CAUSES, DEPLOY, SAMPLE, assert_failed_cleanly,
                            assert_sample_units, bad_drive, env_file, open_provider, output_args,
                            outputs, run_on_drive, sample_interfaces, write_drive)

PLATFORM = "nocloud"
ATTRIBUTES = {"NOCLOUD_INSTANCE_ID": "i-0a1b2c3d4e5f60718", "NOCLOUD_HOSTNAME": "demo-1",
              "NOCLOUD_IPV4": "10.0.1.15", "NOCLOUD_IPV6": "2001:db8:1:2::15"}
COREOS_FILE = ("COREOS_NOCLOUD_HOSTNAME=demo-1\nCOREOS_NOCLOUD_INSTANCE_ID=i-0a1b2c3d4e5f60718\n"
               "COREOS_NOCLOUD_IPV4=10.0.1.15\nCOREOS_NOCLOUD_IPV6=2001:db8:1:2::15\n")


def seed(tmp_path, **files):
    """A drive whose named files (meta_data=…, user_data=…, network_config=…) are replaced;
    None drops a file."""
    names = {key.replace("_", "-"): value for key, value in files.items()}
    root = write_drive(tmp_path, PLATFORM, drop=[n for n, v in names.items() if v is None],
                       replace={n: v.encode() for n, v in names.items() if v is not None})
    return open_provider(PLATFORM, root)


def network(text):
    return parse_network_config(text, "network-config")


@pytest.mark.parametrize("version", [1, 2])
def test_the_rendered_seed(tmp_path, version):
    instance = dataclasses.replace(SAMPLE, platform_data={
        "nocloud": {"network-config-version": version}})
    provider = open_provider(PLATFORM, write_drive(tmp_path, PLATFORM, instance))
    assert provider.attributes() == ATTRIBUTES
    assert provider.hostname() == "demo-1"  # user-data's hostname wins over local-hostname
    assert provider.ssh_keys() == [ALICE, DEPLOY]
    assert provider.network() == (sample_interfaces(10), [])
    assert env_file(provider.attributes(), "COREOS") == COREOS_FILE
    assert env_file(provider.attributes(), "AFTERBURN") == COREOS_FILE.replace("COREOS",
                                                                               "AFTERBURN")


def test_only_meta_data(tmp_path):
    provider = seed(tmp_path, meta_data="instance-id: 0717\nlocal-hostname: yes\n",
                    user_data=None, network_config=None)
    # scalars stay the text written: no octal 463, no boolean
    assert provider.attributes() == {"NOCLOUD_INSTANCE_ID": "0717", "NOCLOUD_HOSTNAME": "yes"}
    assert provider.hostname() == "yes"
    assert provider.ssh_keys() == [] and provider.network() == ([], [])


@pytest.mark.parametrize("user_data, hostname", [
    ("#cloud-config\nfqdn: node.example.org\n", "node.example.org"),
    ("#cloud-config\nhostname: node\nfqdn: node.example.org\n", "node"),
    ("#cloud-config\npackages: [vim]\n", "demo-1.example.internal"),
    ('{"ignition": {"version": "3.4.0"}}', "demo-1.example.internal"),  # not ours to read
])
def test_hostname_precedence(tmp_path, user_data, hostname):
    assert seed(tmp_path, user_data=user_data).hostname() == hostname


@pytest.mark.parametrize("public_keys, user_keys, expected", [
    (f"public-keys: '{ALICE}'", [], [ALICE]),
    (f"public-keys: ['{ALICE}', '{DEPLOY}']", [], [ALICE, DEPLOY]),
    (f"public-keys: {{zed: '{DEPLOY}', amy: '{ALICE}'}}", [], [ALICE, DEPLOY]),  # by name
    (f"public-keys: ['{DEPLOY}']", [ALICE, DEPLOY], [DEPLOY, ALICE]),  # merged, each once
    ("", [ALICE], [ALICE]),
])
def test_keys_from_meta_data_and_user_data(tmp_path, public_keys, user_keys, expected):
    user_data = "#cloud-config\nssh_authorized_keys:\n" + "".join(f"- {k}\n" for k in user_keys)
    provider = seed(tmp_path, meta_data=f"instance-id: i-1\n{public_keys}\n",
                    user_data=user_data if user_keys else "#cloud-config\n")
    assert provider.ssh_keys() == expected


# --- network-config -------------------------------------------------------------------------

def test_v1_subnet_kinds_routes_and_nameservers(caplog):
    interfaces, netdevs = network("""
version: 1
config:
  - type: physical
    name: ens3
    mac_address: 52:54:00:12:34:56
    subnets:
      - type: static
        address: 192.168.1.10
        netmask: "24"
        dns_nameservers: [192.168.1.53]
        routes:
          - {network: 10.0.0.0, netmask: 255.0.0.0, gateway: 192.168.1.254}
      - {type: dhcp6}
      - {type: ipv6_slaac}
  - type: physical
    mac_address: 52:54:00:12:34:57
    subnets: [{type: dhcp}]
  - type: route
    destination: 10.9.0.0/16
    gateway: 192.168.1.1
  - type: nameserver
    address: 192.0.2.53
    search: [example.org]
""")
    assert netdevs == [] and interfaces == [
        NetworkInterface(name="ens3", mac="52:54:00:12:34:56", addresses=("192.168.1.10/24",),
                         routes=(Route("10.0.0.0/8", "192.168.1.254"),), dhcp="ipv6",
                         nameservers=("192.168.1.53", "192.0.2.53")),
        NetworkInterface(mac="52:54:00:12:34:57", dhcp="ipv4", nameservers=("192.0.2.53",)),
    ]
    assert warnings(caplog) == ["network-config: not rendered: config[2] (route entry)"]


def test_v2_matching_routes_and_dhcp(caplog):
    interfaces, netdevs = network("""
network:
  version: 2
  ethernets:
    eth0:
      dhcp4: true
      dhcp6: "yes"
    lan:
      match: {macaddress: "52:54:00:AB:CD:EF"}
      addresses: [10.1.0.5/16]
      gateway4: 10.1.0.1
      routes:
        - {to: 172.16.0.0/12, via: 10.1.0.254}
        - {to: 10.1.0.0/16, via: 10.1.0.1}
    any-en:
      match: {name: "en*", macaddress: "52:54:00:00:00:02"}
      dhcp4: no
    pattern:
      match: {name: "en*"}
  wifis:
    wlan0: {dhcp4: true}
""")
    assert netdevs == [] and interfaces == [
        NetworkInterface(name="eth0", dhcp="yes"),  # no match: the id is the name
        NetworkInterface(mac="52:54:00:ab:cd:ef", addresses=("10.1.0.5/16",),
                         routes=(Route("0.0.0.0/0", "10.1.0.1"),
                                 Route("172.16.0.0/12", "10.1.0.254"),
                                 Route("10.1.0.0/16", "10.1.0.1"))),
        NetworkInterface(mac="52:54:00:00:00:02"),  # a name pattern cannot name a unit
    ]
    assert warnings(caplog) == ["network-config: not rendered: network.wifis, "
                                "network.ethernets[3] (interface name pattern)"]


def test_v2_as_json_and_disabled_config():
    assert network('{"version": 2, "ethernets": {"eth0": {"dhcp6": true}}}') == (
        [NetworkInterface(name="eth0", dhcp="ipv6")], [])
    assert network("version: 1\nconfig: disabled\n") == ([], [])
    assert network("") == ([], [])


@pytest.mark.parametrize("text, source, cause", [
    ("version: 3\n", "network-config", "version: expected 1 or 2"),
    ("- version: 1\n", "network-config", "top level: expected a mapping, got a list"),
    ("version: 1\nconfig:\n  - {type: physical, subnets: [{type: dhcp}]}\n", "network-config",
     "config[0]: names neither an interface nor a MAC address"),
    ("version: 1\nconfig:\n  - {type: physical, name: eth0, subnets: [{type: static}]}\n",
     "network-config", "config[0].subnets[0].address: missing"),
    ("version: 1\nconfig:\n  - {type: physical, name: 'eth0/x'}\n", "network-config",
     "config[0].name: not a usable interface name"),
    ("version: 2\nethernets:\n  e: {match: {macaddress: 'nope'}}\n", "network-config",
     "ethernets[0].match.macaddress: not a MAC address"),
    ("version: 2\nethernets:\n  eth0: {addresses: [10.0.0.1/33]}\n", "network-config",
     "ethernets[0].addresses[0]: not a netmask or prefix length"),
    ("version: 2\nethernets:\n  eth0: {routes: [{to: default}]}\n", "network-config",
     "ethernets[0].routes[0].via: missing"),
    ("version: 2\nethernets:\n  eth0: {dhcp4: maybe}\n", "network-config",
     "ethernets[0].dhcp4: expected true or false, got a string"),
    ('{"version": 2,', "network-config", "invalid JSON"),
    ("version: [2\n", "network-config", "invalid YAML at line 2"),
])
def test_invalid_network_config_names_file_and_field(text, source, cause):
    with pytest.raises(InvalidMetadata) as info:
        network(text)
    assert info.value.source == source and info.value.cause.startswith(cause)


# --- network-config: what other agents' published fixtures keep --------------------------------
# The documents below follow the shapes of cloud-init's own test fixtures (its network config v1
# "openstack_net_config_v1" and v2 "photon_net_config_v2" artifacts, and the v1/v2 examples of
# its network-config documentation); the values are this suite's.

def warnings(caplog):
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def units(text, priority=10):
    """The unit files the network config renders to, as text."""
    interfaces, netdevs = parse_network_config(text, "network-config", priority=priority)
    return {name: body.decode() for name, body in networkd.render(interfaces, netdevs).items()}


def unit(*sections):
    return HEADER + "".join(f"\n{section}\n" for section in sections)


def test_v1_dhcp_subnets_keep_their_gateway_routes_and_nameservers():
    assert units("""
version: 1
config:
  - type: physical
    name: eth0
    mac_address: "fa:16:3e:4c:2d:7a"
    subnets:
      - type: dhcp
        gateway: 192.168.1.1
        dns_nameservers: [192.168.1.53]
        routes:
          - {network: 10.0.0.0, netmask: 255.0.0.0, gateway: 192.168.1.254}
      - type: dhcp6
        dns_nameservers: ["2001:db8::53"]
        routes:
          - {network: "2001:db8:100::", netmask: "48", gateway: "fe80::1"}
""") == {"10-fa:16:3e:4c:2d:7a.network": unit(
        "[Match]\nMACAddress=fa:16:3e:4c:2d:7a",
        "[Network]\nDHCP=yes\nDNS=192.168.1.53\nDNS=2001:db8::53",
        "[Route]\nDestination=0.0.0.0/0\nGateway=192.168.1.1",
        "[Route]\nDestination=10.0.0.0/8\nGateway=192.168.1.254",
        "[Route]\nDestination=2001:db8:100::/48\nGateway=fe80::1")}


def test_v2_explicit_default_routes_win_over_gateways_and_dhcp_keeps_routes(caplog):
    assert units("""
network:
  version: 2
  ethernets:
    eth0:
      match: {macaddress: "fa:16:3e:4c:2d:7a"}
      set-name: eth0
      addresses: [10.0.1.15/24, "2001:db8:1:2::15/64"]
      gateway4: 10.0.1.1
      gateway6: "2001:db8:1:2::1"
      routes:
        - {to: default, via: 10.0.1.254}
        - {to: "::/0", via: "2001:db8:1:2::fe"}
        - {to: 0.0.0.0/0, via: 10.0.1.254}
        - {to: default, via: 10.0.1.253, metric: 200}
        - {to: 172.16.0.0/12, via: 10.0.1.1}
    eth1:
      match: {macaddress: "fa:16:3e:4c:2d:7b"}
      dhcp4: true
      routes: [{to: 10.0.0.0/8, via: 192.168.1.254}]
      nameservers: {addresses: [192.168.1.53]}
""") == {
        "10-fa:16:3e:4c:2d:7a.network": unit(
            "[Match]\nMACAddress=fa:16:3e:4c:2d:7a",
            "[Address]\nAddress=10.0.1.15/24", "[Address]\nAddress=2001:db8:1:2::15/64",
            "[Route]\nDestination=0.0.0.0/0\nGateway=10.0.1.254",
            "[Route]\nDestination=::/0\nGateway=2001:db8:1:2::fe",
            "[Route]\nDestination=172.16.0.0/12\nGateway=10.0.1.1"),
        "10-fa:16:3e:4c:2d:7b.network": unit(
            "[Match]\nMACAddress=fa:16:3e:4c:2d:7b", "[Network]\nDHCP=ipv4\nDNS=192.168.1.53",
            "[Route]\nDestination=10.0.0.0/8\nGateway=192.168.1.254")}
    assert warnings(caplog) == [
        "network-config: not rendered: network.ethernets[0] (1 conflicting default route)"]


V1_BONDS = """
network:
  version: 1
  config:
  - {type: physical, name: slot1port1, mac_address: "00:00:00:00:00:01", mtu: 1500, subnets: []}
  - {type: physical, name: slot1port2, mac_address: "00:00:00:00:00:02", mtu: 1500, subnets: []}
  - {type: physical, name: eth2, mac_address: "52:54:00:00:00:03"}
  - {type: physical, name: eth3, mac_address: "52:54:00:00:00:04"}
  - type: bond
    name: bond0
    mac_address: "00:00:00:00:00:01"
    bond_interfaces: [slot1port1, slot1port2]
    params:
      bond-mode: active-backup
      bond_miimon: 100
      bond-xmit-hash-policy: layer3+4
      bond-primary: slot1port1
    subnets:
    - {type: static, address: 10.11.12.13, netmask: 255.255.255.0, gateway: 10.11.12.1}
  - type: vlan
    name: bond0.200
    vlan_link: bond0
    vlan_id: 200
    subnets:
    - type: dhcp
      routes: [{network: 10.200.0.0, netmask: 255.255.0.0, gateway: 10.11.200.1}]
  - type: bridge
    name: br0
    bridge_interfaces: [eth2, eth3]
    params:
      bridge_stp: "off"
      bridge_fd: 0
      bridge_bridgeprio: 22
      bridge_pathcost: ["eth2 50", "eth3 75"]
    subnets:
    - {type: static, address: 192.168.14.2/24}
  - {type: nameserver, address: [8.8.8.8]}
"""
V1_BOND_UNITS = {
    "10-00:00:00:00:00:01.network": unit("[Match]\nMACAddress=00:00:00:00:00:01",
                                         "[Network]\nBond=bond0"),
    "10-00:00:00:00:00:02.network": unit("[Match]\nMACAddress=00:00:00:00:00:02",
                                         "[Network]\nBond=bond0"),
    "10-52:54:00:00:00:03.network": unit("[Match]\nMACAddress=52:54:00:00:00:03",
                                         "[Network]\nBridge=br0"),
    "10-52:54:00:00:00:04.network": unit("[Match]\nMACAddress=52:54:00:00:00:04",
                                         "[Network]\nBridge=br0"),
    "05-bond0.network": unit("[Match]\nName=bond0", "[Network]\nDNS=8.8.8.8\nVLAN=bond0.200",
                             "[Address]\nAddress=10.11.12.13/24",
                             "[Route]\nDestination=0.0.0.0/0\nGateway=10.11.12.1"),
    "05-bond0.netdev": unit("[NetDev]\nName=bond0\nKind=bond\nMACAddress=00:00:00:00:00:01",
                            "[Bond]\nMode=active-backup\nTransmitHashPolicy=layer3+4\n"
                            "MIIMonitorSec=100ms"),
    "05-bond0.200.network": unit("[Match]\nName=bond0.200", "[Network]\nDHCP=ipv4\nDNS=8.8.8.8",
                                 "[Route]\nDestination=10.200.0.0/16\nGateway=10.11.200.1"),
    "05-bond0.200.netdev": unit("[NetDev]\nName=bond0.200\nKind=vlan", "[VLAN]\nId=200"),
    "05-br0.network": unit("[Match]\nName=br0", "[Network]\nDNS=8.8.8.8",
                           "[Address]\nAddress=192.168.14.2/24"),
    "05-br0.netdev": unit("[NetDev]\nName=br0\nKind=bridge",
                          "[Bridge]\nSTP=no\nPriority=22\nForwardDelaySec=0s"),
}


def test_v1_bond_vlan_and_bridge_entries_are_rendered(caplog):
    assert units(V1_BONDS) == V1_BOND_UNITS
    assert warnings(caplog) == ["network-config: not rendered: network.config[4].params "
                                "(1 setting), network.config[6].params (1 setting)"]


def test_v2_bonds_vlans_and_bridges_are_rendered(caplog):
    assert units("""
network:
  version: 2
  ethernets:
    eth0:
      match: {macaddress: "00:11:22:33:44:55"}
      set-name: eth0
      dhcp4: false
      mtu: 1500
    eth1: {dhcp4: true, dhcp6: true}
    eth2:
      match: {macaddress: "00:aa:bb:cc:dd:ee"}
      set-name: eth2
      dhcp4: false
    eth3: {dhcp4: false, dhcp6: false}
    eth4: {dhcp4: false, dhcp6: false}
  bonds:
    bond0:
      interfaces: [eth0, eth2]
      parameters:
        mode: 802.3ad
        mii-monitor-interval: 100
        transmit-hash-policy: layer2+3
        lacp-rate: fast
        learn-packet-interval: 12
      dhcp4: false
      macaddress: "00:11:22:33:44:77"
  vlans:
    vlan100:
      id: 100
      link: eth0
      addresses: [192.168.100.10/24]
      routes: [{to: 10.10.200.0/24, via: 192.168.100.1, metric: 50}]
      nameservers: {addresses: [8.8.8.8], search: [vlan.test]}
    bond.200:
      id: 200
      link: bond0
      addresses: [192.168.200.10/24]
      dhcp6: true
  bridges:
    br0:
      interfaces: [eth3, eth4]
      addresses: [172.16.1.10/24]
      routes: [{to: 0.0.0.0/0, via: 172.16.1.1}]
      macaddress: "00:11:22:33:44:aa"
      parameters:
        stp: true
        forward-delay: 4
        hello-time: 2
        max-age: 20
        priority: 2048
        ageing-time: 300
        path-cost: {eth3: 30}
    br1:
      interfaces: [vlan100]
      parameters: {stp: false}
""", priority=20) == {
        "20-00:11:22:33:44:55.network": unit("[Match]\nMACAddress=00:11:22:33:44:55",
                                             "[Network]\nBond=bond0\nVLAN=vlan100"),
        "20-eth1.network": unit("[Match]\nName=eth1", "[Network]\nDHCP=yes"),
        "20-00:aa:bb:cc:dd:ee.network": unit("[Match]\nMACAddress=00:aa:bb:cc:dd:ee",
                                             "[Network]\nBond=bond0"),
        "20-eth3.network": unit("[Match]\nName=eth3", "[Network]\nBridge=br0"),
        "20-eth4.network": unit("[Match]\nName=eth4", "[Network]\nBridge=br0"),
        "15-bond0.network": unit("[Match]\nName=bond0", "[Network]\nVLAN=bond.200"),
        "15-bond0.netdev": unit("[NetDev]\nName=bond0\nKind=bond\nMACAddress=00:11:22:33:44:77",
                                "[Bond]\nMode=802.3ad\nTransmitHashPolicy=layer2+3\n"
                                "LACPTransmitRate=fast\nMIIMonitorSec=100ms"),
        "15-br0.network": unit("[Match]\nName=br0", "[Address]\nAddress=172.16.1.10/24",
                               "[Route]\nDestination=0.0.0.0/0\nGateway=172.16.1.1"),
        "15-br0.netdev": unit("[NetDev]\nName=br0\nKind=bridge\nMACAddress=00:11:22:33:44:aa",
                              "[Bridge]\nSTP=yes\nPriority=2048\nForwardDelaySec=4s\n"
                              "HelloTimeSec=2s\nMaxAgeSec=20s\nAgeingTimeSec=300s"),
        "15-br1.network": unit("[Match]\nName=br1"),
        "15-br1.netdev": unit("[NetDev]\nName=br1\nKind=bridge", "[Bridge]\nSTP=no"),
        "15-vlan100.network": unit("[Match]\nName=vlan100", "[Network]\nDNS=8.8.8.8\nBridge=br1",
                                   "[Address]\nAddress=192.168.100.10/24",
                                   "[Route]\nDestination=10.10.200.0/24\nGateway=192.168.100.1"),
        "15-vlan100.netdev": unit("[NetDev]\nName=vlan100\nKind=vlan", "[VLAN]\nId=100"),
        "15-bond.200.network": unit("[Match]\nName=bond.200", "[Network]\nDHCP=ipv6",
                                    "[Address]\nAddress=192.168.200.10/24"),
        "15-bond.200.netdev": unit("[NetDev]\nName=bond.200\nKind=vlan", "[VLAN]\nId=200"),
    }
    assert warnings(caplog) == ["network-config: not rendered: network.bonds[0].parameters "
                                "(1 setting), network.bridges[0].parameters (1 setting)"]


def test_what_cannot_be_rendered_is_one_warning_line_without_values(caplog):
    interfaces, netdevs = network("""
version: 2
ethernets:
  secret-eth: {match: {name: "secret*"}}
wifis: {secret-wifi: {access-points: {secret-ssid: {password: secret-psk}}}}
tunnels: {secret-tun: {mode: gre}}
vrfs: {secret-vrf: {table: 1}}
modems: {secret-modem: {apn: secret}}
""")
    assert (interfaces, netdevs) == ([], [])
    assert warnings(caplog) == [
        "network-config: not rendered: wifis, tunnels, vrfs, modems, ethernets[0] "
        "(interface name pattern)"]
    assert "secret" not in caplog.text


@pytest.mark.parametrize("text, cause", [
    ("version: 2\nbonds:\n  bond0: {interfaces: [eth9]}\n",
     "bonds[0].interfaces[0]: refers to a device the document does not define"),
    ("version: 2\nethernets: {eth0: {}}\nbonds:\n  bond0:\n    interfaces: [eth0]\n"
     "    parameters: {mode: \"802.3ad\\n[Network]\"}\n",
     "bonds[0].parameters.mode: expected one of balance-rr, active-backup"),
    ("version: 2\nethernets: {eth0: {}}\nbonds:\n  \"bond0\\n[Network]\": {interfaces: [eth0]}\n",
     "bonds[0].id: not a usable interface name"),
    ("version: 2\nethernets: {eth0: {}}\nbonds:\n  bond0: {interfaces: [eth0]}\n"
     "  bond1: {interfaces: [eth0]}\n",
     "bonds[1].interfaces[0]: names a device that is already a member of a bond or bridge"),
    ("version: 2\nethernets: {eth0: {}}\nbonds:\n  bond0: {interfaces: [eth0]}\n"
     "  bond1: {interfaces: [bond0]}\n",
     "bonds[1].interfaces[0]: a bond's members must be NICs"),
    ("version: 2\nethernets: {bond0: {}}\nbonds:\n  bond0: {interfaces: []}\n",
     "bonds[0]: defines a device that is already defined"),
    ("version: 2\nethernets: {eth0: {}}\nvlans:\n  vlan5: {id: 4095, link: eth0}\n",
     "vlans[0].id: expected a whole number from 0 to 4094"),
    ("version: 2\nvlans:\n  vlan5: {id: 5}\n", "vlans[0].link: missing"),
    ("version: 2\nethernets: {eth0: {}}\nbridges:\n  br0:\n    interfaces: [eth0]\n"
     "    parameters: {forward-delay: 1e3}\n",
     "bridges[0].parameters.forward-delay: expected a time"),
    ("version: 2\nethernets: {eth0: {}}\nbridges:\n  br0: {interfaces: [eth0]}\n"
     "  br1: {interfaces: [br0]}\n",
     "bridges[1].interfaces[0]: a bridge cannot be a port of another bridge"),
    ("version: 1\nconfig:\n  - {type: bond, name: bond0, bond_interfaces: [eth0]}\n",
     "config[0].bond_interfaces[0]: refers to a device the document does not define"),
    ("version: 1\nconfig:\n  - {type: physical, name: eth0}\n"
     "  - {type: vlan, name: eth0.5, vlan_link: eth0}\n",
     "config[1].vlan_id: expected a whole number from 0 to 4094"),
    ("version: 1\nconfig:\n  - {type: physical, name: eth0}\n"
     "  - {type: bridge, name: br0, bridge_interfaces: [eth0], params: {bridge_stp: maybe}}\n",
     "config[1].params.bridge_stp: expected true or false"),
    ("version: 1\nconfig:\n  - {type: physical, name: eth0}\n"
     "  - {type: bond, name: bond0, bond_interfaces: [eth0], params: {bond-miimon: -1}}\n",
     "config[1].params.bond-miimon: expected a time"),
])
def test_invalid_virtual_devices_name_the_field_never_the_value(text, cause):
    with pytest.raises(InvalidMetadata) as info:
        network(text)
    assert info.value.source == "network-config" and info.value.cause.startswith(cause)
    assert "[Network]" not in str(info.value) and "eth9" not in str(info.value)


def test_real_process_writes_bond_vlan_and_bridge_units(tmp_path, agent_env):
    paths = outputs(tmp_path)
    root = write_drive(tmp_path, PLATFORM, replace={"network-config": V1_BONDS.encode()})
    result = run_on_drive(agent_env, PLATFORM, root, *output_args(paths))
    assert result.returncode == 0, result.stderr
    assert {p.name: p.read_text() for p in paths["units"].iterdir()} == V1_BOND_UNITS
    assert all((p.stat().st_mode & 0o777) == 0o644 for p in paths["units"].iterdir())


def test_real_process_with_an_unknown_bond_mode_writes_nothing(tmp_path, agent_env):
    paths = outputs(tmp_path)
    bad = V1_BONDS.replace("bond-mode: active-backup", "bond-mode: 'active-backup\\n[Link]'")
    root = write_drive(tmp_path, PLATFORM, replace={"network-config": bad.encode()})
    result = run_on_drive(agent_env, PLATFORM, root, *output_args(paths))
    assert_failed_cleanly(result, paths, PLATFORM, "network-config",
                          "network.config[4].params.bond-mode: expected one of")
    assert "[Link]" not in result.stderr


# --- bad drives -----------------------------------------------------------------------------

@pytest.mark.parametrize("relpath, part", [("meta-data", "attributes"),
                                           ("user-data", "ssh_keys"),
                                           ("network-config", "network")])
@pytest.mark.parametrize("kind", ["oversized", "symlink-out", "invalid", "not-utf8"])
def test_bad_files(tmp_path, relpath, part, kind):
    invalid = b"#cloud-config\nhostname: [x\n" if relpath == "user-data" else b"a: [b\n"
    with pytest.raises(MetadataError) as info:
        getattr(open_provider(PLATFORM, bad_drive(tmp_path, PLATFORM, relpath, kind,
                                                  invalid=invalid)), part)()
    assert info.value.source == relpath and CAUSES[kind] in info.value.cause


def test_only_meta_data_is_required(tmp_path):
    with pytest.raises(MetadataError) as info:
        open_provider(PLATFORM, bad_drive(tmp_path, PLATFORM, "meta-data", "missing"))
    assert (info.value.source, info.value.cause) == ("meta-data", "missing")


# --- the real process -----------------------------------------------------------------------

def test_real_process_writes_attributes_hostname_and_units(tmp_path, agent_env):
    paths = outputs(tmp_path)
    result = run_on_drive(agent_env, PLATFORM, write_drive(tmp_path, PLATFORM),
                          *output_args(paths))
    assert result.returncode == 0, result.stderr
    assert paths["attributes"].read_text() == COREOS_FILE
    assert paths["hostname"].read_text() == "demo-1\n"
    assert_sample_units(paths["units"], 10)


@needs_root
def test_real_process_writes_the_keys(tmp_path, agent_env, throwaway_user):
    result = run_on_drive(agent_env, PLATFORM, write_drive(tmp_path, PLATFORM),
                          "--ssh-keys", throwaway_user.pw_name)
    assert result.returncode == 0, result.stderr
    with open(os.path.join(throwaway_user.pw_dir, ".ssh/authorized_keys.d/cl-metadata")) as f:
        assert f.read() == f"{ALICE}\n{DEPLOY}\n"


def test_real_process_with_user_data_not_utf8(tmp_path, agent_env):
    paths = outputs(tmp_path)
    result = run_on_drive(agent_env, PLATFORM,
                          bad_drive(tmp_path, PLATFORM, "user-data", "not-utf8"),
                          *output_args(paths))
    assert_failed_cleanly(result, paths, PLATFORM, "user-data", "not valid UTF-8")
