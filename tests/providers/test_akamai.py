"""akamai against the fake Linode metadata service: token PUT, JSON documents, keys by user."""

import dataclasses
import json

import pytest

from cl_metadata.outputs import envfile
from cl_metadata.errors import FetchError, InvalidMetadata
from cl_metadata.fakeserver.faults import Fault
from cl_metadata.fakeserver.instance import load_instance
from cl_metadata.providers.akamai import AkamaiProvider, parse_network

from conftest import make_context, run_agent

SAMPLE = load_instance(None)
ALICE, DEPLOY = (key.key for key in SAMPLE.ssh_keys)
INSTANCE = dataclasses.replace(SAMPLE, region="us-ord", instance_type="g6-standard-2",
                               platform_data={"akamai": {
                                   "tags": ["prod", "web"], "shared-ipv4": ["198.51.100.7/32"],
                                   "ipv6-ranges": ["2600:3c00:e000:1::/64"],
                                   "ipv6-shared-ranges": ["2600:3c00:e000:2::/64",
                                                          "2600:3c00:e000:3::/64"]}})
TOKEN, DOCS = "/v1/token", ("/v1/instance", "/v1/network")
EXPECTED = {
    "INSTANCE_HOST_UUID": "5d3f8c2a-9b14-4e6f-a0c7-2e81b4d9f063",
    "INSTANCE_ID": "52311234",
    "INSTANCE_LABEL": "demo-1",
    "INSTANCE_REGION": "us-ord",
    "INSTANCE_TAGS": "prod:web",
    "INSTANCE_TYPE": "g6-standard-2",
    "IPV6_LINK_LOCAL": "fe80::f03c:94ff:fe4c:2d7a/128",
    "IPV6_RANGE_0": "2600:3c00:e000:1::/64",
    "IPV6_SHARED_RANGE_0": "2600:3c00:e000:2::/64",
    "IPV6_SHARED_RANGE_1": "2600:3c00:e000:3::/64",
    "IPV6_SLAAC": "2001:db8:1:2::15/128",
    "PRIVATE_IPV4_0": "10.0.1.15/32",
    "PUBLIC_IPV4_0": "203.0.113.25/32",
    "SHARED_IPV4_0": "198.51.100.7/32",
}
NETWORK_NAMES = {n for n in EXPECTED if not n.startswith("INSTANCE_")}


def provider(server, timeout=3):
    return AkamaiProvider(make_context(server, timeout=timeout))


@pytest.mark.parametrize("prefix", ["COREOS", "AFTERBURN"])
def test_attribute_file(fake_server, prefix):
    data, dropped = envfile.render(provider(fake_server("akamai", instance=INSTANCE)).attributes(),
                                   prefix)
    assert dropped == [] and data.decode() == "".join(
        f"{prefix}_AKAMAI_{name}={value}\n" for name, value in sorted(EXPECTED.items()))


def test_one_token_then_json_gets_carrying_it(fake_server):
    server = fake_server("akamai", instance=INSTANCE)
    p = provider(server)
    p.attributes(), p.ssh_keys()
    put, *gets = server.requests
    assert (put["method"], put["path"]) == ("PUT", TOKEN)
    assert put["headers"]["Metadata-Token-Expiry-Seconds"] == "300"
    assert sorted(r["path"] for r in gets) == ["/v1/instance", "/v1/network", "/v1/ssh-keys"]
    assert {r["headers"]["Accept"] for r in gets} == {"application/json"}
    assert len({r["headers"]["Metadata-Token"] for r in gets}) == 1
    assert {r["status"] for r in gets} == {200}  # the token was one the server issued


def test_the_server_enforces_token_and_headers(fake_server):
    server = fake_server("akamai")
    http = make_context(server, timeout=1).http
    base = "http://169.254.169.254"
    for call, status in [
            (lambda: http.request("PUT", base + TOKEN), 403),
            (lambda: http.request("PUT", base + TOKEN,
                                  headers={"Metadata-Token-Expiry-Seconds": "0"}), 400),
            (lambda: http.get(base + "/v1/instance", headers={"Metadata-Token": "x"}), 403),
            (lambda: http.get(base + "/v1/instance", headers={
                "Metadata-Token": "forged", "Accept": "application/json"}), 401)]:
        with pytest.raises(FetchError) as info:
            call()
        assert info.value.status == status


def test_token_put_refused_is_fatal_before_any_get(fake_server):
    server = fake_server("akamai", faults=[Fault(TOKEN, "status", 403)])
    with pytest.raises(FetchError) as info:
        provider(server).attributes()
    assert info.value.status == 403 and [r["method"] for r in server.requests] == ["PUT"]


@pytest.mark.parametrize("body", ["", "two words"])
def test_unusable_token(fake_server, body):
    server = fake_server("akamai", faults=[Fault(TOKEN, "malformed", body or " ")])
    with pytest.raises(InvalidMetadata) as info:
        provider(server).ssh_keys()
    assert info.value.source == "PUT http://169.254.169.254/v1/token"
    assert "two" not in str(info.value)


