"""ibmcloud-classic: meta_data.json and network_data.json on a config-2 drive directory
(providers.md §3.2); network units written by the real process."""

import json

import pytest

from cl_metadata.errors import InvalidMetadata, MetadataError
from cl_metadata.model import NetworkInterface, Route

from drive_fixtures import (CAUSES, SAMPLE, assert_failed_cleanly, assert_sample_units,
                            bad_drive, env_file, open_provider, output_args, outputs,
                            run_on_drive, sample_interfaces, write_drive)

PLATFORM = "ibmcloud-classic"
META = "openstack/latest/meta_data.json"
NETWORK = "openstack/latest/network_data.json"
UUID = "5d3f8c2a-9b14-4e6f-a0c7-2e81b4d9f063"


def with_network_data(tmp_path, document):
    return open_provider(PLATFORM, write_drive(
        tmp_path, PLATFORM, replace={NETWORK: json.dumps(document).encode()}))


def test_attributes_hostname_and_interfaces(tmp_path, caplog):
    provider = open_provider(PLATFORM, write_drive(tmp_path, PLATFORM))
    assert provider.attributes() == {"IBMCLOUD_CLASSIC_INSTANCE_ID": UUID,
                                     "IBMCLOUD_CLASSIC_LOCAL_HOSTNAME": "demo-1"}
    assert provider.hostname() == "demo-1"
    assert provider.network() == (sample_interfaces(10), [])
    for prefix in ("COREOS", "AFTERBURN"):
        assert env_file(provider.attributes(), prefix) == (
            f"{prefix}_IBMCLOUD_CLASSIC_INSTANCE_ID={UUID}\n"
            f"{prefix}_IBMCLOUD_CLASSIC_LOCAL_HOSTNAME=demo-1\n")
    # keys exist on the drive but the platform does not support them (as upstream)
    assert provider.ssh_keys() == [] and "SSH keys are not supported" in caplog.text


@pytest.mark.parametrize("field", ["uuid", "name"])
def test_uuid_and_name_are_required(tmp_path, field):
    meta = {"uuid": UUID, "name": "demo-1", "hostname": "demo-1.example"}
    meta[field] = ""
    provider = open_provider(PLATFORM, write_drive(tmp_path, PLATFORM,
                                                   replace={META: json.dumps(meta).encode()}))
    with pytest.raises(InvalidMetadata) as info:
        provider.attributes()
    assert (info.value.source, info.value.cause) == (META, f"field {field!r} is missing or empty")


def test_network_data_details(tmp_path, caplog):
    document = {
        "links": [{"id": "a", "type": "phy", "ethernet_mac_address": "06:AA:BB:CC:DD:01"},
                  {"id": "b", "type": "vlan", "name": "eth0.5"},
                  {"id": "c", "type": "phy", "name": "eth2"}],
        "networks": [
            {"id": "n0", "link": "a", "type": "ipv4", "ip_address": "10.1.2.3",
             "netmask": "255.255.255.192", "routes": [
                 {"network": "10.0.0.0", "netmask": "255.0.0.0", "gateway": "10.1.2.1"},
                 {"network": "10.0.0.0", "netmask": "255.0.0.0", "gateway": "10.1.2.1"}]},
            {"id": "n1", "link": "a", "type": "ipv6", "ip_address": "2001:db8::3",
             "netmask": "ffff:ffff:ffff:ffff::", "dns_nameservers": ["2001:db8::53"]},
            {"id": "n2", "link": "b", "type": "ipv4_dhcp"},
            {"id": "n3", "link": "c", "type": "ipv4_dhcp"},
            {"id": "n4", "link": "c", "type": "ipv6_dhcp"},
            {"id": "n5", "link": "c", "type": "ipv6_slaac"}],
        "services": [{"type": "dns", "address": "192.0.2.53"}, {"type": "ntp", "address": "x"}],
    }
    interfaces, netdevs = with_network_data(tmp_path, document).network()
    assert interfaces == [
        NetworkInterface(mac="06:aa:bb:cc:dd:01", addresses=("10.1.2.3/26", "2001:db8::3/64"),
                         routes=(Route("10.0.0.0/8", "10.1.2.1"),),  # the same route once
                         nameservers=("2001:db8::53", "192.0.2.53")),
        NetworkInterface(name="eth2", dhcp="yes", nameservers=("192.0.2.53",)),
    ]
    assert netdevs == []
    assert "links[1]: vlan links are not supported; skipped" in caplog.text


