"""The NetworkManager writer: exact keyfiles per interface description, the same refusals as
the networkd writer, NetworkManager's own limits, and the output-path rules (mode 0600)."""

import logging
import os
import stat

import pytest

from cl_metadata.network import networkmanager
from cl_metadata.errors import InvalidMetadata
from cl_metadata.model import BridgeOptions, NetworkInterface, Route, VirtualNetDev

from network_fixtures import BOND, FIXTURES, NIC, REFUSED

HEADER = "# Written by cl-metadata from the platform's metadata; replaced on every run.\n"

# every fixture the networkd writer is tested with, as NetworkManager profiles: named like the
# units, one profile per device (a bond, bridge or VLAN with its addressing), members naming
# their master and carrying no addressing, no profile for an unmanaged NIC, a VLAN on a NIC
# matched by MAC naming its parent by the parent profile's uuid
EXPECTED = {
    'mac_canonical': {
        '10-fa:16:3e:4c:2d:7a.nmconnection': HEADER + (
            '\n'
            '[connection]\n'
            'id=cl-metadata-fa:16:3e:4c:2d:7a\n'
            'uuid=43c2aa19-f186-8176-a10e-c70351230c7b\n'
            'type=ethernet\n'
            '\n'
            '[ethernet]\n'
            'mac-address=fa:16:3e:4c:2d:7a\n'
            '\n'
            '[ipv4]\n'
            'method=manual\n'
            'address1=203.0.113.25/24\n'
            'dns=192.0.2.53;\n'
            'route1=203.0.113.0/24,203.0.113.1\n'
            'route2=0.0.0.0/0,203.0.113.1\n'
            '\n'
            '[ipv6]\n'
            'method=auto\n'
            'address1=2001:db8:1:2::15/64\n'
            'dns=2001:db8::53;\n'
            'route1=::/0,2001:db8:1:2::1\n'
        ),
    },
    'bond_and_unmanaged': {
        '05-bond0.nmconnection': HEADER + (
            '\n'
            '[connection]\n'
            'id=cl-metadata-bond0\n'
            'uuid=a60060a3-0814-894c-a483-82260e075633\n'
            'type=bond\n'
            'interface-name=bond0\n'
            '\n'
            '[ethernet]\n'
            'cloned-mac-address=0c:c4:7a:e1:3d:d0\n'
            '\n'
            '[bond]\n'
            'mode=802.3ad\n'
            'lacp_rate=fast\n'
            '\n'
            '[ipv4]\n'
            'method=manual\n'
            'address1=10.0.0.1/31\n'
            'route1=10.0.0.0/8,10.0.0.0\n'
            '\n'
            '[ipv6]\n'
            'method=auto\n'
        ),
        '10-0c:c4:7a:e1:3d:d0.nmconnection': HEADER + (
            '\n'
            '[connection]\n'
            'id=cl-metadata-0c:c4:7a:e1:3d:d0\n'
            'uuid=a7cdb866-de72-86b7-ae14-d1aabfc27eff\n'
            'type=ethernet\n'
            'master=bond0\n'
            'slave-type=bond\n'
            '\n'
            '[ethernet]\n'
            'mac-address=0c:c4:7a:e1:3d:d0\n'
        ),
    },
    'name_with_dhcp': {
        '20-eth0.nmconnection': HEADER + (
            '\n'
            '[connection]\n'
            'id=cl-metadata-eth0\n'
            'uuid=77eb24d1-2d65-897b-8c53-84240dd2e91a\n'
            'type=ethernet\n'
            'interface-name=eth0\n'
            '\n'
            '[ipv4]\n'
            'method=auto\n'
            '\n'
            '[ipv6]\n'
            'method=auto\n'
            'address1=2001:db8::15/64\n'
            'route1=::/0,fe80::1\n'
        ),
    },
    'name_and_mac': {
        '20-fa:16:3e:4c:2d:7a.nmconnection': HEADER + (
            '\n'
            '[connection]\n'
            'id=cl-metadata-fa:16:3e:4c:2d:7a\n'
            'uuid=e49bf6ef-b41a-8d1b-bd82-a4c36c87da86\n'
            'type=ethernet\n'
            '\n'
            '[ethernet]\n'
            'mac-address=fa:16:3e:4c:2d:7a\n'
            '\n'
            '[ipv4]\n'
            'method=auto\n'
            '\n'
            '[ipv6]\n'
            'method=auto\n'
        ),
    },
    'bond_bridge_vlan': {
        '05-bond0.200.nmconnection': HEADER + (
            '\n'
            '[connection]\n'
            'id=cl-metadata-bond0.200\n'
            'uuid=299d35fb-960e-8e05-9774-8597062308cb\n'
            'type=vlan\n'
            'interface-name=bond0.200\n'
            '\n'
            '[vlan]\n'
            'id=200\n'
            'parent=bond0\n'
            '\n'
            '[ipv4]\n'
            'method=manual\n'
            'address1=192.168.200.10/24\n'
            '\n'
            '[ipv6]\n'
            'method=auto\n'
        ),
        '05-bond0.nmconnection': HEADER + (
            '\n'
            '[connection]\n'
            'id=cl-metadata-bond0\n'
            'uuid=a60060a3-0814-894c-a483-82260e075633\n'
            'type=bond\n'
            'interface-name=bond0\n'
            '\n'
            '[ethernet]\n'
            'cloned-mac-address=00:11:22:33:44:77\n'
            '\n'
            '[bond]\n'
            'mode=802.3ad\n'
            'xmit_hash_policy=layer2+3\n'
            'lacp_rate=fast\n'
            'ad_select=bandwidth\n'
            'miimon=100\n'
            'updelay=2000\n'
            'downdelay=0\n'
            'min_links=1\n'
            '\n'
            '[ipv4]\n'
            'method=disabled\n'
            '\n'
            '[ipv6]\n'
            'method=auto\n'
        ),
        '05-bond1.nmconnection': HEADER + (
            '\n'
            '[connection]\n'
            'id=cl-metadata-bond1\n'
            'uuid=927a1b40-bd64-89c4-a1bd-a156b0be2296\n'
            'type=bond\n'
            'interface-name=bond1\n'
            '\n'
            '[ipv4]\n'
            'method=disabled\n'
            '\n'
            '[ipv6]\n'
            'method=auto\n'
        ),
        '05-br0.nmconnection': HEADER + (
            '\n'
            '[connection]\n'
            'id=cl-metadata-br0\n'
            'uuid=f4f33d4d-13c7-8b11-9c64-a715ea7ebf5e\n'
            'type=bridge\n'
            'interface-name=br0\n'
            '\n'
            '[bridge]\n'
            'stp=true\n'
            'priority=2048\n'
            'forward-delay=4\n'
            'hello-time=2\n'
            'max-age=20\n'
            'ageing-time=300\n'
            '\n'
            '[ipv4]\n'
            'method=manual\n'
            'address1=172.16.1.10/24\n'
            'dns=1.1.1.1;\n'
            'route1=0.0.0.0/0,172.16.1.1\n'
            '\n'
            '[ipv6]\n'
            'method=auto\n'
        ),
        '05-br1.nmconnection': HEADER + (
            '\n'
            '[connection]\n'
            'id=cl-metadata-br1\n'
            'uuid=ed4f404a-8b01-8812-a302-2334b1694d9b\n'
            'type=bridge\n'
            'interface-name=br1\n'
            '\n'
            '[bridge]\n'
            'stp=false\n'
            '\n'
            '[ipv4]\n'
            'method=disabled\n'
            '\n'
            '[ipv6]\n'
            'method=auto\n'
        ),
        '05-vlan100.nmconnection': HEADER + (
            '\n'
            '[connection]\n'
            'id=cl-metadata-vlan100\n'
            'uuid=b1b0e3fe-df88-85fc-ad51-abbe7fa76226\n'
            'type=vlan\n'
            'interface-name=vlan100\n'
            'master=br0\n'
            'slave-type=bridge\n'
            '\n'
            '[ethernet]\n'
            'cloned-mac-address=00:11:22:33:44:66\n'
            '\n'
            '[vlan]\n'
            'id=100\n'
            'parent=eth2\n'
        ),
        '10-00:11:22:33:44:55.nmconnection': HEADER + (
            '\n'
            '[connection]\n'
            'id=cl-metadata-00:11:22:33:44:55\n'
            'uuid=8e93c6ea-d45e-849c-bf29-d8dcfa464f50\n'
            'type=ethernet\n'
            'master=bond0\n'
            'slave-type=bond\n'
            '\n'
            '[ethernet]\n'
            'mac-address=00:11:22:33:44:55\n'
        ),
        '10-00:11:22:33:44:56.nmconnection': HEADER + (
            '\n'
            '[connection]\n'
            'id=cl-metadata-00:11:22:33:44:56\n'
            'uuid=327d692e-5422-876d-9e77-ec260817526f\n'
            'type=ethernet\n'
            'master=bond0\n'
            'slave-type=bond\n'
            '\n'
            '[ethernet]\n'
            'mac-address=00:11:22:33:44:56\n'
        ),
        '10-eth2.nmconnection': HEADER + (
            '\n'
            '[connection]\n'
            'id=cl-metadata-eth2\n'
            'uuid=37391565-d5e3-8c7b-b297-c48f466845bf\n'
            'type=ethernet\n'
            'interface-name=eth2\n'
            'master=br0\n'
            'slave-type=bridge\n'
        ),
    },
    'route_given_twice': {
        '10-eth0.nmconnection': HEADER + (
            '\n'
            '[connection]\n'
            'id=cl-metadata-eth0\n'
            'uuid=e334de2a-e44d-86d4-a27b-57d627c1d5ad\n'
            'type=ethernet\n'
            'interface-name=eth0\n'
            '\n'
            '[ipv4]\n'
            'method=disabled\n'
            '\n'
            '[ipv6]\n'
            'method=auto\n'
            'route1=::/0,2001:db8::1\n'
        ),
    },
    'vlan_on_a_mac': {
        '05-vlan602.nmconnection': HEADER + (
            '\n'
            '[connection]\n'
            'id=cl-metadata-vlan602\n'
            'uuid=f352f0c9-722d-8879-9cbf-9ea7dbfdc56f\n'
            'type=vlan\n'
            'interface-name=vlan602\n'
            '\n'
            '[vlan]\n'
            'id=602\n'
            'parent=cbb32dcb-7c81-823c-98d9-ff083172d3db\n'
            '\n'
            '[ipv4]\n'
            'method=manual\n'
            'address1=2.2.2.13/29\n'
            'dns=1.1.1.4;\n'
            'route1=0.0.0.0/0,2.2.2.9\n'
            '\n'
            '[ipv6]\n'
            'method=auto\n'
        ),
        '10-fa:16:3e:00:00:01.nmconnection': HEADER + (
            '\n'
            '[connection]\n'
            'id=cl-metadata-fa:16:3e:00:00:01\n'
            'uuid=cbb32dcb-7c81-823c-98d9-ff083172d3db\n'
            'type=ethernet\n'
            '\n'
            '[ethernet]\n'
            'mac-address=fa:16:3e:00:00:01\n'
            '\n'
            '[ipv4]\n'
            'method=disabled\n'
            '\n'
            '[ipv6]\n'
            'method=auto\n'
        ),
    },
}


