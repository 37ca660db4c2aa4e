"""kubevirt: the config-2 OpenStack layout, else a cidata NoCloud seed, else nothing
(docs/protocols.md); network units written by the real process."""

import dataclasses
import json
import os

import pytest

from cl_metadata.errors import InvalidMetadata, MetadataError, NoMetadataHere
from cl_metadata.providers import kubevirt
from cl_metadata.providers.kubevirt import KubeVirtProvider

from conftest import make_context
from drive_fixtures import (ALICE, CAUSES, DEPLOY, SAMPLE, assert_failed_cleanly,
                            assert_sample_units, bad_drive, env_file, open_provider, output_args,
                            outputs, run_on_drive, sample_interfaces, without_interfaces,
                            write_drive)

PLATFORM = "kubevirt"
META = "openstack/latest/meta_data.json"
NETWORK = "openstack/latest/network_data.json"
UUID = "5d3f8c2a-9b14-4e6f-a0c7-2e81b4d9f063"
CONFIG_DRIVE_ATTRIBUTES = {
    "KUBEVIRT_INSTANCE_ID": UUID, "KUBEVIRT_HOSTNAME": "demo-1.example.internal",
    "KUBEVIRT_INSTANCE_TYPE": "m1.small", "KUBEVIRT_IPV4": "10.0.1.15",
    "KUBEVIRT_IPV6": "2001:db8:1:2::15",
}
FILE_BODY = (
    "{p}_KUBEVIRT_HOSTNAME=demo-1.example.internal\n{p}_KUBEVIRT_INSTANCE_ID=" + UUID + "\n"
    "{p}_KUBEVIRT_INSTANCE_TYPE=m1.small\n{p}_KUBEVIRT_IPV4=10.0.1.15\n"
    "{p}_KUBEVIRT_IPV6=2001:db8:1:2::15\n")


def nocloud_drive(tmp_path, instance=SAMPLE, **replace):
    """KubeVirt's cloudInitNoCloud volume: the files the nocloud renderer writes."""
    return write_drive(tmp_path, "nocloud", instance,
                       replace={k.replace("_", "-"): v.encode() for k, v in replace.items()})


def test_config_drive_layout(tmp_path):
    provider = open_provider(PLATFORM, write_drive(tmp_path, PLATFORM))
    assert provider.attributes() == CONFIG_DRIVE_ATTRIBUTES
    assert provider.hostname() == "demo-1.example.internal"
    assert provider.ssh_keys() == [ALICE, DEPLOY]
    assert provider.network() == (sample_interfaces(20), [])
    for prefix in ("COREOS", "AFTERBURN"):
        assert env_file(provider.attributes(), prefix) == FILE_BODY.replace("{p}", prefix)


def test_nocloud_layout(tmp_path):
    provider = open_provider(PLATFORM, nocloud_drive(tmp_path))
    assert provider.attributes() == {
        "KUBEVIRT_INSTANCE_ID": "i-0a1b2c3d4e5f60718",
        "KUBEVIRT_HOSTNAME": "demo-1.example.internal",  # local-hostname, as upstream
        "KUBEVIRT_IPV4": "10.0.1.15", "KUBEVIRT_IPV6": "2001:db8:1:2::15"}
    assert provider.hostname() == "demo-1.example.internal"
    assert provider.ssh_keys() == [ALICE, DEPLOY]  # from #cloud-config ssh_authorized_keys
    assert provider.network() == (sample_interfaces(20), [])


def test_nocloud_layout_with_ignition_user_data_and_v1_network(tmp_path):
    instance = dataclasses.replace(SAMPLE, user_data='{"ignition": {"version": "3.4.0"}}',
                                   platform_data={"nocloud": {"network-config-version": 1}})
    provider = open_provider(PLATFORM, nocloud_drive(tmp_path, instance))
    assert provider.ssh_keys() == [ALICE, DEPLOY]  # then they are in meta-data public-keys
    assert provider.network() == (sample_interfaces(20), [])


def test_addresses_come_from_the_first_interface_with_static_addresses(tmp_path):
    network = {"links": [{"id": "a", "name": "eth0"}, {"id": "b", "name": "eth1"}],
               "networks": [{"link": "a", "type": "ipv4_dhcp"},
                            {"link": "b", "type": "ipv6", "ip_address": "2001:db8::9",
                             "netmask": "64"}]}
    root = write_drive(tmp_path, PLATFORM, replace={NETWORK: json.dumps(network).encode()})
    attributes = open_provider(PLATFORM, root).attributes()
    assert attributes["KUBEVIRT_IPV6"] == "2001:db8::9" and "KUBEVIRT_IPV4" not in attributes


def test_no_interfaces_no_address_attributes(tmp_path):
    root = write_drive(tmp_path, PLATFORM, without_interfaces(), drop=[NETWORK])
    provider = open_provider(PLATFORM, root)
    assert provider.network() == ([], [])
    assert set(provider.attributes()) == {"KUBEVIRT_INSTANCE_ID", "KUBEVIRT_HOSTNAME",
                                          "KUBEVIRT_INSTANCE_TYPE"}


@pytest.mark.parametrize("layout, relpath, document, field", [
    ("config-2", META, b'{"hostname": "h"}', "uuid"),
    ("config-2", META, b'{"uuid": "u", "hostname": ""}', "hostname"),
    ("cidata", "meta-data", b"local-hostname: h\n", "instance-id"),
    ("cidata", "meta-data", b"instance-id: i\n", "local-hostname"),
])
def test_instance_id_and_hostname_are_required(tmp_path, layout, relpath, document, field):
    platform = PLATFORM if layout == "config-2" else "nocloud"
    provider = open_provider(PLATFORM, write_drive(tmp_path, platform,
                                                   replace={relpath: document}))
    with pytest.raises(InvalidMetadata) as info:
        provider.attributes()
    assert info.value.source == relpath
    assert info.value.cause == f"field {field!r} is missing or empty"


