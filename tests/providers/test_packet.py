"""packet against the fake server: the one document (reached through the endpoint override
although its base is a DNS name), the four address counters with their gateways, bonded network
units written by the real process, and the phone-home check-in as the server saw it."""

import dataclasses
import json
import os
import urllib.error
import urllib.request

import pytest

from cl_metadata.outputs import envfile
from cl_metadata.errors import FetchError, InvalidMetadata
from cl_metadata.fakeserver.faults import Fault
from cl_metadata.fakeserver.instance import load_instance
from cl_metadata.fakeserver.render import packet as render
from cl_metadata.model import BondOptions
from cl_metadata.providers.packet import PacketProvider

from conftest import make_context, run_agent

SAMPLE = load_instance(None)
ALICE, DEPLOY = (key.key for key in SAMPLE.ssh_keys)
DOCUMENT = "/metadata"
SOURCE = "GET https://metadata.packet.net/metadata"
HEADER = "# Written by cl-metadata from the platform's metadata; replaced on every run.\n"

ATTRIBUTES = (
    "{p}_PACKET_HOSTNAME=demo-1.example.internal\n"
    "{p}_PACKET_IPV4_PRIVATE_0=10.0.1.15\n"
    "{p}_PACKET_IPV4_PRIVATE_1=10.130.0.15\n"
    "{p}_PACKET_IPV4_PRIVATE_GATEWAY_0=10.0.1.1\n"
    "{p}_PACKET_IPV4_PRIVATE_GATEWAY_1=10.130.0.1\n"
    "{p}_PACKET_IPV4_PUBLIC_0=203.0.113.25\n"
    "{p}_PACKET_IPV4_PUBLIC_GATEWAY_0=203.0.113.1\n"
    "{p}_PACKET_IPV6_PUBLIC_0=2001:db8:1:2::15\n"
    "{p}_PACKET_IPV6_PUBLIC_GATEWAY_0=2001:db8:1:2::1\n"
    "{p}_PACKET_PHONE_HOME_URL={url}/phone-home\n"
    "{p}_PACKET_PLAN=m1.small\n"
)
ONE_BOND_ONE_LOOSE = dataclasses.replace(SAMPLE, platform_data={"packet": {
    "unbonded": ["fa:16:3e:4c:2d:7b"], "bonding-mode": 1}})
UNITS = {
    "10-fa:16:3e:4c:2d:7a.network":
        HEADER + "\n[Match]\nMACAddress=fa:16:3e:4c:2d:7a\n\n[Network]\nBond=bond0\n",
    "10-fa:16:3e:4c:2d:7b.network":
        HEADER + "\n[Match]\nMACAddress=fa:16:3e:4c:2d:7b\n\n[Link]\nUnmanaged=yes\n",
    "05-bond0.network": (
        HEADER + "\n[Match]\nName=bond0\n"
        "\n[Address]\nAddress=203.0.113.25/24\n"
        "\n[Address]\nAddress=2001:db8:1:2::15/64\n"
        "\n[Address]\nAddress=10.0.1.15/24\n"
        "\n[Address]\nAddress=10.130.0.15/16\n"
        "\n[Route]\nDestination=0.0.0.0/0\nGateway=203.0.113.1\n"
        "\n[Route]\nDestination=::/0\nGateway=2001:db8:1:2::1\n"
        "\n[Route]\nDestination=10.0.0.0/8\nGateway=10.0.1.1\n"
        "\n[Route]\nDestination=10.0.0.0/8\nGateway=10.130.0.1\n"),
    "05-bond0.netdev": (
        HEADER + "\n[NetDev]\nName=bond0\nKind=bond\nMACAddress=fa:16:3e:4c:2d:7a\n"
        "\n[Bond]\nMode=active-backup\nTransmitHashPolicy=layer3+4\nMIIMonitorSec=100ms\n"
        "UpDelaySec=200ms\nDownDelaySec=200ms\n"),
}


def provider(server, timeout=3):
    return PacketProvider(make_context(server, timeout=timeout))


def with_document(change, host="127.0.0.1:9"):
    document = render.document(SAMPLE, host)
    change(document)
    return Fault(DOCUMENT, "malformed", json.dumps(document))


def address(ip, netmask, gateway, public):
    return {"address": ip, "netmask": netmask, "gateway": gateway, "public": public,
            "address_family": 6 if ":" in ip else 4, "management": True}


def test_attributes_in_both_prefixes(fake_server):
    server = fake_server("packet")
    attributes = provider(server).attributes()
    for prefix in ("COREOS", "AFTERBURN"):
        expected = ATTRIBUTES.format(p=prefix, url=server.url).encode()
        assert envfile.render(attributes, prefix) == (expected, [])
    assert [(r["method"], r["path"]) for r in server.requests] == [("GET", DOCUMENT)]