@pytest.mark.parametrize("fixture", sorted(EXPECTED))
def test_each_description_gives_exact_profiles(fixture):
    profiles = networkmanager.render(*FIXTURES[fixture])
    assert {name: text.decode() for name, text in profiles.items()} == EXPECTED[fixture]


def test_uuids_are_stable_and_distinct():
    first = networkmanager.render(*FIXTURES["bond_bridge_vlan"])
    assert networkmanager.render(*FIXTURES["bond_bridge_vlan"]) == first
    uuids = [line for text in first.values() for line in text.decode().splitlines()
             if line.startswith("uuid=")]
    assert len(uuids) == len(first) == len(set(uuids))


def test_ipv4_nameservers_and_routes_without_ipv4_are_left_out_with_a_warning(caplog):
    interface = NetworkInterface(name="eth0", dhcp="ipv6", nameservers=("192.0.2.53",),
                                 routes=(Route("10.0.0.0/8", "10.0.0.1"),))
    with caplog.at_level(logging.WARNING, logger="cl_metadata"):
        profiles = networkmanager.render([interface], [])
    text = profiles["10-eth0.nmconnection"].decode()
    assert "[ipv4]\nmethod=disabled\n\n[ipv6]\nmethod=auto\n" in text
    assert "192.0.2.53" not in text and "10.0.0" not in text
    assert [r.getMessage() for r in caplog.records] == [
        "NetworkManager profiles: interface 0: IPv4 nameservers and routes left out: the "
        "profile has no IPv4 address or DHCP"]


