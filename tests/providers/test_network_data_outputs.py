"""The three network outputs end to end: OpenStack-family platforms describing static networks
in ``network_data.json``, ``--network-units``, ``--netplan-config`` and
``--networkmanager-profiles`` written by the real process, ``network_data.json`` fetched only for
a network output, and bad network data failing with one line and nothing written anywhere."""

import json
import os
import stat

import pytest

from cl_metadata.network import networkd, netplan, networkmanager
from cl_metadata.fakeserver.faults import Fault
from cl_metadata.model import BondOptions, NetworkInterface, Route, VirtualNetDev

from conftest import make_context, run_agent
from network_fixtures import OPENSTACK_BOND_VLAN
from drive_fixtures import SAMPLE, open_provider, write_drive

NETWORK_DATA = "openstack/latest/network_data.json"
NETWORK_DATA_PATH = "/" + NETWORK_DATA
BOND_VLAN_BODY = json.dumps(OPENSTACK_BOND_VLAN).encode()
WRITERS = {"--network-units": networkd, "--netplan-config": netplan,
           "--networkmanager-profiles": networkmanager}
MODES = {"--network-units": 0o644, "--netplan-config": 0o600,
         "--networkmanager-profiles": 0o600}

# what OPENSTACK_BOND_VLAN describes: the bond of the two NICs (matched by MAC) with DHCPv6 and
# the dns service, the VLAN on it with its static address, routes and the dns service
BOND_VLAN_MODEL = ([
    NetworkInterface(mac="fa:16:3e:34:6e:3c", bond="bond0"),
    NetworkInterface(mac="fa:16:3e:34:6e:3d", bond="bond0"),
    NetworkInterface(name="bond0", priority=5, nameservers=("1.1.1.4",), dhcp="ipv6",
                     vlans=("bond0.602",)),
    NetworkInterface(name="bond0.602", priority=5, addresses=("2.2.2.13/29",),
                     routes=(Route("0.0.0.0/0", "2.2.2.9"), Route("10.0.0.0/8", "2.2.2.10")),
                     nameservers=("1.1.1.4",)),
], [
    VirtualNetDev(name="bond0", kind="bond", mac="fa:16:3e:34:6e:3c", priority=5,
                  bond=BondOptions(mode="802.3ad", transmit_hash_policy="layer3+4",
                                   mii_monitor_ms=100)),
    VirtualNetDev(name="bond0.602", kind="vlan", mac="fa:16:3e:34:6e:3c", priority=5,
                  vlan_id=602),
])
DRIVE_PLATFORMS = ("openstack", "cloudstack-configdrive", "nutanix")


# --- the providers ---------------------------------------------------------------------------

@pytest.mark.parametrize("platform", DRIVE_PLATFORMS)
def test_drive_network_data_gives_interfaces_matched_by_mac(platform, tmp_path):
    root = write_drive(tmp_path, platform, replace={NETWORK_DATA: BOND_VLAN_BODY})
    provider = open_provider(platform, root)
    assert "network-units" in type(provider).features
    interfaces, netdevs = provider.network()
    assert (interfaces, netdevs) == (list(BOND_VLAN_MODEL[0]), list(BOND_VLAN_MODEL[1]))


@pytest.mark.parametrize("platform", DRIVE_PLATFORMS)
def test_a_drive_without_network_data_describes_no_interfaces(platform, tmp_path):
    root = write_drive(tmp_path, platform, drop=[NETWORK_DATA])
    assert open_provider(platform, root).network() == ([], [])


@pytest.mark.parametrize("platform", ("openstack-metadata", "openstack"))
def test_the_metadata_service_serves_network_data(platform, fake_server):
    from cl_metadata import registry

    server = fake_server("openstack-metadata",
                         faults=[Fault(NETWORK_DATA_PATH, "malformed", BOND_VLAN_BODY.decode())])
    provider = registry.provider_class(platform)(make_context(server))  # no drive: the service
    interfaces, netdevs = provider.network()
    assert (interfaces, netdevs) == (list(BOND_VLAN_MODEL[0]), list(BOND_VLAN_MODEL[1]))
    assert [r["path"] for r in server.requests] == [NETWORK_DATA_PATH]


