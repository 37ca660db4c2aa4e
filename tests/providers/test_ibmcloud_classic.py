"""ibmcloud-classic: meta_data.json and network_data.json on a config-2 drive directory
(docs/protocols.md); network units written by the real process."""

import json

import pytest

from cl_metadata.errors import InvalidMetadata, MetadataError
from cl_metadata.network import networkd
from cl_metadata.model import NetworkInterface, Route, VirtualNetDev
from cl_metadata.network.networkd import HEADER

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
                  {"id": "b", "type": "vlan", "vlan_link": "c", "vlan_id": 5},
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
        NetworkInterface(name="eth2", dhcp="yes", nameservers=("192.0.2.53",),
                         vlans=("eth2.5",)),
        NetworkInterface(name="eth2.5", priority=5, dhcp="ipv4", nameservers=("192.0.2.53",)),
    ]
    assert netdevs == [VirtualNetDev(name="eth2.5", kind="vlan", vlan_id=5)]
    assert caplog.text == ""


def units(tmp_path, document):
    interfaces, netdevs = with_network_data(tmp_path, document).network()
    return {name: body.decode() for name, body in networkd.render(interfaces, netdevs).items()}


def unit(*sections):
    return HEADER + "".join(f"\n{section}\n" for section in sections)


# Shaped like cloud-init's NETWORK_DATA_BOND config-drive fixture (what Nova writes for a bond
# of two NICs with VLANs on it: no link names, the mode as a number in a string).
BOND_AND_VLANS = {
    "services": [{"type": "dns", "address": "1.1.1.191"}, {"type": "dns", "address": "1.1.1.4"}],
    "networks": [
        {"id": "network2-ipv4", "ip_address": "2.2.2.13", "link": "vlan2",
         "netmask": "255.255.255.248", "type": "ipv4",
         "routes": [{"netmask": "0.0.0.0", "network": "0.0.0.0", "gateway": "2.2.2.9"}]},
        {"id": "network3-ipv4", "ip_address": "10.0.1.5", "link": "vlan3",
         "netmask": "255.255.255.248", "type": "ipv4",
         "routes": [{"netmask": "255.255.255.255", "network": "192.168.1.0",
                     "gateway": "10.0.1.1"}]}],
    "links": [
        {"ethernet_mac_address": "0c:c4:7a:34:6e:3c", "id": "eth0", "mtu": 1500, "type": "phy"},
        {"ethernet_mac_address": "0c:c4:7a:34:6e:3d", "id": "eth1", "mtu": 1500, "type": "phy"},
        {"bond_links": ["eth0", "eth1"], "bond_miimon": 100, "bond_mode": "4",
         "bond_xmit_hash_policy": "layer3+4", "ethernet_mac_address": "fa:16:3e:b3:72:36",
         "id": "bond0", "type": "bond"},
        {"ethernet_mac_address": "fa:16:3e:b3:72:30", "id": "vlan2", "type": "vlan",
         "vlan_id": 602, "vlan_link": "bond0", "vlan_mac_address": "fa:16:3e:b3:72:30"},
        {"ethernet_mac_address": "fa:16:3e:66:ab:a6", "id": "vlan3", "type": "vlan",
         "vlan_id": 612, "vlan_link": "bond0", "vlan_mac_address": "fa:16:3e:66:ab:a6"}],
}
BOND_AND_VLANS_UNITS = {
    "10-0c:c4:7a:34:6e:3c.network": unit("[Match]\nMACAddress=0c:c4:7a:34:6e:3c",
                                         "[Network]\nBond=bond0"),
    "10-0c:c4:7a:34:6e:3d.network": unit("[Match]\nMACAddress=0c:c4:7a:34:6e:3d",
                                         "[Network]\nBond=bond0"),
    "05-bond0.network": unit("[Match]\nName=bond0",
                             "[Network]\nVLAN=bond0.602\nVLAN=bond0.612"),
    "05-bond0.netdev": unit("[NetDev]\nName=bond0\nKind=bond\nMACAddress=fa:16:3e:b3:72:36",
                            "[Bond]\nMode=802.3ad\nTransmitHashPolicy=layer3+4\n"
                            "MIIMonitorSec=100ms"),
    "05-bond0.602.network": unit("[Match]\nName=bond0.602",
                                 "[Network]\nDNS=1.1.1.191\nDNS=1.1.1.4",
                                 "[Address]\nAddress=2.2.2.13/29",
                                 "[Route]\nDestination=0.0.0.0/0\nGateway=2.2.2.9"),
    "05-bond0.602.netdev": unit(
        "[NetDev]\nName=bond0.602\nKind=vlan\nMACAddress=fa:16:3e:b3:72:30", "[VLAN]\nId=602"),
    "05-bond0.612.network": unit("[Match]\nName=bond0.612",
                                 "[Network]\nDNS=1.1.1.191\nDNS=1.1.1.4",
                                 "[Address]\nAddress=10.0.1.5/29",
                                 "[Route]\nDestination=192.168.1.0/32\nGateway=10.0.1.1"),
    "05-bond0.612.netdev": unit(
        "[NetDev]\nName=bond0.612\nKind=vlan\nMACAddress=fa:16:3e:66:ab:a6", "[VLAN]\nId=612"),
}