@pytest.mark.parametrize("options, cause", [
    (BridgeOptions(forward_delay_ms=1500), "forward delay is not whole seconds from 2 to 30"),
    (BridgeOptions(forward_delay_ms=1000), "forward delay"),
    (BridgeOptions(stp=True, forward_delay_ms=0), "forward delay"),
    (BridgeOptions(forward_delay_ms=31000), "forward delay"),
    (BridgeOptions(hello_time_ms=11000), "hello time"),
    (BridgeOptions(max_age_ms=5000), "max age"),
])
def test_bridge_times_networkmanager_cannot_hold_are_refused(options, cause):
    with pytest.raises(InvalidMetadata) as info:
        networkmanager.render([], [VirtualNetDev(name="br0", kind="bridge", bridge=options)])
    assert info.value.cause.startswith("netdev 0: ") and cause in info.value.cause


def test_a_bridge_without_stp_may_forward_at_once():
    profiles = networkmanager.render([], [VirtualNetDev(name="br0", kind="bridge", bridge=(
        BridgeOptions(stp=False, forward_delay_ms=0, hello_time_ms=0, max_age_ms=0)))])
    assert "\n[bridge]\nstp=false\nforward-delay=0\nhello-time=0\nmax-age=0\n" in \
        profiles["05-br0.nmconnection"].decode()