def test_four_counters_and_canonical_gateways(fake_server):
    def change(doc):
        doc["network"]["addresses"] = [
            address("198.51.100.1", "255.255.255.254", "198.51.100.0", True),
            address("2001:db8:40::1", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe",
                    "2001:db8:40::0", True),
            address("10.64.0.1", "255.255.255.254", "10.64.0.0", False),
            address("fd00:40::1", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe", "fd00:40::0", False),
        ]
    server = fake_server("packet", faults=[with_document(change)])
    attributes = provider(server).attributes()
    assert len(attributes) == 11
    assert {k: v for k, v in attributes.items() if "_IPV" in k} == {
        "PACKET_IPV4_PUBLIC_0": "198.51.100.1", "PACKET_IPV4_PUBLIC_GATEWAY_0": "198.51.100.0",
        "PACKET_IPV6_PUBLIC_0": "2001:db8:40::1", "PACKET_IPV6_PUBLIC_GATEWAY_0": "2001:db8:40::",
        "PACKET_IPV4_PRIVATE_0": "10.64.0.1", "PACKET_IPV4_PRIVATE_GATEWAY_0": "10.64.0.0",
        "PACKET_IPV6_PRIVATE_0": "fd00:40::1", "PACKET_IPV6_PRIVATE_GATEWAY_0": "fd00:40::",
    }


def test_keys_and_hostname(fake_server):
    server = fake_server("packet")
    p = provider(server)
    assert p.ssh_keys() == [ALICE, DEPLOY]
    assert p.hostname() == "demo-1.example.internal"


def test_the_process_writes_exact_bond_units(fake_server, agent_env, tmp_path):
    server = fake_server("packet", instance=ONE_BOND_ONE_LOOSE)
    agent_env["CL_METADATA_ENDPOINT"] = server.url
    units = tmp_path / "network"
    result = run_agent("--provider", "packet", "--network-units", units, env=agent_env)
    assert result.returncode == 0, result.stderr
    assert {name: (units / name).read_text() for name in os.listdir(units)} == UNITS
    assert [(r["method"], r["path"]) for r in server.requests] == [("GET", DOCUMENT)]


def test_lacp_bond_gets_a_fast_transmit_rate(fake_server):
    server = fake_server("packet")
    _, netdevs = provider(server).network()
    assert [n.bond for n in netdevs] == [BondOptions(
        mode="802.3ad", transmit_hash_policy="layer3+4", lacp_rate="fast", mii_monitor_ms=100,
        up_delay_ms=200, down_delay_ms=200)]


def test_addresses_go_on_the_first_bond_only(fake_server):
    def change(doc):
        doc["network"]["interfaces"][1]["bond"] = "bond1"
    server = fake_server("packet", faults=[with_document(change)])
    interfaces, netdevs = provider(server).network()
    bonds = {i.name: i for i in interfaces if i.name}
    assert [n.name for n in netdevs] == ["bond0", "bond1"]
    assert [n.mac for n in netdevs] == ["fa:16:3e:4c:2d:7a", "fa:16:3e:4c:2d:7b"]
    assert len(bonds["bond0"].addresses) == 4 and bonds["bond1"].addresses == ()


def test_without_a_bond_the_nics_are_unmanaged_and_nothing_else(fake_server, caplog):
    def change(doc):
        for nic in doc["network"]["interfaces"]:
            nic["bond"] = None
    server = fake_server("packet", faults=[with_document(change)])
    interfaces, netdevs = provider(server).network()
    assert [(i.mac, i.unmanaged) for i in interfaces] == [("fa:16:3e:4c:2d:7a", True),
                                                          ("fa:16:3e:4c:2d:7b", True)]
    assert netdevs == [] and "no NIC belongs to a bond" in caplog.text


def test_check_in_posts_an_empty_json_request_to_the_phone_home_url(fake_server):
    server = fake_server("packet")
    provider(server).check_in()
    get, post = server.requests
    assert (get["method"], get["path"]) == ("GET", DOCUMENT)
    assert (post["method"], post["path"], post["status"]) == ("POST", "/phone-home", 200)
    assert post["headers"]["Content-Type"] == "application/json"
    assert post["headers"]["Content-Length"] == "0" and post["body"] == ""


def test_the_process_checks_in(fake_server, agent_env):
    server = fake_server("packet")
    agent_env["CL_METADATA_ENDPOINT"] = server.url
    result = run_agent("--provider", "packet", "--check-in", "-v", env=agent_env)
    assert result.returncode == 0, result.stderr
    assert [(r["method"], r["path"], r["body"], r["headers"].get("Content-Type"))
            for r in server.requests] == [("GET", DOCUMENT, "", None),
                                          ("POST", "/phone-home", "", "application/json")]
    assert "packet: check-in sent" in result.stderr


def test_phone_home_needs_the_json_content_type(fake_server):
    server = fake_server("packet")
    request = urllib.request.Request(server.url + "/phone-home", data=b"", method="POST")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request)
    assert info.value.code == 403


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/phone-home", "http:///phone-home",
                                 "http://user@127.0.0.1/x", "http://127.0.0.1/a b", None, 7])
