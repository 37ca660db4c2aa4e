"""digitalocean against the fake server: one document for every part, the endpoint matrix of
docs/protocols.md, exact attribute files for both prefixes, and exact network units written by the
real process."""

import dataclasses
import json
import os

import pytest

from cl_metadata.outputs import envfile
from cl_metadata.errors import FetchError, InvalidMetadata
from cl_metadata.fakeserver.faults import Fault
from cl_metadata.fakeserver.instance import NetworkInterface, load_instance
from cl_metadata.fakeserver.render import digitalocean as render
from cl_metadata.providers.digitalocean import DigitalOceanProvider

from conftest import make_context, run_agent

SAMPLE = load_instance(None)
ALICE, DEPLOY = (key.key for key in SAMPLE.ssh_keys)
DOCUMENT = "/metadata/v1.json"
SOURCE = "GET http://169.254.169.254/metadata/v1.json"
HEADER = "# Written by cl-metadata from the platform's metadata; replaced on every run.\n"

ATTRIBUTES = (
    "{p}_DIGITALOCEAN_HOSTNAME=demo-1.example.internal\n"
    "{p}_DIGITALOCEAN_IPV4_ANCHOR_0=10.0.1.15\n"
    "{p}_DIGITALOCEAN_IPV4_PRIVATE_0=10.130.0.15\n"
    "{p}_DIGITALOCEAN_IPV4_PUBLIC_0=203.0.113.25\n"
    "{p}_DIGITALOCEAN_IPV6_PUBLIC_0=2001:db8:1:2::15\n"
    "{p}_DIGITALOCEAN_REGION=RegionOne\n"
)
DNS = "\n[Network]\nDNS=192.0.2.53\nDNS=2001:db8::53\n"
UNITS = {
    "10-fa:16:3e:4c:2d:7a.network": (
        HEADER + "\n[Match]\nMACAddress=fa:16:3e:4c:2d:7a\n" + DNS +
        "\n[Address]\nAddress=203.0.113.25/24\n"
        "\n[Address]\nAddress=2001:db8:1:2::15/64\n"
        "\n[Address]\nAddress=10.0.1.15/24\n"
        "\n[Route]\nDestination=203.0.113.0/24\nGateway=203.0.113.1\n"
        "\n[Route]\nDestination=0.0.0.0/0\nGateway=203.0.113.1\n"
        "\n[Route]\nDestination=2001:db8:1:2::/64\nGateway=2001:db8:1:2::1\n"
        "\n[Route]\nDestination=::/0\nGateway=2001:db8:1:2::1\n"
        "\n[Route]\nDestination=10.0.1.0/24\nGateway=10.0.1.1\n"),
    "10-fa:16:3e:4c:2d:7b.network": (
        HEADER + "\n[Match]\nMACAddress=fa:16:3e:4c:2d:7b\n" + DNS +
        "\n[Address]\nAddress=10.130.0.15/16\n"
        "\n[Route]\nDestination=10.130.0.0/16\nGateway=10.130.0.1\n"),
}


def provider(server, timeout=3):
    return DigitalOceanProvider(make_context(server, timeout=timeout))


def with_document(change):
    """A fault that serves the sample document after ``change(document)``."""
    document = render.document(SAMPLE)
    change(document)
    return Fault(DOCUMENT, "malformed", json.dumps(document))


def test_attributes_in_both_prefixes(fake_server):
    server = fake_server("digitalocean")
    attributes = provider(server).attributes()
    for prefix in ("COREOS", "AFTERBURN"):
        assert envfile.render(attributes, prefix) == (ATTRIBUTES.format(p=prefix).encode(), [])
    assert [r["path"] for r in server.requests] == [DOCUMENT]


def test_every_part_reads_the_one_document_once(fake_server):
    server = fake_server("digitalocean")
    p = provider(server)
    p.attributes(), p.ssh_keys(), p.hostname(), p.network()
    assert [(r["method"], r["path"]) for r in server.requests] == [("GET", DOCUMENT)]