def test_bond_and_vlan_links_are_rendered(tmp_path, caplog):
    assert units(tmp_path, BOND_AND_VLANS) == BOND_AND_VLANS_UNITS
    assert caplog.text == ""


def test_named_bond_and_vlan_links_keep_their_names(tmp_path):
    # the shape Ironic and Metal3 write: every link named, the VLAN on the bond
    document = {
        "links": [
            {"id": "p0", "name": "ens1f0np0", "type": "phy",
             "ethernet_mac_address": "02:00:00:00:00:10"},
            {"id": "p1", "name": "ens1f1np1", "type": "phy",
             "ethernet_mac_address": "02:00:00:00:00:11"},
            {"id": "bond0", "name": "bond0", "type": "bond", "bond_links": ["p0", "p1"],
             "bond_mode": "active-backup", "bond_lacp_rate": "fast", "bond_primary": "p0"},
            {"id": "bond0.123", "name": "public", "type": "vlan", "vlan_link": "bond0",
             "vlan_id": "123"}],
        "networks": [{"id": "n", "type": "ipv4_dhcp", "link": "bond0.123"}],
    }
    assert units(tmp_path, document) == {
        "10-02:00:00:00:00:10.network": unit("[Match]\nMACAddress=02:00:00:00:00:10",
                                             "[Network]\nBond=bond0"),
        "10-02:00:00:00:00:11.network": unit("[Match]\nMACAddress=02:00:00:00:00:11",
                                             "[Network]\nBond=bond0"),
        "05-bond0.network": unit("[Match]\nName=bond0", "[Network]\nVLAN=public"),
        "05-bond0.netdev": unit("[NetDev]\nName=bond0\nKind=bond",
                                "[Bond]\nMode=active-backup\nLACPTransmitRate=fast"),
        "05-public.network": unit("[Match]\nName=public", "[Network]\nDHCP=ipv4"),
        "05-public.netdev": unit("[NetDev]\nName=public\nKind=vlan", "[VLAN]\nId=123"),
    }


def test_dhcp_networks_keep_their_routes_and_nameservers(tmp_path):
    # cloud-init's network_data.json fixtures give ipv4_dhcp networks routes and nameservers
    document = {
        "links": [{"id": "tap1", "type": "ovs", "ethernet_mac_address": "fa:16:3e:69:b0:58"}],
        "networks": [
            {"id": "n4", "link": "tap1", "type": "ipv4_dhcp", "dns_nameservers": ["10.0.0.53"],
             "routes": [{"network": "10.0.0.0", "netmask": "255.0.0.0",
                         "gateway": "192.168.1.254"}]},
            {"id": "n6", "link": "tap1", "type": "ipv6_dhcp",
             "routes": [{"network": "::", "netmask": "::", "gateway": "fe80::1"}]}],
    }
    assert units(tmp_path, document) == {"10-fa:16:3e:69:b0:58.network": unit(
        "[Match]\nMACAddress=fa:16:3e:69:b0:58", "[Network]\nDHCP=yes\nDNS=10.0.0.53",
        "[Route]\nDestination=10.0.0.0/8\nGateway=192.168.1.254",
        "[Route]\nDestination=::/0\nGateway=fe80::1")}


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
    ({"links": [{"id": "b", "type": "bond", "bond_links": ["nic9"]}]},
     "links[0].bond_links[0]: refers to a link the document does not define"),
    ({"links": [{"id": "a", "ethernet_mac_address": "02:00:00:00:00:01"},
                {"id": "b", "type": "bond", "bond_links": ["a"], "bond_mode": "7"}]},
     "links[1].bond_mode: expected a whole number from 0 to 6"),
    ({"links": [{"id": "a", "ethernet_mac_address": "02:00:00:00:00:01"},
                {"id": "b", "type": "bond", "bond_links": ["a"], "bond_mode": "lacp\n[Link]"}]},
     "links[1].bond_mode: expected one of balance-rr, active-backup, balance-xor, broadcast, "
     "802.3ad, balance-tlb, balance-alb"),
    ({"links": [{"id": "a", "ethernet_mac_address": "02:00:00:00:00:01"},
                {"id": "v", "type": "vlan", "vlan_link": "a", "vlan_id": 4095}]},
     "links[1].vlan_id: expected a whole number from 0 to 4094"),
    ({"links": [{"id": "a", "ethernet_mac_address": "02:00:00:00:00:01"},
                {"id": "v", "type": "vlan", "vlan_link": "a", "vlan_id": 5,
                 "name": "v5\n[Network]"}]},
     "links[1].name: not a usable interface name"),
    ({"links": [{"id": "a"}, {"id": "v", "type": "vlan", "vlan_link": "a", "vlan_id": 5}]},
     "links[0]: has neither a name nor an ethernet_mac_address"),
    ({"links": [{"id": "a", "name": "eth0"}, {"id": "a", "name": "eth1"}]},
     "links[1].id: defines a link that is already defined"),
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
