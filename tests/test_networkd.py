"""The one systemd-networkd renderer and writer: exact unit files, canonical values, and no way
for metadata text to add a line or a section to a unit."""

import logging
import os
import stat

import pytest

from cl_metadata.network import networkd
from cl_metadata.errors import InvalidMetadata
from cl_metadata.model import NetworkInterface, VirtualNetDev

from network_fixtures import (BOND, BOND_AND_UNMANAGED, BOND_BRIDGE_VLAN, MAC_CANONICAL,
                              NAME_AND_MAC, NAME_WITH_DHCP, NIC, REFUSED, ROUTE_GIVEN_TWICE,
                              VLAN_ON_A_MAC)

HEADER = "# Written by cl-metadata from the platform's metadata; replaced on every run.\n"


def test_unit_matched_by_mac_with_canonical_values():
    assert networkd.render(*MAC_CANONICAL) == {"10-fa:16:3e:4c:2d:7a.network": (
        HEADER +
        "\n[Match]\nMACAddress=fa:16:3e:4c:2d:7a\n"
        "\n[Network]\nDNS=192.0.2.53\nDNS=2001:db8::53\n"
        "\n[Address]\nAddress=203.0.113.25/24\n"
        "\n[Address]\nAddress=2001:db8:1:2::15/64\n"
        "\n[Route]\nDestination=203.0.113.0/24\nGateway=203.0.113.1\n"
        "\n[Route]\nDestination=0.0.0.0/0\nGateway=203.0.113.1\n"
        "\n[Route]\nDestination=::/0\nGateway=2001:db8:1:2::1\n").encode()}


def test_bond_with_a_slave_an_unmanaged_nic_and_its_netdev():
    assert networkd.render(*BOND_AND_UNMANAGED) == {
        "10-0c:c4:7a:e1:3d:d0.network": (HEADER + "\n[Match]\nMACAddress=0c:c4:7a:e1:3d:d0\n"
                                         "\n[Network]\nBond=bond0\n").encode(),
        "10-0c:c4:7a:e1:3d:d1.network": (HEADER + "\n[Match]\nMACAddress=0c:c4:7a:e1:3d:d1\n"
                                         "\n[Link]\nUnmanaged=yes\n").encode(),
        "05-bond0.network": (HEADER + "\n[Match]\nName=bond0\n"
                             "\n[Address]\nAddress=10.0.0.1/31\n"
                             "\n[Route]\nDestination=10.0.0.0/8\nGateway=10.0.0.0\n").encode(),
        "05-bond0.netdev": (HEADER + "\n[NetDev]\nName=bond0\nKind=bond\n"
                            "MACAddress=0c:c4:7a:e1:3d:d0\n"
                            "\n[Bond]\nMode=802.3ad\nLACPTransmitRate=fast\n").encode(),
    }


def test_unit_matched_by_name_with_dhcp():
    assert networkd.render(*NAME_WITH_DHCP) == {"20-eth0.network": (
        HEADER + "\n[Match]\nName=eth0\n\n[Network]\nDHCP=ipv4\n"
        "\n[Address]\nAddress=2001:db8::15/64\n"
        "\n[Route]\nDestination=::/0\nGateway=fe80::1\n").encode()}


def test_an_interface_with_a_name_and_a_mac_is_matched_by_the_mac_alone():
    # the name is the one the platform (cloud-init, Proxmox, KubeVirt) would give the NIC; the
    # MAC is the NIC's own, so it alone decides which NIC the unit configures
    assert networkd.render(*NAME_AND_MAC) == {"20-fa:16:3e:4c:2d:7a.network": (
        HEADER + "\n[Match]\nMACAddress=fa:16:3e:4c:2d:7a\n\n[Network]\nDHCP=yes\n").encode()}