def test_positions_leave_gaps_for_missing_families(fake_server):
    interfaces = (
        NetworkInterface(mac="02:00:00:00:00:01", public=True, public_ipv4="198.51.100.7"),
        NetworkInterface(mac="02:00:00:00:00:02", public=True, ipv6="2001:db8::7"),
        NetworkInterface(mac="02:00:00:00:00:03", ipv6="fd00::3"),
        NetworkInterface(mac="02:00:00:00:00:04", local_ipv4="10.1.0.4"),
    )
    server = fake_server("digitalocean",
                         instance=dataclasses.replace(SAMPLE, network_interfaces=interfaces))
    attributes = provider(server).attributes()
    assert {k: v for k, v in attributes.items() if "_IPV" in k} == {
        "DIGITALOCEAN_IPV4_PUBLIC_0": "198.51.100.7",
        "DIGITALOCEAN_IPV6_PUBLIC_1": "2001:db8::7",
        "DIGITALOCEAN_IPV6_PRIVATE_0": "fd00::3",
        "DIGITALOCEAN_IPV4_PRIVATE_1": "10.1.0.4",
    }


def test_empty_hostname_and_region_are_written_empty(fake_server):
    server = fake_server("digitalocean", instance=dataclasses.replace(SAMPLE, hostname="",
                                                                      region=""))
    p = provider(server)
    attributes = p.attributes()
    assert attributes["DIGITALOCEAN_HOSTNAME"] == "" and attributes["DIGITALOCEAN_REGION"] == ""
    assert p.hostname() is None


def test_addresses_are_written_in_canonical_form(fake_server):
    def change(doc):
        doc["interfaces"]["public"][0]["ipv6"]["ip_address"] = "2001:DB8:1:2:0:0:0:15"
    server = fake_server("digitalocean", faults=[with_document(change)])
    assert provider(server).attributes()["DIGITALOCEAN_IPV6_PUBLIC_0"] == "2001:db8:1:2::15"


def test_keys_and_hostname(fake_server):
    server = fake_server("digitalocean")
    p = provider(server)
    assert p.ssh_keys() == [ALICE, DEPLOY]
    assert p.hostname() == "demo-1.example.internal"


def test_no_keys_is_zero_keys(fake_server):
    server = fake_server("digitalocean", instance=dataclasses.replace(SAMPLE, ssh_keys=()))
    assert provider(server).ssh_keys() == []


@pytest.mark.parametrize("fault, statuses", [
    (Fault(DOCUMENT, "status", 503, count=2), [503, 503, 200]),
    (Fault(DOCUMENT, "reset", count=1), [None, 200]),
])
def test_transient_failures_are_retried(fake_server, fault, statuses):
    server = fake_server("digitalocean", faults=[fault])
    assert provider(server).hostname() == "demo-1.example.internal"
    assert [r["status"] for r in server.requests] == statuses


@pytest.mark.parametrize("fault, status", [
    (Fault(DOCUMENT, "status", 404), 404),  # not 404-tolerant: the document is the platform
    (Fault(DOCUMENT, "status", 503), 503),
    (Fault(DOCUMENT, "reset"), None),
])
def test_a_document_that_cannot_be_read_fails_every_part(fake_server, fault, status):
    server = fake_server("digitalocean", faults=[fault])
    p = provider(server, timeout=1.5)
    for part in ("attributes", "ssh_keys", "hostname", "network"):
        with pytest.raises(FetchError) as info:
            getattr(p, part)()
        assert info.value.source == SOURCE
        assert info.value.status == status
    if status == 404:
        assert len(server.requests) == 1  # a 404 is final: not retried


def test_empty_document_is_invalid(fake_server):
    server = fake_server("digitalocean", faults=[Fault(DOCUMENT, "empty")])
    with pytest.raises(InvalidMetadata) as info:
        provider(server).attributes()
    assert info.value.source == SOURCE and "invalid JSON" in info.value.cause


