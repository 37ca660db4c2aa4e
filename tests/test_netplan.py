"""The netplan writer: one exact document per interface description, the same refusals as the
networkd writer, and the output-path rules (mode 0600, created directory, nothing else
touched)."""

import logging
import os
import stat

import pytest

from cl_metadata.network import netplan
from cl_metadata.errors import InvalidMetadata

from network_fixtures import BOND, FIXTURES, NIC, REFUSED

HEADER = "# Written by cl-metadata from the platform's metadata; replaced on every run.\n"

# every fixture the networkd writer is tested with, as netplan reads it: NICs keyed (and
# bond/bridge members named) by MAC, else name; an unmanaged NIC is not listed; a bridge
# without an stp setting says stp: false (netplan's default is on, the kernel's off)
EXPECTED = {
    'mac_canonical': HEADER + (
        'network:\n'
        '  version: 2\n'
        '  ethernets:\n'
        '    "fa:16:3e:4c:2d:7a":\n'
        '      match:\n'
        '        macaddress: "fa:16:3e:4c:2d:7a"\n'
        '      addresses:\n'
        '        - "203.0.113.25/24"\n'
        '        - "2001:db8:1:2::15/64"\n'
        '      nameservers:\n'
        '        addresses:\n'
        '          - "192.0.2.53"\n'
        '          - "2001:db8::53"\n'
        '      routes:\n'
        '        - to: "203.0.113.0/24"\n'
        '          via: "203.0.113.1"\n'
        '        - to: "0.0.0.0/0"\n'
        '          via: "203.0.113.1"\n'
        '        - to: "::/0"\n'
        '          via: "2001:db8:1:2::1"\n'
    ),
    'bond_and_unmanaged': HEADER + (
        'network:\n'
        '  version: 2\n'
        '  ethernets:\n'
        '    "0c:c4:7a:e1:3d:d0":\n'
        '      match:\n'
        '        macaddress: "0c:c4:7a:e1:3d:d0"\n'
        '  bonds:\n'
        '    "bond0":\n'
        '      interfaces:\n'
        '        - "0c:c4:7a:e1:3d:d0"\n'
        '      macaddress: "0c:c4:7a:e1:3d:d0"\n'
        '      parameters:\n'
        '        mode: "802.3ad"\n'
        '        lacp-rate: "fast"\n'
        '      addresses:\n'
        '        - "10.0.0.1/31"\n'
        '      routes:\n'
        '        - to: "10.0.0.0/8"\n'
        '          via: "10.0.0.0"\n'
    ),
    'name_with_dhcp': HEADER + (
        'network:\n'
        '  version: 2\n'
        '  ethernets:\n'
        '    "eth0":\n'
        '      dhcp4: true\n'
        '      addresses:\n'
        '        - "2001:db8::15/64"\n'
        '      routes:\n'
        '        - to: "::/0"\n'
        '          via: "fe80::1"\n'
    ),
    'name_and_mac': HEADER + (
        'network:\n'
        '  version: 2\n'
        '  ethernets:\n'
        '    "fa:16:3e:4c:2d:7a":\n'
        '      match:\n'
        '        macaddress: "fa:16:3e:4c:2d:7a"\n'
        '      dhcp4: true\n'
        '      dhcp6: true\n'
    ),
    'bond_bridge_vlan': HEADER + (
        'network:\n'
        '  version: 2\n'
        '  ethernets:\n'
        '    "00:11:22:33:44:55":\n'
        '      match:\n'
        '        macaddress: "00:11:22:33:44:55"\n'
        '    "00:11:22:33:44:56":\n'
        '      match:\n'
        '        macaddress: "00:11:22:33:44:56"\n'
        '    "eth2": {}\n'
        '  bonds:\n'
        '    "bond0":\n'
        '      interfaces:\n'
        '        - "00:11:22:33:44:55"\n'
        '        - "00:11:22:33:44:56"\n'
        '      macaddress: "00:11:22:33:44:77"\n'
        '      parameters:\n'
        '        mode: "802.3ad"\n'
        '        transmit-hash-policy: "layer2+3"\n'
        '        lacp-rate: "fast"\n'
        '        ad-select: "bandwidth"\n'
        '        mii-monitor-interval: "100ms"\n'
        '        up-delay: "2s"\n'
        '        down-delay: "0s"\n'
        '        min-links: 1\n'
        '      dhcp6: true\n'
        '    "bond1": {}\n'
        '  bridges:\n'
        '    "br0":\n'
        '      interfaces:\n'
        '        - "eth2"\n'
        '        - "vlan100"\n'
        '      parameters:\n'
        '        stp: true\n'
        '        priority: 2048\n'
        '        forward-delay: "4s"\n'
        '        hello-time: "2s"\n'
        '        max-age: "20s"\n'
        '        ageing-time: "300s"\n'
        '      addresses:\n'
        '        - "172.16.1.10/24"\n'
        '      nameservers:\n'
        '        addresses:\n'
        '          - "1.1.1.1"\n'
        '      routes:\n'
        '        - to: "0.0.0.0/0"\n'
        '          via: "172.16.1.1"\n'
        '    "br1":\n'
        '      parameters:\n'
        '        stp: false\n'
        '  vlans:\n'
        '    "bond0.200":\n'
        '      id: 200\n'
        '      link: "bond0"\n'
        '      addresses:\n'
        '        - "192.168.200.10/24"\n'
        '    "vlan100":\n'
        '      id: 100\n'
        '      link: "eth2"\n'
        '      macaddress: "00:11:22:33:44:66"\n'
    ),
    'route_given_twice': HEADER + (
        'network:\n'
        '  version: 2\n'
        '  ethernets:\n'
        '    "eth0":\n'
        '      routes:\n'
        '        - to: "10.0.0.0/8"\n'
        '          via: "10.1.0.1"\n'
        '        - to: "::/0"\n'
        '          via: "2001:db8::1"\n'
    ),
    'vlan_on_a_mac': HEADER + (
        'network:\n'
        '  version: 2\n'
        '  ethernets:\n'
        '    "fa:16:3e:00:00:01":\n'
        '      match:\n'
        '        macaddress: "fa:16:3e:00:00:01"\n'
        '  vlans:\n'
        '    "vlan602":\n'
        '      id: 602\n'
        '      link: "fa:16:3e:00:00:01"\n'
        '      addresses:\n'
        '        - "2.2.2.13/29"\n'
        '      nameservers:\n'
        '        addresses:\n'
        '          - "1.1.1.4"\n'
        '      routes:\n'
        '        - to: "0.0.0.0/0"\n'
        '          via: "2.2.2.9"\n'
    ),
}


