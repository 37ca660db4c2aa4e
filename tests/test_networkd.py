"""The one systemd-networkd renderer and writer: exact unit files, canonical values, and no way
for metadata text to add a line or a section to a unit."""

import logging
import os
import stat

import pytest

from cl_metadata import networkd
from cl_metadata.errors import InvalidMetadata
from cl_metadata.model import NetworkInterface, Route, VirtualNetDev

HEADER = "# Written by cl-metadata from the platform's metadata; replaced on every run.\n"
BOND_SETTINGS = (("Mode", "802.3ad"), ("LACPTransmitRate", "fast"))


def test_unit_matched_by_mac_with_canonical_values():
    interface = NetworkInterface(
        mac="FA:16:3E:4C:2D:7A", nameservers=("192.0.2.53", "2001:DB8:0::53"),
        addresses=("203.0.113.25/24", "2001:db8:1:2:0:0:0:15/64"),
        routes=(Route("203.0.113.25/24", "203.0.113.1"), Route("0.0.0.0/0", "203.0.113.1"),
                Route("::/0", "2001:db8:1:2::1")))
    assert networkd.render([interface], []) == {"10-fa:16:3e:4c:2d:7a.network": (
        HEADER +
        "\n[Match]\nMACAddress=fa:16:3e:4c:2d:7a\n"
        "\n[Network]\nDNS=192.0.2.53\nDNS=2001:db8::53\n"
        "\n[Address]\nAddress=203.0.113.25/24\n"
        "\n[Address]\nAddress=2001:db8:1:2::15/64\n"
        "\n[Route]\nDestination=203.0.113.0/24\nGateway=203.0.113.1\n"
        "\n[Route]\nDestination=0.0.0.0/0\nGateway=203.0.113.1\n"
        "\n[Route]\nDestination=::/0\nGateway=2001:db8:1:2::1\n").encode()}


def test_bond_with_a_slave_an_unmanaged_nic_and_its_netdev():
    interfaces = [
        NetworkInterface(mac="0c:c4:7a:e1:3d:d0", bond="bond0"),
        NetworkInterface(mac="0c:c4:7a:e1:3d:d1", unmanaged=True),
        NetworkInterface(name="bond0", priority=5, addresses=("10.0.0.1/31",),
                         routes=(Route("10.0.0.0/8", "10.0.0.0"),)),
    ]
    netdevs = [VirtualNetDev(name="bond0", kind="bond", mac="0c:c4:7a:e1:3d:d0", priority=5,
                             sections=(("Bond", BOND_SETTINGS),))]
    assert networkd.render(interfaces, netdevs) == {
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
    interface = NetworkInterface(name="eth0", priority=20, dhcp="ipv4",
                                 addresses=("2001:db8::15/64",), routes=(Route("::/0", "fe80::1"),))
    assert networkd.render([interface], []) == {"20-eth0.network": (
        HEADER + "\n[Match]\nName=eth0\n\n[Network]\nDHCP=ipv4\n"
        "\n[Address]\nAddress=2001:db8::15/64\n"
        "\n[Route]\nDestination=::/0\nGateway=fe80::1\n").encode()}


def test_nothing_to_render():
    assert networkd.render([], []) == {}


HOSTILE = "6.6.6.6\n[Network]\nDNS=6.6.6.6"
NIC = NetworkInterface(mac="fa:16:3e:4c:2d:7a")
BOND = VirtualNetDev(name="bond0", kind="bond")


@pytest.mark.parametrize("interface, netdev, cause", [
    (NetworkInterface(mac="fa:16:3e:4c:2d:7a\n[Network]\nDNS=6.6.6.6"), None, "MAC address"),
    (NetworkInterface(mac="fa:16:3e:4c:2d"), None, "MAC address"),
    (NetworkInterface(name="eth0\nUnmanaged=no"), None, "name"),
    (NetworkInterface(name="eth0/../x"), None, "name"),
    (NetworkInterface(name="a-name-longer-than-15"), None, "name"),
    (NetworkInterface(mac=NIC.mac, bond="bond0\n[Link]"), None, "bond"),
    (NetworkInterface(mac=NIC.mac, addresses=("10.0.0.1]/24",)), None, "address 0"),
    (NetworkInterface(mac=NIC.mac, addresses=("[2001:db8::1]/64",)), None, "address 0"),
    (NetworkInterface(mac=NIC.mac, addresses=("10.0.0.1/24\n" + HOSTILE,)), None, "address 0"),
    (NetworkInterface(mac=NIC.mac, addresses=("fe80::1%eth0/64",)), None, "address 0"),
    (NetworkInterface(mac=NIC.mac, addresses=("10.0.0.1",)), None, "address 0"),
    (NetworkInterface(mac=NIC.mac, addresses=("10.0.0.1/33",)), None, "address 0"),
    (NetworkInterface(mac=NIC.mac, nameservers=("192.0.2.53\nDNS=6.6.6.6",)), None, "nameserver 0"),
    (NetworkInterface(mac=NIC.mac, nameservers=("fe80::53%eth0",)), None, "nameserver 0"),
    (NetworkInterface(mac=NIC.mac, routes=(Route("0.0.0.0/0\n[Route]", "10.0.0.1"),)), None,
     "route 0"),
    (NetworkInterface(mac=NIC.mac, routes=(Route("0.0.0.0/0", "10.0.0.1\n" + HOSTILE),)), None,
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
    (None, VirtualNetDev(name="bond0", kind="bond", sections=(("Bond]\n[Network", ()),)),
     "section name"),
    (None, VirtualNetDev(name="bond0", kind="bond", sections=(("Bond", (("Mode\n", "x"),)),)),
     "setting name"),
    (None, VirtualNetDev(name="bond0", kind="bond",
                         sections=(("Bond", (("Mode", "802.3ad\n" + HOSTILE),)),)), "value"),
    (None, VirtualNetDev(name="bond0", kind="bond", sections=(("Bond", (("Mode", "a b"),)),)),
     "value"),
])
def test_values_that_could_change_a_unit_are_refused(interface, netdev, cause):
    with pytest.raises(InvalidMetadata) as info:
        networkd.render([NIC, interface] if interface else [NIC], [netdev] if netdev else [])
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