def test_a_service_without_network_data_describes_no_interfaces(fake_server):
    from cl_metadata.providers.openstack_metadata import OpenStackMetadataProvider

    server = fake_server("openstack-metadata", faults=[Fault(NETWORK_DATA_PATH, "status", 404)])
    assert OpenStackMetadataProvider(make_context(server)).network() == ([], [])


def test_bad_service_network_data_names_the_url_and_field(fake_server):
    from cl_metadata.errors import InvalidMetadata
    from cl_metadata.providers.openstack_metadata import OpenStackMetadataProvider

    bad = {"links": [{"id": "eth0", "ethernet_mac_address": "6.6.6.6"}],
           "networks": [{"link": "eth0", "type": "ipv4_dhcp"}]}
    server = fake_server("openstack-metadata",
                         faults=[Fault(NETWORK_DATA_PATH, "malformed", json.dumps(bad))])
    with pytest.raises(InvalidMetadata) as info:
        OpenStackMetadataProvider(make_context(server)).network()
    assert info.value.source == "GET http://169.254.169.254" + NETWORK_DATA_PATH
    assert "links[0].ethernet_mac_address" in info.value.cause and "6.6.6.6" not in str(info.value)


# --- the real process ------------------------------------------------------------------------

def output_dirs(tmp_path):
    dirs = {flag: tmp_path / "out" / flag.strip("-") for flag in WRITERS}
    for directory in dirs.values():
        directory.mkdir(parents=True)
    return dirs


def snapshot(directory):
    return {path.name: path.read_bytes() for path in directory.iterdir()}


def test_real_process_writes_all_three_stacks_from_a_drive(tmp_path, agent_env):
    root = write_drive(tmp_path, "openstack", replace={NETWORK_DATA: BOND_VLAN_BODY})
    dirs = output_dirs(tmp_path)
    env = dict(agent_env, CL_METADATA_CONFIG_DRIVE=str(root))
    args = [arg for flag, directory in dirs.items() for arg in (flag, directory)]
    result = run_agent("--provider", "openstack", *args, env=env)
    assert result.returncode == 0, result.stderr
    for flag, directory in dirs.items():
        expected = WRITERS[flag].render(*BOND_VLAN_MODEL)
        assert snapshot(directory) == expected, flag
        for name in expected:
            assert stat.S_IMODE(os.lstat(directory / name).st_mode) == MODES[flag]
    assert sorted(snapshot(dirs["--network-units"])) == [
        "05-bond0.602.netdev", "05-bond0.602.network", "05-bond0.netdev", "05-bond0.network",
        "10-fa:16:3e:34:6e:3c.network", "10-fa:16:3e:34:6e:3d.network"]


def test_real_process_fetches_network_data_only_for_a_network_output(tmp_path, agent_env,
                                                                      fake_server):
    server = fake_server("openstack-metadata", instance=SAMPLE)
    env = dict(agent_env, CL_METADATA_ENDPOINT=server.url)
    attributes = tmp_path / "attributes"
    result = run_agent("--provider", "openstack-metadata", "--attributes", attributes, env=env)
    assert result.returncode == 0, result.stderr
    assert NETWORK_DATA_PATH not in [r["path"] for r in server.requests]

    seen = len(server.requests)
    target = tmp_path / "profiles"
    result = run_agent("--provider", "openstack-metadata", "--networkmanager-profiles", target,
                       env=env)
    assert result.returncode == 0, result.stderr
    assert [r["path"] for r in server.requests[seen:]] == [NETWORK_DATA_PATH]
    assert sorted(os.listdir(target)) == ["10-fa:16:3e:4c:2d:7a.nmconnection",
                                          "10-fa:16:3e:4c:2d:7b.nmconnection"]
    assert "address1=10.0.1.15/24\ndns=192.0.2.53;\nroute1=0.0.0.0/0,10.0.1.1\n" in \
        (target / "10-fa:16:3e:4c:2d:7a.nmconnection").read_text()