def test_nothing_to_render():
    assert networkmanager.render([], []) == {}


@pytest.mark.parametrize("interface, netdev, cause", REFUSED)
def test_values_that_could_change_a_profile_are_refused(interface, netdev, cause):
    with pytest.raises(InvalidMetadata) as info:
        networkmanager.render([NIC, interface] if interface else [NIC],
                              [netdev] if netdev else [BOND])
    where = "interface 1" if interface else "netdev 0"
    assert info.value.source == "network units"
    assert info.value.cause.startswith(where + ": ") and cause in info.value.cause
    assert "6.6.6.6" not in str(info.value) and "\n" not in str(info.value)


def test_two_profiles_with_one_file_name_are_refused():
    with pytest.raises(InvalidMetadata, match="interface 0 and interface 2: would be written to "
                                              "the same file"):
        networkmanager.render([NIC, NetworkInterface(name="eth1"),
                               NetworkInterface(mac=NIC.mac.upper())], [])


def test_two_configurations_of_one_virtual_device_are_refused():
    with pytest.raises(InvalidMetadata, match="interface 0 and interface 1: would be written to "
                                              "the same file"):
        networkmanager.render([NetworkInterface(name="bond0", priority=5),
                               NetworkInterface(name="bond0", priority=7)], [BOND])


def mode(path):
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_write_files_creates_the_directory_and_writes_each_profile_0600(tmp_path, caplog):
    files = networkmanager.render(*FIXTURES["bond_and_unmanaged"])
    target = tmp_path / "run/NetworkManager/system-connections"
    target.parent.mkdir(parents=True)
    with caplog.at_level(logging.INFO, logger="cl_metadata"):
        networkmanager.write_files(target, files)
    assert sorted(os.listdir(target)) == ["05-bond0.nmconnection",
                                          "10-0c:c4:7a:e1:3d:d0.nmconnection"]
    for name, content in files.items():
        assert (target / name).read_bytes() == content and mode(target / name) == 0o600
    assert [r.getMessage() for r in caplog.records] == [
        f"wrote 2 NetworkManager profiles to {target}"]


def test_write_files_replaces_its_profiles_and_leaves_others_alone(tmp_path):
    (tmp_path / "20-eth0.nmconnection").write_text("old\n")
    (tmp_path / "admin.nmconnection").write_text("[connection]\nid=admin\n")
    networkmanager.write_files(tmp_path, networkmanager.render(*FIXTURES["name_with_dhcp"]))
    assert (tmp_path / "20-eth0.nmconnection").read_text() == \
        EXPECTED["name_with_dhcp"]["20-eth0.nmconnection"]
    assert mode(tmp_path / "20-eth0.nmconnection") == 0o600
    assert (tmp_path / "admin.nmconnection").read_text() == "[connection]\nid=admin\n"


@pytest.mark.parametrize("name", ["../10-x.nmconnection", "10-x.conf", "x.nmconnection",
                                  "10-a/b.nmconnection"])
def test_write_files_refuses_names_that_are_not_profiles(tmp_path, name):
    with pytest.raises(ValueError):
        networkmanager.write_files(tmp_path, {name: b""})
    assert os.listdir(tmp_path) == []