def test_bond_bridge_and_vlan_units():
    units = {name: text.decode() for name, text in networkd.render(*BOND_BRIDGE_VLAN).items()}
    assert units == {
        "10-00:11:22:33:44:55.network":
            HEADER + "\n[Match]\nMACAddress=00:11:22:33:44:55\n\n[Network]\nBond=bond0\n",
        "10-00:11:22:33:44:56.network":
            HEADER + "\n[Match]\nMACAddress=00:11:22:33:44:56\n\n[Network]\nBond=bond0\n",
        "10-eth2.network":
            HEADER + "\n[Match]\nName=eth2\n\n[Network]\nBridge=br0\nVLAN=vlan100\n",
        "05-bond0.network":
            HEADER + "\n[Match]\nName=bond0\n\n[Network]\nDHCP=ipv6\nVLAN=bond0.200\n",
        "05-bond0.200.network":
            HEADER + "\n[Match]\nName=bond0.200\n\n[Address]\nAddress=192.168.200.10/24\n",
        "05-vlan100.network": HEADER + "\n[Match]\nName=vlan100\n\n[Network]\nBridge=br0\n",
        "05-br0.network": (
            HEADER + "\n[Match]\nName=br0\n\n[Network]\nDNS=1.1.1.1\n"
            "\n[Address]\nAddress=172.16.1.10/24\n"
            "\n[Route]\nDestination=0.0.0.0/0\nGateway=172.16.1.1\n"),
        "05-bond0.netdev": (
            HEADER + "\n[NetDev]\nName=bond0\nKind=bond\nMACAddress=00:11:22:33:44:77\n"
            "\n[Bond]\nMode=802.3ad\nTransmitHashPolicy=layer2+3\nLACPTransmitRate=fast\n"
            "AdSelect=bandwidth\nMIIMonitorSec=100ms\nUpDelaySec=2s\nDownDelaySec=0s\n"
            "MinLinks=1\n"),
        "05-bond0.200.netdev":
            HEADER + "\n[NetDev]\nName=bond0.200\nKind=vlan\n\n[VLAN]\nId=200\n",
        "05-vlan100.netdev": (
            HEADER + "\n[NetDev]\nName=vlan100\nKind=vlan\nMACAddress=00:11:22:33:44:66\n"
            "\n[VLAN]\nId=100\n"),
        "05-br0.netdev": (
            HEADER + "\n[NetDev]\nName=br0\nKind=bridge\n"
            "\n[Bridge]\nSTP=yes\nPriority=2048\nForwardDelaySec=4s\nHelloTimeSec=2s\n"
            "MaxAgeSec=20s\nAgeingTimeSec=300s\n"),
        "05-br1.netdev": HEADER + "\n[NetDev]\nName=br1\nKind=bridge\n\n[Bridge]\nSTP=no\n",
        "05-bond1.netdev": HEADER + "\n[NetDev]\nName=bond1\nKind=bond\n",
    }


def test_a_route_given_twice_is_written_once():
    assert networkd.render(*ROUTE_GIVEN_TWICE) == {"10-eth0.network": (
        HEADER + "\n[Match]\nName=eth0\n"
        "\n[Route]\nDestination=10.0.0.0/8\nGateway=10.1.0.1\n"
        "\n[Route]\nDestination=::/0\nGateway=2001:db8::1\n").encode()}


def test_a_vlan_on_a_nic_matched_by_mac():
    assert networkd.render(*VLAN_ON_A_MAC) == {
        "10-fa:16:3e:00:00:01.network": (HEADER + "\n[Match]\nMACAddress=fa:16:3e:00:00:01\n"
                                         "\n[Network]\nVLAN=vlan602\n").encode(),
        "05-vlan602.network": (HEADER + "\n[Match]\nName=vlan602\n\n[Network]\nDNS=1.1.1.4\n"
                               "\n[Address]\nAddress=2.2.2.13/29\n"
                               "\n[Route]\nDestination=0.0.0.0/0\nGateway=2.2.2.9\n").encode(),
        "05-vlan602.netdev": (HEADER + "\n[NetDev]\nName=vlan602\nKind=vlan\n"
                              "\n[VLAN]\nId=602\n").encode(),
    }


def test_two_netdevs_of_one_name_are_refused():
    with pytest.raises(InvalidMetadata, match="netdev 1: a second netdev of the same name"):
        networkd.render([], [VirtualNetDev(name="bond0", kind="bond"),
                             VirtualNetDev(name="bond0", kind="bridge", priority=7)])


def test_nothing_to_render():
    assert networkd.render([], []) == {}


@pytest.mark.parametrize("interface, netdev, cause", REFUSED)
def test_values_that_could_change_a_unit_are_refused(interface, netdev, cause):
    with pytest.raises(InvalidMetadata) as info:
        networkd.render([NIC, interface] if interface else [NIC],
                        [netdev] if netdev else [VirtualNetDev(name="bond0", kind="bond")])
    where = "interface 1" if interface else "netdev 0"
    assert info.value.source == "network units"
    assert info.value.cause.startswith(where + ": ") and cause in info.value.cause
    assert "6.6.6.6" not in str(info.value) and "\n" not in str(info.value)


