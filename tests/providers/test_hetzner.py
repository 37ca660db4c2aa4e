"""hetzner against the fake server: YAML documents read strictly, the endpoint matrix of
docs/protocols.md, keys as a JSON list, and the network-config unit written by the real process."""

import dataclasses
import os

import pytest
import yaml

from cl_metadata.outputs import envfile
from cl_metadata.errors import FetchError, InvalidMetadata
from cl_metadata.fakeserver.faults import Fault
from cl_metadata.fakeserver.instance import load_instance
from cl_metadata.fakeserver.render import hetzner as render
from cl_metadata.model import Route
from cl_metadata.providers.hetzner import HetznerProvider

from conftest import make_context, run_agent

SAMPLE = load_instance(None)
ALICE, DEPLOY = (key.key for key in SAMPLE.ssh_keys)
BASE = "/hetzner/v1/metadata"
NETWORKS, KEYS, CONFIG = BASE + "/private-networks", BASE + "/public-keys", BASE + "/network-config"
PLATFORM = "http://169.254.169.254"
HEADER = "# Written by cl-metadata from the platform's metadata; replaced on every run.\n"

ATTRIBUTES = (
    "{p}_HETZNER_AVAILABILITY_ZONE=nova\n"
    "{p}_HETZNER_HOSTNAME=demo-1.example.internal\n"
    "{p}_HETZNER_INSTANCE_ID=i-0a1b2c3d4e5f60718\n"
    "{p}_HETZNER_PRIVATE_IPV4_0=10.130.0.15\n"
    "{p}_HETZNER_PUBLIC_IPV4=203.0.113.25\n"
    "{p}_HETZNER_PUBLIC_IPV6=2001:db8:1:2::15\n"
    "{p}_HETZNER_REGION=RegionOne\n"
)
UNIT = ("20-fa:16:3e:4c:2d:7a.network",
        HEADER + "\n[Match]\nMACAddress=fa:16:3e:4c:2d:7a\n"
        "\n[Network]\nDHCP=ipv4\nDNS=192.0.2.53\nDNS=2001:db8::53\n"
        "\n[Address]\nAddress=2001:db8:1:2::15/64\n"
        "\n[Route]\nDestination=::/0\nGateway=2001:db8:1:2::1\n")


def provider(server, timeout=3):
    return HetznerProvider(make_context(server, timeout=timeout))


def yaml_fault(path, value):
    return Fault(path, "malformed", yaml.safe_dump(value))


def test_attributes_in_both_prefixes(fake_server):
    server = fake_server("hetzner")
    attributes = provider(server).attributes()
    for prefix in ("COREOS", "AFTERBURN"):
        assert envfile.render(attributes, prefix) == (ATTRIBUTES.format(p=prefix).encode(), [])
    assert sorted(r["path"] for r in server.requests) == [BASE, NETWORKS]


def test_integer_instance_id_empty_address_and_no_private_network(fake_server):
    instance = dataclasses.replace(SAMPLE, instance_id="12345678", network_interfaces=())
    root = render.root(instance)
    root["public-ipv4"] = ""
    server = fake_server("hetzner", instance=instance, faults=[yaml_fault(BASE, root)])
    assert provider(server).attributes() == {
        "HETZNER_AVAILABILITY_ZONE": "nova", "HETZNER_HOSTNAME": "demo-1.example.internal",
        "HETZNER_INSTANCE_ID": "12345678", "HETZNER_PUBLIC_IPV4": "", "HETZNER_REGION": "RegionOne"}


def test_several_private_networks_in_order(fake_server):
    networks = [{"ip": "10.0.0.2", "interface_num": 2}, {"ip": "10.128.0.2", "interface_num": 1}]
    server = fake_server("hetzner", faults=[yaml_fault(NETWORKS, networks)])
    attributes = provider(server).attributes()
    assert (attributes["HETZNER_PRIVATE_IPV4_0"], attributes["HETZNER_PRIVATE_IPV4_1"]) == (
        "10.0.0.2", "10.128.0.2")


def test_hostname(fake_server):
    server = fake_server("hetzner")
    assert provider(server).hostname() == "demo-1.example.internal"
    assert [r["path"] for r in server.requests] == [BASE + "/hostname"]


def test_empty_hostname_is_no_hostname(fake_server):
    server = fake_server("hetzner", faults=[Fault(BASE + "/hostname", "empty")])
    assert provider(server).hostname() is None


@pytest.mark.parametrize("body, keys", [
    ("[]", []), (f'["{ALICE}"]', [ALICE]), (f'["{ALICE}", "{DEPLOY}"]', [ALICE, DEPLOY])])
def test_keys_are_a_json_list(fake_server, body, keys):
    server = fake_server("hetzner", faults=[Fault(KEYS, "malformed", body)])
    assert provider(server).ssh_keys() == keys
    assert [r["path"] for r in server.requests] == [KEYS]


@pytest.mark.parametrize("body", ['{"a": "b"}', '[1]', "ssh-ed25519 AAAA", ""])
def test_keys_that_are_not_a_list_of_strings_are_invalid(fake_server, body):
    server = fake_server("hetzner", faults=[Fault(KEYS, "malformed", body)])
    with pytest.raises(InvalidMetadata) as info:
        provider(server).ssh_keys()
    assert info.value.source == f"GET {PLATFORM}{KEYS}"


def test_the_process_writes_the_network_config_unit(fake_server, agent_env, tmp_path):
    server = fake_server("hetzner")
    agent_env["CL_METADATA_ENDPOINT"] = server.url
    result = run_agent("--provider", "hetzner", "--network-units", tmp_path / "network",
                       env=agent_env)
    assert result.returncode == 0, result.stderr
    name, content = UNIT
    assert os.listdir(tmp_path / "network") == [name]
    assert (tmp_path / "network" / name).read_text() == content
    assert [r["path"] for r in server.requests] == [CONFIG]


