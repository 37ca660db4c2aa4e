"""nocloud: meta-data, #cloud-config user-data and network-config v1/v2 on a cidata drive
directory (providers.md §3.3), through the provider and the real process."""

import dataclasses
import os

import pytest

from cl_metadata.errors import InvalidMetadata, MetadataError
from cl_metadata.model import NetworkInterface, Route
from cl_metadata.nocloud_format import parse_network_config

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
    interfaces = network("""
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
  - type: bond
    name: bond0
  - type: nameserver
    address: 192.0.2.53
    search: [example.org]
""")
    assert interfaces == [
        NetworkInterface(name="ens3", mac="52:54:00:12:34:56", addresses=("192.168.1.10/24",),
                         routes=(Route("10.0.0.0/8", "192.168.1.254"),), dhcp="ipv6",
                         nameservers=("192.168.1.53", "192.0.2.53")),
        NetworkInterface(mac="52:54:00:12:34:57", dhcp="ipv4", nameservers=("192.0.2.53",)),
    ]
    assert "config[2]: bond entries are not supported; skipped" in caplog.text


def test_v2_matching_routes_and_dhcp(caplog):
    interfaces = network("""
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
  bonds:
    bond0: {interfaces: [eth0]}
""")
    assert interfaces == [
        NetworkInterface(name="eth0", dhcp="yes"),  # no match: the id is the name
        NetworkInterface(mac="52:54:00:ab:cd:ef", addresses=("10.1.0.5/16",),
                         routes=(Route("0.0.0.0/0", "10.1.0.1"),
                                 Route("172.16.0.0/12", "10.1.0.254"),
                                 Route("10.1.0.0/16", "10.1.0.1"))),
        NetworkInterface(mac="52:54:00:00:00:02"),  # a name pattern cannot name a unit
    ]
    assert "ethernets[3]: interface name patterns are not supported; skipped" in caplog.text
    assert "network.bonds are not supported; skipped" in caplog.text


def test_v2_as_json_and_disabled_config():
    assert network('{"version": 2, "ethernets": {"eth0": {"dhcp6": true}}}') == [
        NetworkInterface(name="eth0", dhcp="ipv6")]
    assert network("version: 1\nconfig: disabled\n") == []
    assert network("") == []


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