@pytest.mark.parametrize("change, part, field", [
    (lambda d: d.update(interfaces=[]), "attributes", "'interfaces'"),
    (lambda d: d["interfaces"].update(public={}), "attributes", "'interfaces.public'"),
    (lambda d: d["interfaces"]["public"][0]["ipv4"].update(ip_address="203.0.113.256"),
     "attributes", "'interfaces.public[0].ipv4.ip_address'"),
    (lambda d: d["interfaces"]["public"][0]["ipv6"].update(ip_address="10.0.0.1"),
     "attributes", "'interfaces.public[0].ipv6.ip_address'"),
    (lambda d: d["interfaces"]["private"][0].update(ipv4="10.130.0.15"), "attributes",
     "'interfaces.private[0].ipv4'"),
    (lambda d: d.update(public_keys="ssh-ed25519 AAAA"), "ssh_keys", "'public_keys'"),
    (lambda d: d.update(hostname=["x"]), "hostname", "'hostname'"),
    (lambda d: d["interfaces"]["private"][0]["ipv4"].update(netmask="255.0.255.0"), "network",
     "'interfaces.private[0].ipv4.netmask'"),
    (lambda d: d["interfaces"]["public"][0]["ipv6"].update(cidr="64"), "network",
     "'interfaces.public[0].ipv6.cidr'"),
    (lambda d: d["interfaces"]["public"][0]["ipv4"].update(gateway="2001:db8::1"), "network",
     "'interfaces.public[0].ipv4.gateway'"),
    (lambda d: d["dns"].update(nameservers=["192.0.2.53]"]), "network", "'dns.nameservers[0]'"),
])
def test_wrong_values_are_invalid_naming_the_field(fake_server, change, part, field):
    server = fake_server("digitalocean", faults=[with_document(change)])
    with pytest.raises(InvalidMetadata) as info:
        getattr(provider(server), part)()
    assert info.value.source == SOURCE and field in info.value.cause


def test_the_process_writes_exact_units_attributes_and_hostname(fake_server, agent_env,
                                                                 tmp_path):
    server = fake_server("digitalocean")
    agent_env["CL_METADATA_ENDPOINT"] = server.url
    units, attributes = tmp_path / "etc/systemd/network", tmp_path / "run/metadata/coreos"
    for directory in (units.parent, attributes.parent):  # outside /run, parents are not created
        directory.mkdir(parents=True)
    result = run_agent("--provider", "digitalocean", "--network-units", units,
                       "--attributes", attributes, "--hostname", tmp_path / "hostname", "-v",
                       env=agent_env)
    assert result.returncode == 0, result.stderr
    assert {name: (units / name).read_text() for name in os.listdir(units)} == UNITS
    assert all(os.stat(units / name).st_mode & 0o777 == 0o644 for name in UNITS)
    assert attributes.read_text() == ATTRIBUTES.format(p="COREOS")
    assert (tmp_path / "hostname").read_text() == "demo-1.example.internal\n"
    assert [(r["method"], r["path"]) for r in server.requests] == [("GET", DOCUMENT)]
    assert "wrote 2 network units to " + str(units) in result.stderr
    assert "203.0.113.25" not in result.stderr


@pytest.mark.parametrize("change", [
    lambda d: d["interfaces"]["private"][0].update(mac="fa:16:3e:4c:2d:7b\n[Network]\nDNS=6.6.6.6"),
    lambda d: d["interfaces"]["private"][0]["ipv4"].update(ip_address="10.130.0.15]"),
    lambda d: d["dns"].update(nameservers=["6.6.6.6\n[Route]"]),
])
def test_injection_attempts_write_nothing(fake_server, agent_env, tmp_path, change):
    server = fake_server("digitalocean", faults=[with_document(change)])
    agent_env["CL_METADATA_ENDPOINT"] = server.url
    units, attributes = tmp_path / "network", tmp_path / "attributes"
    result = run_agent("--provider", "digitalocean", "--network-units", units,
                       "--attributes", attributes, env=agent_env)
    assert result.returncode == 1
    assert "InvalidMetadata" not in result.stderr and "6.6.6.6" not in result.stderr
    assert not units.exists() and not attributes.exists()