BAD_NETWORK_DATA = [
    ("links[0].ethernet_mac_address", {"links": [{"id": "l", "ethernet_mac_address": "x\ny"}],
                                       "networks": [{"link": "l", "type": "ipv4_dhcp"}]}),
    ("networks[0].ip_address", {"links": [{"id": "l", "ethernet_mac_address": "fa:16:3e:00:00:01"}],
                                "networks": [{"link": "l", "type": "ipv4",
                                              "ip_address": "6.6.6.6\n[Network]"}]}),
    ("links[1].vlan_link", {"links": [{"id": "l", "ethernet_mac_address": "fa:16:3e:00:00:01"},
                                      {"id": "v", "type": "vlan", "vlan_id": 5,
                                       "vlan_link": "nowhere"}]}),
]


@pytest.mark.parametrize("flag", ["--netplan-config", "--networkmanager-profiles"])
def test_an_unusable_directory_is_refused_before_the_platform_is_asked(flag, tmp_path,
                                                                      agent_env, fake_server):
    server = fake_server("openstack-metadata")
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    env = dict(agent_env, CL_METADATA_ENDPOINT=server.url)
    for target, cause in ((tmp_path / "link", "is a symbolic link; refusing to follow it"),
                          (tmp_path / "etc/netplan", "does not exist")):
        result = run_agent("--provider", "openstack-metadata", flag, target, env=env)
        assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
        assert f"{target}: " in result.stderr and cause in result.stderr
    assert server.requests == [] and os.listdir(tmp_path / "real") == []


@pytest.mark.parametrize("flags", [("--network-units",), ("--netplan-config",),
                                   ("--networkmanager-profiles",), tuple(WRITERS)])
@pytest.mark.parametrize("field, document", BAD_NETWORK_DATA)
def test_bad_network_data_fails_with_one_line_and_writes_nothing_anywhere(
        tmp_path, agent_env, flags, field, document):
    root = write_drive(tmp_path, "openstack",
                       replace={NETWORK_DATA: json.dumps(document).encode()})
    dirs = output_dirs(tmp_path)
    for directory in dirs.values():  # what an earlier run or the administrator left there
        (directory / "previous").write_text("previous\n")
    attributes = tmp_path / "out/attributes"
    attributes.write_text("previous\n")
    env = dict(agent_env, CL_METADATA_CONFIG_DRIVE=str(root))
    args = [arg for flag in flags for arg in (flag, dirs[flag])]
    result = run_agent("--provider", "openstack", "--attributes", attributes, *args, env=env)
    assert result.returncode == 1, result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith(
        "cl-metadata: error: openstack: "), result.stderr
    assert NETWORK_DATA in result.stderr and field in result.stderr
    assert "6.6.6.6" not in result.stderr
    assert attributes.read_text() == "previous\n"
    for directory in dirs.values():
        assert snapshot(directory) == {"previous": b"previous\n"}


@pytest.mark.parametrize("flags", [("--networkmanager-profiles",),
                                   ("--network-units", "--netplan-config",
                                    "--networkmanager-profiles")])
def test_what_one_stack_cannot_hold_fails_the_run_before_any_stack_is_written(
        tmp_path, agent_env, flags):
    # networkd and netplan take a 1.5 s forward delay; NetworkManager counts whole seconds:
    # every stack is rendered before any is written
    network_config = ("version: 2\nethernets: {eth0: {match: {macaddress: "
                      "'52:54:00:00:00:03'}}}\nbridges:\n  br0:\n    interfaces: [eth0]\n"
                      "    parameters: {forward-delay: 1500ms}\n")
    root = write_drive(tmp_path, "nocloud", replace={"network-config": network_config.encode()})
    dirs = output_dirs(tmp_path)
    env = dict(agent_env, CL_METADATA_CONFIG_DRIVE=str(root))
    args = [arg for flag in flags for arg in (flag, dirs[flag])]
    result = run_agent("--provider", "nocloud", *args, env=env)
    assert result.returncode == 1, result.stderr
    assert result.stderr == ("cl-metadata: error: nocloud: network units: netdev 0: forward "
                             "delay is not whole seconds from 2 to 30 (or 0 without STP), as "
                             "NetworkManager requires\n")
    for directory in dirs.values():
        assert snapshot(directory) == {}