@pytest.mark.parametrize("platform, relpath, part", [
    (PLATFORM, META, "attributes"), (PLATFORM, NETWORK, "network"),
    ("nocloud", "meta-data", "attributes"), ("nocloud", "network-config", "network")])
@pytest.mark.parametrize("kind", ["oversized", "symlink-out", "invalid", "not-utf8"])
def test_bad_files(tmp_path, platform, relpath, part, kind):
    with pytest.raises(MetadataError) as info:
        root = bad_drive(tmp_path, platform, relpath, kind, invalid=b"{a: [b\n")
        getattr(open_provider(PLATFORM, root), part)()
    assert info.value.source == relpath and CAUSES[kind] in info.value.cause


def test_no_drive_is_success_with_nothing(monkeypatch, caplog):
    if any(os.path.exists(f"/dev/disk/by-label/{label}") for label in kubevirt.LABELS):
        pytest.skip("this machine has a config drive")
    monkeypatch.setattr(kubevirt, "DRIVE_WAIT", 0.0)
    with pytest.raises(NoMetadataHere, match="no config-2 or cidata drive; nothing to do"):
        KubeVirtProvider(make_context(None))


def test_real_process_config_drive(tmp_path, agent_env):
    paths = outputs(tmp_path)
    result = run_on_drive(agent_env, PLATFORM, write_drive(tmp_path, PLATFORM),
                          *output_args(paths))
    assert result.returncode == 0, result.stderr
    assert paths["attributes"].read_text() == FILE_BODY.replace("{p}", "COREOS")
    assert paths["hostname"].read_text() == "demo-1.example.internal\n"
    assert_sample_units(paths["units"], 20)


def test_real_process_config_drive_with_a_bond_and_a_vlan(tmp_path, agent_env):
    # network_data.json shaped like cloud-init's NETWORK_DATA_BOND fixture: unnamed links
    network = {
        "links": [
            {"id": "eth0", "type": "phy", "ethernet_mac_address": "0c:c4:7a:34:6e:3c"},
            {"id": "eth1", "type": "phy", "ethernet_mac_address": "0c:c4:7a:34:6e:3d"},
            {"id": "bond0", "type": "bond", "bond_links": ["eth0", "eth1"], "bond_mode": "4",
             "bond_miimon": 100, "ethernet_mac_address": "0c:c4:7a:34:6e:3c"},
            {"id": "vlan2", "type": "vlan", "vlan_link": "bond0", "vlan_id": 602}],
        "networks": [{"id": "n", "link": "vlan2", "type": "ipv4", "ip_address": "2.2.2.13",
                      "netmask": "255.255.255.248",
                      "routes": [{"network": "0.0.0.0", "netmask": "0.0.0.0",
                                  "gateway": "2.2.2.9"}]}],
        "services": [{"type": "dns", "address": "1.1.1.4"}],
    }
    paths = outputs(tmp_path)
    root = write_drive(tmp_path, PLATFORM, replace={NETWORK: json.dumps(network).encode()})
    result = run_on_drive(agent_env, PLATFORM, root, *output_args(paths))
    assert result.returncode == 0, result.stderr
    header = "# Written by cl-metadata from the platform's metadata; replaced on every run.\n"
    assert {p.name: p.read_text() for p in paths["units"].iterdir()} == {
        "20-0c:c4:7a:34:6e:3c.network":
            header + "\n[Match]\nMACAddress=0c:c4:7a:34:6e:3c\n\n[Network]\nBond=bond0\n",
        "20-0c:c4:7a:34:6e:3d.network":
            header + "\n[Match]\nMACAddress=0c:c4:7a:34:6e:3d\n\n[Network]\nBond=bond0\n",
        # the bond carries its first member's MAC: its own units sort first (15 < 20)
        "15-bond0.netdev": header + "\n[NetDev]\nName=bond0\nKind=bond\n"
                                    "MACAddress=0c:c4:7a:34:6e:3c\n"
                                    "\n[Bond]\nMode=802.3ad\nMIIMonitorSec=100ms\n",
        "15-bond0.network": header + "\n[Match]\nName=bond0\n\n[Network]\nVLAN=bond0.602\n",
        "15-bond0.602.netdev": header + "\n[NetDev]\nName=bond0.602\nKind=vlan\n"
                                        "\n[VLAN]\nId=602\n",
        "15-bond0.602.network": header + "\n[Match]\nName=bond0.602\n\n[Network]\nDNS=1.1.1.4\n"
                                         "\n[Address]\nAddress=2.2.2.13/29\n"
                                         "\n[Route]\nDestination=0.0.0.0/0\nGateway=2.2.2.9\n",
    }
    assert paths["attributes"].read_text() == (  # the first static address: the VLAN's
        "COREOS_KUBEVIRT_HOSTNAME=demo-1.example.internal\nCOREOS_KUBEVIRT_INSTANCE_ID=" + UUID +
        "\nCOREOS_KUBEVIRT_INSTANCE_TYPE=m1.small\nCOREOS_KUBEVIRT_IPV4=2.2.2.13\n")


def test_real_process_nocloud_with_missing_meta_data(tmp_path, agent_env):
    paths = outputs(tmp_path)
    root = write_drive(tmp_path, "nocloud", drop=["meta-data"])
    result = run_on_drive(agent_env, PLATFORM, root, *output_args(paths))
    assert_failed_cleanly(result, paths, PLATFORM, "meta-data: missing")