def test_an_entry_without_a_mac_is_matched_by_name(fake_server):
    config = {"version": 1, "config": [{"type": "physical", "name": "eth0", "subnets": [
        {"type": "dhcp", "ipv4": True},
        {"type": "static", "address": "192.0.2.10", "netmask": "255.255.255.0",
         "gateway": "192.0.2.1"}]}]}
    server = fake_server("hetzner", faults=[yaml_fault(CONFIG, config)])
    interfaces, netdevs = provider(server).network()
    assert netdevs == [] and [(i.name, i.mac, i.priority, i.dhcp, i.addresses, i.routes)
                              for i in interfaces] == [
        ("eth0", None, 20, "ipv4", ("192.0.2.10/24",), (Route("0.0.0.0/0", "192.0.2.1"),))]


def test_no_public_network_is_no_unit(fake_server):
    server = fake_server("hetzner", faults=[yaml_fault(CONFIG, {"version": 1, "config": []})])
    assert provider(server).network() == ([], [])


def test_an_empty_root_document_is_invalid(fake_server):
    server = fake_server("hetzner", faults=[Fault(BASE, "empty")])
    with pytest.raises(InvalidMetadata) as info:
        provider(server).attributes()
    assert info.value.source == f"GET {PLATFORM}{BASE}" and info.value.cause == "empty document"


@pytest.mark.parametrize("path, body, cause", [
    (BASE, "- a\n- b\n", "expected a mapping at the top level"),
    (BASE, "hostname: [unclosed\n", "invalid YAML at line"),
    (BASE, "!!python/object/apply:os.system ['true']\n", "invalid YAML"),
    (BASE, "hostname: {a: 1}\n", "'hostname'"),
    (BASE, "network-config: {config: [{type: physical, subnets: [{ipv6: true, "
           "address: '10.0.0.1/8'}]}]}\n", "network-config.config[0].subnets[0].address"),
    (NETWORKS, "ip: 10.0.0.2\n", "expected a list at the top level"),
    (NETWORKS, "- 10.0.0.2\n", "entry 0: expected a mapping"),
])
def test_documents_of_the_wrong_shape_are_invalid(fake_server, path, body, cause):
    server = fake_server("hetzner", faults=[Fault(path, "malformed", body)])
    with pytest.raises(InvalidMetadata) as info:
        provider(server).attributes()
    assert info.value.source == f"GET {PLATFORM}{path}" and cause in info.value.cause


@pytest.mark.parametrize("path, fault, status", [
    (BASE, Fault(BASE, "status", 404), 404),
    (BASE, Fault(BASE, "status", 503), 503),
    (NETWORKS, Fault(NETWORKS, "status", 503), 503),
    (NETWORKS, Fault(NETWORKS, "status", 501), 501),
    (NETWORKS, Fault(NETWORKS, "reset"), None),
])
def test_either_attribute_document_failing_fails_the_attributes(fake_server, path, fault,
                                                                status):
    server = fake_server("hetzner", faults=[fault])
    with pytest.raises(FetchError) as info:
        provider(server, timeout=1.5).attributes()
    assert info.value.source == f"GET {PLATFORM}{path}" and info.value.status == status


@pytest.mark.parametrize("path, part", [(BASE + "/hostname", "hostname"), (KEYS, "ssh_keys"),
                                        (CONFIG, "network")])
def test_nothing_is_404_tolerant(fake_server, path, part):
    server = fake_server("hetzner", faults=[Fault(path, "status", 404)])
    with pytest.raises(FetchError) as info:
        getattr(provider(server), part)()
    assert info.value.status == 404 and len(server.requests) == 1


def test_transient_failures_are_retried(fake_server):
    server = fake_server("hetzner", faults=[Fault(NETWORKS, "status", 503, count=1),
                                            Fault(BASE, "reset", count=1)])
    assert provider(server).attributes()["HETZNER_PRIVATE_IPV4_0"] == "10.130.0.15"
    assert sorted((r["path"], r["status"] or 0) for r in server.requests) == [
        (BASE, 0), (BASE, 200), (NETWORKS, 200), (NETWORKS, 503)]


@pytest.mark.parametrize("entry", [
    {"type": "physical", "mac_address": "fa:16:3e:4c:2d:7a\n[Network]\nDNS=6.6.6.6",
     "subnets": [{"type": "dhcp"}]},
    {"type": "physical", "name": "eth0\nUnmanaged=no", "subnets": [{"type": "dhcp"}]},
    {"type": "physical", "mac_address": "fa:16:3e:4c:2d:7a",
     "subnets": [{"type": "static", "address": "2001:db8::15]/64"}]},
    {"type": "physical", "mac_address": "fa:16:3e:4c:2d:7a",
     "subnets": [{"type": "static", "address": "2001:db8::15/64",
                  "dns_nameservers": ["6.6.6.6\nDNS=6.6.6.7"]}]},
])
def test_injection_attempts_write_nothing(fake_server, agent_env, tmp_path, entry):
    server = fake_server("hetzner",
                         faults=[yaml_fault(CONFIG, {"version": 1, "config": [entry]})])
    agent_env["CL_METADATA_ENDPOINT"] = server.url
    result = run_agent("--provider", "hetzner", "--network-units", tmp_path / "network",
                       "--hostname", tmp_path / "hostname", env=agent_env)
    assert result.returncode == 1 and "6.6.6.6" not in result.stderr
    assert f"hetzner: GET {PLATFORM}{CONFIG}: config[0]" in result.stderr
    assert not (tmp_path / "network").exists() and not (tmp_path / "hostname").exists()