@pytest.mark.parametrize("fixture", sorted(EXPECTED))
def test_each_description_is_one_exact_document(fixture):
    assert netplan.render(*FIXTURES[fixture]) == {
        "50-cl-metadata.yaml": EXPECTED[fixture].encode()}


def test_the_document_is_the_yaml_it_looks_like():
    import yaml

    document = yaml.safe_load(netplan.render(*FIXTURES["bond_bridge_vlan"])["50-cl-metadata.yaml"])
    network = document["network"]
    assert sorted(network) == ["bonds", "bridges", "ethernets", "version", "vlans"]
    assert network["bonds"]["bond0"]["interfaces"] == ["00:11:22:33:44:55", "00:11:22:33:44:56"]
    assert network["bonds"]["bond1"] == {} and network["ethernets"]["eth2"] == {}
    assert network["vlans"]["vlan100"] == {"id": 100, "link": "eth2",
                                           "macaddress": "00:11:22:33:44:66"}


def test_nothing_to_render():
    assert netplan.render([], []) == {}


@pytest.mark.parametrize("interface, netdev, cause", REFUSED)
def test_values_that_could_change_the_document_are_refused(interface, netdev, cause):
    with pytest.raises(InvalidMetadata) as info:
        netplan.render([NIC, interface] if interface else [NIC], [netdev] if netdev else [BOND])
    where = "interface 1" if interface else "netdev 0"
    assert info.value.source == "network units"
    assert info.value.cause.startswith(where + ": ") and cause in info.value.cause
    assert "6.6.6.6" not in str(info.value) and "\n" not in str(info.value)


def test_two_devices_with_one_id_are_refused():
    from cl_metadata.model import NetworkInterface

    with pytest.raises(InvalidMetadata, match="interface 0 and interface 2: would be written to "
                                              "the same file"):
        netplan.render([NIC, NetworkInterface(name="eth1"),
                        NetworkInterface(mac=NIC.mac.upper(), priority=20)], [])


def mode(path):
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_write_files_creates_the_directory_and_writes_the_document_0600(tmp_path, caplog):
    files = netplan.render(*FIXTURES["mac_canonical"])
    target = tmp_path / "run/netplan"
    target.parent.mkdir(parents=True)  # the directory itself is created, never its parents
    with caplog.at_level(logging.INFO, logger="cl_metadata"):
        netplan.write_files(target, files)
    assert os.listdir(target) == ["50-cl-metadata.yaml"]
    assert (target / "50-cl-metadata.yaml").read_bytes() == files["50-cl-metadata.yaml"]
    assert mode(target / "50-cl-metadata.yaml") == 0o600 and mode(target) == 0o755
    assert [r.getMessage() for r in caplog.records] == [
        f"wrote the netplan document 50-cl-metadata.yaml to {target}"]


def test_write_files_replaces_its_document_and_leaves_others_alone(tmp_path):
    (tmp_path / "50-cl-metadata.yaml").write_text("old\n")
    os.chmod(tmp_path / "50-cl-metadata.yaml", 0o644)
    (tmp_path / "01-admin.yaml").write_text("network: {version: 2}\n")
    netplan.write_files(tmp_path, netplan.render(*FIXTURES["name_and_mac"]))
    assert (tmp_path / "50-cl-metadata.yaml").read_text() == EXPECTED["name_and_mac"]
    assert mode(tmp_path / "50-cl-metadata.yaml") == 0o600
    assert (tmp_path / "01-admin.yaml").read_text() == "network: {version: 2}\n"


@pytest.mark.parametrize("name", ["../50-cl-metadata.yaml", "10-x.yaml", "x.network"])
def test_write_files_refuses_other_names(tmp_path, name):
    with pytest.raises(ValueError):
        netplan.write_files(tmp_path, {name: b""})
    assert os.listdir(tmp_path) == []
