"""scaleway against the fake server: the code's attribute names in both prefixes, keys,
hostname, the endpoint matrix of docs/protocols.md, and the PATCH /state check-in exactly as the
server saw it."""

import dataclasses
import json
import urllib.error
import urllib.request

import pytest

from cl_metadata.outputs import envfile
from cl_metadata.errors import FetchError, InvalidMetadata
from cl_metadata.fakeserver.faults import Fault
from cl_metadata.fakeserver.instance import load_instance
from cl_metadata.fakeserver.render import scaleway as render
from cl_metadata.providers.scaleway import ScalewayProvider

from conftest import make_context, run_agent

SAMPLE = load_instance(None)
ALICE, DEPLOY = (key.key for key in SAMPLE.ssh_keys)
CONF = "/conf"
SOURCE = "GET http://169.254.42.42/conf?format=json"

ATTRIBUTES = (
    "{p}_SCALEWAY_HOSTNAME=demo-1.example.internal\n"
    "{p}_SCALEWAY_INSTANCE_ID=i-0a1b2c3d4e5f60718\n"
    "{p}_SCALEWAY_INSTANCE_TYPE=m1.small\n"
    "{p}_SCALEWAY_IPV4_PRIVATE=10.0.1.15\n"
    "{p}_SCALEWAY_IPV4_PUBLIC=203.0.113.25\n"
    "{p}_SCALEWAY_IPV6_PUBLIC=2001:db8:1:2::15\n"
    "{p}_SCALEWAY_ZONE_ID=nova\n"
)


def provider(server, timeout=3):
    return ScalewayProvider(make_context(server, timeout=timeout))


def with_document(change):
    document = render.document(SAMPLE)
    change(document)
    return Fault(CONF, "malformed", json.dumps(document))


def test_attributes_in_both_prefixes(fake_server):
    server = fake_server("scaleway")
    attributes = provider(server).attributes()
    for prefix in ("COREOS", "AFTERBURN"):
        assert envfile.render(attributes, prefix) == (ATTRIBUTES.format(p=prefix).encode(), [])
    assert [(r["method"], r["path"], r["query"]) for r in server.requests] == [
        ("GET", CONF, "format=json")]


def test_absent_addresses_are_left_out_and_empty_ones_written_empty(fake_server):
    instance = dataclasses.replace(SAMPLE, public_ipv4=None, ipv6=None, local_ipv4="")
    server = fake_server("scaleway", instance=instance)
    attributes = provider(server).attributes()
    assert "SCALEWAY_IPV4_PUBLIC" not in attributes and "SCALEWAY_IPV6_PUBLIC" not in attributes
    assert attributes["SCALEWAY_IPV4_PRIVATE"] == ""


def test_keys_and_hostname(fake_server):
    server = fake_server("scaleway")
    p = provider(server)
    assert p.ssh_keys() == [ALICE, DEPLOY]
    assert p.hostname() == "demo-1.example.internal"
    assert len(server.requests) == 1  # one document for both parts


def test_no_keys_is_zero_keys(fake_server):
    server = fake_server("scaleway", instance=dataclasses.replace(SAMPLE, ssh_keys=()))
    assert provider(server).ssh_keys() == []


def test_check_in_patches_the_state_exactly(fake_server):
    server = fake_server("scaleway")
    provider(server).check_in()
    [patch] = server.requests
    assert (patch["method"], patch["path"], patch["status"]) == ("PATCH", "/state", 200)
    assert patch["headers"]["Content-Type"] == "application/json"
    assert patch["body"] == '{"state_detail":"booted"}'