def test_a_phone_home_url_that_is_not_http_is_refused(fake_server, url):
    server = fake_server("packet", faults=[with_document(lambda d: d.update(phone_home_url=url))])
    with pytest.raises(InvalidMetadata) as info:
        provider(server).check_in()
    assert info.value.source == SOURCE and "phone_home_url" in info.value.cause
    assert [r["method"] for r in server.requests] == ["GET"]


def test_a_failing_phone_home_fails_the_check_in(fake_server):
    server = fake_server("packet", faults=[Fault("/phone-home", "status", 500)])
    with pytest.raises(FetchError) as info:
        provider(server, timeout=1.5).check_in()
    assert info.value.source == f"POST {server.url}/phone-home" and info.value.status == 500


@pytest.mark.parametrize("fault, statuses", [
    (Fault(DOCUMENT, "status", 503, count=1), [503, 200]),
    (Fault(DOCUMENT, "reset", count=1), [None, 200]),
])
def test_transient_failures_are_retried(fake_server, fault, statuses):
    server = fake_server("packet", faults=[fault])
    assert provider(server).hostname() == "demo-1.example.internal"
    assert [r["status"] for r in server.requests] == statuses


@pytest.mark.parametrize("fault, status", [
    (Fault(DOCUMENT, "status", 404), 404),
    (Fault(DOCUMENT, "status", 503), 503),
    (Fault(DOCUMENT, "reset"), None),
])
def test_a_document_that_cannot_be_read_fails(fake_server, fault, status):
    server = fake_server("packet", faults=[fault])
    p = provider(server, timeout=1.5)
    for part in ("attributes", "ssh_keys", "hostname", "network", "check_in"):
        with pytest.raises(FetchError) as info:
            getattr(p, part)()
        assert info.value.source == SOURCE and info.value.status == status
    assert all(r["method"] == "GET" for r in server.requests)


def test_empty_document_is_invalid(fake_server):
    server = fake_server("packet", faults=[Fault(DOCUMENT, "empty")])
    with pytest.raises(InvalidMetadata, match="invalid JSON"):
        provider(server).attributes()


@pytest.mark.parametrize("change, part, field", [
    (lambda d: d["network"]["addresses"][0].update(address="203.0.113.x"), "attributes",
     "'network.addresses[0].address'"),
    (lambda d: d["network"]["addresses"][0].update(public="yes"), "attributes",
     "'network.addresses[0].public'"),
    (lambda d: d["network"]["addresses"][1].update(gateway="10.0.0.1"), "attributes",
     "'network.addresses[1].gateway'"),
    (lambda d: d["network"]["addresses"][2].update(netmask="255.255.0.255"), "network",
     "'network.addresses[2].netmask'"),
    (lambda d: d["network"].update(bonding={"mode": 7}), "network", "'network.bonding.mode'"),
    (lambda d: d["network"].update(bonding={"mode": True}), "network", "'network.bonding.mode'"),
    (lambda d: d["network"]["interfaces"][0].update(mac=None), "network",
     "'network.interfaces[0]'"),
    (lambda d: d["network"].update(addresses={}), "attributes", "'network.addresses'"),
    (lambda d: d.update(ssh_keys=[1]), "ssh_keys", "'ssh_keys'"),
])
def test_wrong_values_are_invalid_naming_the_field(fake_server, change, part, field):
    server = fake_server("packet", faults=[with_document(change)])
    with pytest.raises(InvalidMetadata) as info:
        getattr(provider(server), part)()
    assert info.value.source == SOURCE and field in info.value.cause


def test_surrounding_whitespace_is_not_part_of_an_address(fake_server):
    def change(doc):
        doc["network"]["addresses"][0]["address"] = " 203.0.113.25\n"
    server = fake_server("packet", faults=[with_document(change)])
    interfaces, _ = provider(server).network()
    assert interfaces[-1].name == "bond0" and interfaces[-1].addresses[0] == "203.0.113.25/24"


@pytest.mark.parametrize("change", [
    lambda d: d["network"]["interfaces"][0].update(mac="fa:16:3e:4c:2d:7a\n[Link]\nUnmanaged=no"),
    lambda d: d["network"]["interfaces"][0].update(bond="bond0\nDNS=6.6.6.6"),
])
def test_injection_attempts_write_nothing(fake_server, agent_env, tmp_path, change):
    server = fake_server("packet", faults=[with_document(change)])
    agent_env["CL_METADATA_ENDPOINT"] = server.url
    result = run_agent("--provider", "packet", "--network-units", tmp_path / "network",
                       "--attributes", tmp_path / "attributes", env=agent_env)
    assert result.returncode == 1 and "network units: interface 0:" in result.stderr
    assert not (tmp_path / "network").exists() and not (tmp_path / "attributes").exists()