def test_transient_token_failure_is_retried(fake_server):
    server = fake_server("akamai", faults=[Fault(TOKEN, "status", 503, count=1),
                                           Fault(TOKEN, "reset", count=1)])
    assert provider(server).ssh_keys() == [ALICE, DEPLOY]
    assert [r["status"] for r in server.requests if r["path"] == TOKEN] == [503, None, 200]


@pytest.mark.parametrize("path, names", [
    ("/v1/instance", {f"INSTANCE_{n}" for n in ("ID", "HOST_UUID", "LABEL", "REGION", "TYPE",
                                                 "TAGS")}),
    ("/v1/network", NETWORK_NAMES)])
def test_each_document_404_and_transient(fake_server, path, names):
    server = fake_server("akamai", instance=INSTANCE, faults=[
        Fault(path, "status", 404, count=1), Fault(path, "status", 503, count=1),
        Fault(path, "reset", count=1)])
    absent = provider(server).attributes()
    assert set(absent) == {f"AKAMAI_{n}" for n in set(EXPECTED) - names}
    assert provider(server).attributes() == {f"AKAMAI_{n}": v for n, v in EXPECTED.items()}


@pytest.mark.parametrize("path", DOCS)
@pytest.mark.parametrize("fault", ["empty", "status", "reset"])
def test_each_document_empty_or_failing_is_an_error(fake_server, path, fault):
    arg = 503 if fault == "status" else None
    server = fake_server("akamai", faults=[Fault(path, fault, arg)])
    error = InvalidMetadata if fault == "empty" else FetchError
    with pytest.raises(error) as info:
        provider(server, timeout=1.5).attributes()
    assert info.value.source.endswith(path)


def test_empty_tags_and_missing_fields(fake_server):
    body = json.dumps({"id": 7, "label": "", "tags": []})
    server = fake_server("akamai", faults=[Fault("/v1/instance", "malformed", body),
                                           Fault("/v1/network", "status", 404)])
    assert provider(server).attributes() == {"AKAMAI_INSTANCE_ID": "7",
                                             "AKAMAI_INSTANCE_LABEL": "",
                                             "AKAMAI_INSTANCE_TAGS": ""}


@pytest.mark.parametrize("document, cause", [
    ({"ipv4": {"public": "203.0.113.25/32"}}, "'ipv4.public': expected a list of strings"),
    ({"ipv4": [], "ipv6": {}}, "'ipv4': expected an object"),
    ({"ipv6": {"slaac": ["x"]}}, "'ipv6.slaac': expected a string"),
    ({"ipv6": {"ranges": [1]}}, "'ipv6.ranges': expected a list of strings")])
def test_network_of_the_wrong_shape(document, cause):
    with pytest.raises(InvalidMetadata) as info:
        parse_network(document)
    assert cause in info.value.cause


def test_keys_of_every_user_in_user_order(fake_server):
    instance = dataclasses.replace(SAMPLE, platform_data={"akamai": {
        "users": {"zed": [DEPLOY], "amy": [ALICE, ""], "nobody": None}}})
    assert provider(fake_server("akamai", instance=instance)).ssh_keys() == [ALICE, DEPLOY]


@pytest.mark.parametrize("fault", [Fault("/v1/ssh-keys", "status", 404),
                                   Fault("/v1/ssh-keys", "malformed", '{"users": {}}')])
def test_no_keys(fake_server, fault):
    assert provider(fake_server("akamai", faults=[fault])).ssh_keys() == []


@pytest.mark.parametrize("body", ['{"users": []}', '{"users": {"root": "ssh-ed25519 AAAA"}}'])
def test_keys_of_the_wrong_shape(fake_server, body):
    server = fake_server("akamai", faults=[Fault("/v1/ssh-keys", "malformed", body)])
    with pytest.raises(InvalidMetadata) as info:
        provider(server).ssh_keys()
    assert "AAAA" not in str(info.value)


def test_no_hostname(fake_server):
    server = fake_server("akamai")
    assert provider(server).hostname() is None and server.requests == []


def test_agent_writes_attributes(fake_server, agent_env, tmp_path):
    server = fake_server("akamai", instance=INSTANCE)
    agent_env["CL_METADATA_ENDPOINT"] = server.url
    out = tmp_path / "attributes"
    result = run_agent("--provider", "akamai", "--attributes", out, "--hostname",
                       tmp_path / "hostname", "--attributes-prefix", "AFTERBURN", env=agent_env)
    assert result.returncode == 0, result.stderr
    assert out.read_text() == "".join(f"AFTERBURN_AKAMAI_{name}={value}\n"
                                      for name, value in sorted(EXPECTED.items()))
    assert not (tmp_path / "hostname").exists()
    assert [r["path"] for r in server.requests][0] == TOKEN and len(server.requests) == 3