def test_the_process_writes_attributes_and_checks_in(fake_server, agent_env, tmp_path):
    server = fake_server("scaleway")
    agent_env["CL_METADATA_ENDPOINT"] = server.url
    out = tmp_path / "attributes"
    result = run_agent("--provider", "scaleway", "--attributes", out, "--hostname",
                       tmp_path / "hostname", "--check-in", "--attributes-prefix", "AFTERBURN",
                       "-v", env=agent_env)
    assert result.returncode == 0, result.stderr
    assert out.read_text() == ATTRIBUTES.format(p="AFTERBURN")
    assert (tmp_path / "hostname").read_text() == "demo-1.example.internal\n"
    assert [(r["method"], r["path"], r["body"]) for r in server.requests] == [
        ("GET", CONF, ""), ("PATCH", "/state", '{"state_detail":"booted"}')]
    assert "scaleway: check-in sent" in result.stderr


def test_a_check_in_alone_reads_nothing(fake_server, agent_env):
    server = fake_server("scaleway")
    agent_env["CL_METADATA_ENDPOINT"] = server.url
    result = run_agent("--provider", "scaleway", "--check-in", env=agent_env)
    assert result.returncode == 0, result.stderr
    assert [(r["method"], r["path"]) for r in server.requests] == [("PATCH", "/state")]


def test_the_fake_server_needs_the_json_content_type_and_the_json_format(fake_server):
    server = fake_server("scaleway")
    patch = urllib.request.Request(server.url + "/state", data=b'{"state_detail":"booted"}',
                                   method="PATCH")
    for request, status in [(patch, 403), (server.url + CONF, 400)]:
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(request)
        assert info.value.code == status


def test_a_failing_check_in_fails(fake_server):
    server = fake_server("scaleway", faults=[Fault("/state", "status", 500)])
    with pytest.raises(FetchError) as info:
        provider(server, timeout=1.5).check_in()
    assert info.value.source == "PATCH http://169.254.42.42/state" and info.value.status == 500


@pytest.mark.parametrize("fault, statuses", [
    (Fault(CONF, "status", 503, count=1), [503, 200]),
    (Fault(CONF, "reset", count=1), [None, 200]),
])
def test_transient_failures_are_retried(fake_server, fault, statuses):
    server = fake_server("scaleway", faults=[fault])
    assert provider(server).hostname() == "demo-1.example.internal"
    assert [r["status"] for r in server.requests] == statuses


@pytest.mark.parametrize("fault, status", [
    (Fault(CONF, "status", 404), 404),
    (Fault(CONF, "status", 503), 503),
    (Fault(CONF, "reset"), None),
])
def test_a_document_that_cannot_be_read_fails(fake_server, fault, status):
    server = fake_server("scaleway", faults=[fault])
    p = provider(server, timeout=3)  # generous: the machine may be loaded
    for part in ("attributes", "ssh_keys", "hostname"):
        with pytest.raises(FetchError) as info:
            getattr(p, part)()
        assert info.value.source == SOURCE
        assert info.value.status == status


def test_empty_document_is_invalid(fake_server):
    server = fake_server("scaleway", faults=[Fault(CONF, "empty")])
    with pytest.raises(InvalidMetadata) as info:
        provider(server).attributes()
    assert info.value.source == SOURCE and "invalid JSON" in info.value.cause


@pytest.mark.parametrize("change, part, field", [
    (lambda d: d.update(location="par1"), "attributes", "'location'"),
    (lambda d: d.update(public_ip="203.0.113.25"), "attributes", "'public_ip'"),
    (lambda d: d.update(private_ip=["10.0.1.15"]), "attributes", "'private_ip'"),
    (lambda d: d.update(ssh_public_keys={"key": ALICE}), "ssh_keys", "'ssh_public_keys'"),
    (lambda d: d["ssh_public_keys"][1].pop("key"), "ssh_keys", "'ssh_public_keys[1].key'"),
    (lambda d: d.update(hostname=True), "hostname", "'hostname'"),
])
def test_wrong_types_are_invalid_naming_the_field(fake_server, change, part, field):
    server = fake_server("scaleway", faults=[with_document(change)])
    with pytest.raises(InvalidMetadata) as info:
        getattr(provider(server), part)()
    assert info.value.source == SOURCE and field in info.value.cause