@pytest.mark.parametrize("document, where", [
    ({"links": {}}, "links: expected a list, got a mapping"),
    ({"links": [{"id": "a", "ethernet_mac_address": "zz"}],
      "networks": [{"link": "a", "type": "ipv4", "ip_address": "10.0.0.1"}]},
     "links[0].ethernet_mac_address: not a MAC address"),
    ({"links": [{"id": "a", "name": "eth0"}],
      "networks": [{"link": "a", "type": "ipv4", "ip_address": "10.0.0.300"}]},
     "networks[0].ip_address: not an IP address"),
    ({"links": [{"id": "a", "name": "eth0"}],
      "networks": [{"link": "a", "type": "ipv4", "ip_address": "10.0.0.1",
                    "netmask": "255.0.255.0"}]},
     "networks[0].netmask: not a netmask or prefix length"),
    ({"links": [{"id": "a", "name": "eth0"}], "networks": [{"link": "a"}]},
     "networks[0].type: missing"),
    ({"links": [{"id": "a", "name": "eth0"}],
      "networks": [{"link": "a", "type": "ipv4", "ip_address": "10.0.0.1", "routes": [
          {"network": "0.0.0.0", "netmask": "0.0.0.0", "gateway": [7]}]}]},
     "networks[0].routes[0].gateway: expected a string, got a list"),
    ({"services": [{"type": "dns", "address": "dns.example"}]},
     "services[0].address: not an IP address"),
])
def test_invalid_network_data_names_the_field(tmp_path, document, where):
    with pytest.raises(InvalidMetadata) as info:
        with_network_data(tmp_path, document).network()
    assert (info.value.source, info.value.cause) == (NETWORK, where)


@pytest.mark.parametrize("relpath", [META, NETWORK])
@pytest.mark.parametrize("kind", ["oversized", "symlink-out", "invalid", "not-utf8"])
def test_bad_files(tmp_path, relpath, kind):
    provider_parts = {META: "attributes", NETWORK: "network"}
    with pytest.raises(MetadataError) as info:
        provider = open_provider(PLATFORM, bad_drive(tmp_path, PLATFORM, relpath, kind))
        getattr(provider, provider_parts[relpath])()
    assert info.value.source == relpath and CAUSES[kind] in info.value.cause


def test_missing_meta_data_is_an_error_and_missing_network_data_no_units(tmp_path):
    with pytest.raises(MetadataError) as info:
        open_provider(PLATFORM, bad_drive(tmp_path, PLATFORM, META, "missing"))
    assert (info.value.source, info.value.cause) == (META, "missing")
    root = write_drive(tmp_path, PLATFORM, drop=[NETWORK], name="no-network")
    assert open_provider(PLATFORM, root).network() == ([], [])


def test_real_process_writes_attributes_hostname_and_units(tmp_path, agent_env):
    paths = outputs(tmp_path)
    result = run_on_drive(agent_env, PLATFORM, write_drive(tmp_path, PLATFORM),
                          *output_args(paths), "--attributes-prefix", "AFTERBURN")
    assert result.returncode == 0, result.stderr
    assert paths["attributes"].read_text() == (
        f"AFTERBURN_IBMCLOUD_CLASSIC_INSTANCE_ID={UUID}\n"
        "AFTERBURN_IBMCLOUD_CLASSIC_LOCAL_HOSTNAME=demo-1\n")
    assert paths["hostname"].read_text() == "demo-1\n"
    assert_sample_units(paths["units"], 10)


def test_real_process_with_invalid_network_data_writes_nothing(tmp_path, agent_env):
    paths = outputs(tmp_path)
    root = bad_drive(tmp_path, PLATFORM, NETWORK, "invalid")
    result = run_on_drive(agent_env, PLATFORM, root, *output_args(paths))
    assert_failed_cleanly(result, paths, PLATFORM, NETWORK, "invalid JSON")
    assert SAMPLE.instance_id not in result.stderr