def test_two_units_with_one_file_name_are_refused():
    with pytest.raises(InvalidMetadata, match="interface 0 and interface 2: would be written to "
                                              "the same file"):
        networkd.render([NIC, NetworkInterface(name="eth1"),
                         NetworkInterface(mac=NIC.mac.upper())], [])


@pytest.mark.parametrize("text, version, prefix", [
    ("255.255.255.0", 4, 24), ("255.255.255.254", 4, 31), ("0.0.0.0", 4, 0),
    ("255.255.255.255", 4, 32), ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe", 6, 127),
    ("ffff:ffff:ffff:ffff::", 6, 64)])
def test_netmask_prefix(text, version, prefix):
    assert networkd.netmask_prefix(text, field="netmask", source="doc", version=version) == prefix


@pytest.mark.parametrize("text, version", [
    ("255.0.255.0", 4), ("0.0.0.255", 4), ("ffff::", 4), ("255.255.255.0", 6), ("24", 4),
    (24, 4), (None, 4)])
def test_netmask_prefix_refuses_what_is_not_a_netmask(text, version):
    with pytest.raises(InvalidMetadata) as info:
        networkd.netmask_prefix(text, field="a.netmask", source="GET /doc", version=version)
    assert info.value.source == "GET /doc" and "'a.netmask'" in info.value.cause


def test_parse_ip_is_strict_and_canonical():
    assert str(networkd.parse_ip(" 2001:DB8::0:15\n", field="f", source="s")) == "2001:db8::15"
    assert networkd.parse_ip("10.0.0.1", field="f", source="s", version=4).version == 4
    for bad, version in [("fe80::1%eth0", None), ("[::1]", None), ("10.0.0.1 x", None),
                         ("10.0.0.1", 6), ("::1", 4), (167772161, None), ("010.0.0.1", None)]:
        with pytest.raises(InvalidMetadata, match="field 'f' is not an"):
            networkd.parse_ip(bad, field="f", source="s", version=version)


def mode(path):
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_write_files_creates_the_directory_and_writes_each_unit(tmp_path, caplog):
    files = networkd.render([NIC], [BOND])
    target = tmp_path / "run/systemd/network"
    target.parent.mkdir(parents=True)  # the units directory itself is created, never its parents
    with caplog.at_level(logging.INFO, logger="cl_metadata"):
        networkd.write_files(target, files)
    assert sorted(os.listdir(target)) == ["05-bond0.netdev", "10-fa:16:3e:4c:2d:7a.network"]
    for name, content in files.items():
        assert (target / name).read_bytes() == content and mode(target / name) == 0o644
    assert [r.getMessage() for r in caplog.records] == [f"wrote 2 network units to {target}"]


def test_write_files_replaces_its_units_and_leaves_others_alone(tmp_path):
    (tmp_path / "10-fa:16:3e:4c:2d:7a.network").write_text("old\n")
    os.chmod(tmp_path / "10-fa:16:3e:4c:2d:7a.network", 0o600)
    (tmp_path / "50-admin.network").write_text("[Match]\nName=eth9\n")
    networkd.write_files(tmp_path, networkd.render([NIC], []))
    assert (tmp_path / "10-fa:16:3e:4c:2d:7a.network").read_text() == (
        HEADER + "\n[Match]\nMACAddress=fa:16:3e:4c:2d:7a\n")
    assert mode(tmp_path / "10-fa:16:3e:4c:2d:7a.network") == 0o644
    assert (tmp_path / "50-admin.network").read_text() == "[Match]\nName=eth9\n"
    assert sorted(os.listdir(tmp_path)) == ["10-fa:16:3e:4c:2d:7a.network", "50-admin.network"]


@pytest.mark.parametrize("name", ["../10-x.network", "10-x.conf", "x.network", "10-a/b.network"])
def test_write_files_refuses_names_that_are_not_unit_files(tmp_path, name):
    with pytest.raises(ValueError):
        networkd.write_files(tmp_path, {name: b""})
    assert os.listdir(tmp_path) == []
