"""azure against the fake server: IMDS + WireServer on one origin, the platform check, the
SharedConfig rules, keys, the Ready report as the server saw it, and XML without DTDs."""

import dataclasses
import logging
import subprocess
import sys
import time

import pytest

from cl_metadata.sources import dhcp

from cl_metadata.outputs import envfile
from cl_metadata.errors import FetchError, InvalidMetadata, MetadataError
from cl_metadata.fakeserver.faults import Fault
from cl_metadata.fakeserver.instance import InstanceError, load_instance
from cl_metadata.providers import azure_wireserver as fabric
from cl_metadata.providers.azure import AzureProvider

from conftest import make_context

SAMPLE = load_instance(None)
ALICE, DEPLOY = (key.key for key in SAMPLE.ssh_keys)
VERSIONS, GOAL_STATE = "/?comp=versions", "/machine/?comp=goalstate"
HEALTH = "/machine/?comp=health"
COMPUTE = "/metadata/instance/compute/"
CONTAINER = SAMPLE.uuid
ROLE_INSTANCE = SAMPLE.uuid.replace("-", "") + ".demo-1"
SHARED_CONFIG = f"/machine/{CONTAINER}/{ROLE_INSTANCE}"
DOCTYPE = b'<?xml version="1.0"?>\n<!DOCTYPE lol [<!ENTITY lol "lol">]>\n<Versions>&lol;</Versions>'
# The agent process with the DHCP lease root pointed at a test directory (a test-only prelude:
# the process is otherwise the real one, same module, same arguments).
PRELUDE = ("import os, sys, cl_metadata.sources.dhcp as d; d.ROOT = os.environ['TEST_DHCP_ROOT']; "
           "from cl_metadata.cli import run; run()")


@pytest.fixture(autouse=True)
def no_dhcp_lease(tmp_path, monkeypatch):
    """No lease anywhere (no DHCP client directory): the fallback address, without waiting."""
    monkeypatch.setattr(dhcp, "ROOT", str(tmp_path / "empty-root"))


def azure(**platform_data):
    return dataclasses.replace(SAMPLE, platform_data={"azure": platform_data})


def provider(server, timeout=3, **http):
    return AzureProvider(make_context(server, timeout=timeout, **http))


def seen(server):
    return [(r["method"], r["path"] + ("?" + r["query"] if r["query"] else ""))
            for r in server.requests]


def test_attributes_and_requests(fake_server):
    server = fake_server("azure")
    attributes = provider(server).attributes()
    assert attributes == {"AZURE_IPV4_DYNAMIC": "10.0.1.15", "AZURE_IPV4_VIRTUAL": "203.0.113.25",
                          "AZURE_VMSIZE": "m1.small"}
    assert envfile.render(attributes, "COREOS")[0] == (
        b"COREOS_AZURE_IPV4_DYNAMIC=10.0.1.15\nCOREOS_AZURE_IPV4_VIRTUAL=203.0.113.25\n"
        b"COREOS_AZURE_VMSIZE=m1.small\n")
    assert envfile.render(attributes, "AFTERBURN")[0] == (
        b"AFTERBURN_AZURE_IPV4_DYNAMIC=10.0.1.15\nAFTERBURN_AZURE_IPV4_VIRTUAL=203.0.113.25\n"
        b"AFTERBURN_AZURE_VMSIZE=m1.small\n")
    assert sorted(seen(server)) == sorted([
        ("GET", VERSIONS), ("GET", GOAL_STATE),
        ("GET", COMPUTE + "vmSize?api-version=2017-08-01&format=text"),
        ("GET", SHARED_CONFIG + "?comp=config&type=sharedConfig&incarnation=1")])
    for request in server.requests:  # each kind of endpoint got its headers
        wireserver = not request["path"].startswith("/metadata/")
        assert request["headers"].get("x-ms-version") == ("2012-11-30" if wireserver else None)
        assert request["headers"].get("Metadata") == (None if wireserver else "true")


def test_first_requests_overlap_then_shared_config(fake_server):
    server = fake_server("azure", latency=0.2)
    provider(server, timeout=20).attributes()
    assert server.max_in_flight == 3  # versions, goal state and vmSize together
    assert server.requests[-1]["path"] == SHARED_CONFIG


def test_a_certificates_url_in_the_goal_state_is_not_used(fake_server):
    server = fake_server("azure", instance=azure(certificates=True))
    assert provider(server).attributes()["AZURE_IPV4_DYNAMIC"] == "10.0.1.15"
    assert not any("certificates" in r["query"] for r in server.requests)
    goal_state = make_context(server).http.get(server.url + GOAL_STATE, headers=fabric.HEADERS)
    assert b"<Certificates>http://168.63.129.16:80/machine/" in goal_state


def test_fake_server_checks_its_platform_data(fake_server):
    with pytest.raises(InstanceError, match="azure: versions must be a list of strings"):
        fake_server("azure", instance=azure(versions="2012-11-30"))


def test_no_matching_shared_config_instance(fake_server):
    server = fake_server("azure", instance=azure(**{"shared-config-instance": "someone-else"}))
    assert provider(server).attributes() == {"AZURE_VMSIZE": "m1.small"}


@pytest.mark.parametrize("endpoints, virtual", [
    (["198.51.100.1:22", "198.51.100.2:443", "no-address", ":80", "[2001:db8::1]:22",
      "198.51.100.3", "198.51.100.4:99999"], "198.51.100.2"),  # the last one that parses
    (["bad", ""], None),
    ([], None),
])
def test_virtual_address_is_the_last_parsable_endpoint(fake_server, endpoints, virtual):
    server = fake_server("azure", instance=azure(endpoints=endpoints))
    assert provider(server).attributes().get("AZURE_IPV4_VIRTUAL") == virtual


def test_instance_address_that_is_not_ipv4_is_an_error(fake_server):
    server = fake_server("azure", instance=dataclasses.replace(azure(), local_ipv4=None))
    with pytest.raises(InvalidMetadata, match="not an IPv4 address") as info:
        provider(server).attributes()
    assert info.value.source == "GET <the goal state's SharedConfig URL>"  # ids in its path


@pytest.mark.parametrize("part", ["attributes", "hostname", "ssh_keys", "check_in"])
def test_versions_without_2012_11_30_fail_every_part(fake_server, part):
    server = fake_server("azure", instance=azure(versions=["2015-04-05"]))
    with pytest.raises(MetadataError, match="does not list version 2012-11-30") as info:
        getattr(provider(server), part)()
    assert info.value.source == "GET http://168.63.129.16/?comp=versions"
    assert all(method == "GET" for method, _ in seen(server))  # no Ready report was sent


def test_versions_without_2012_11_30_real_process_exit_1(fake_server, agent_env, tmp_path):
    server = fake_server("azure", instance=azure(versions=["2015-04-05"]))
    agent_env.update(CL_METADATA_ENDPOINT=server.url, TEST_DHCP_ROOT=str(tmp_path / "none"))
    attributes = tmp_path / "attributes"
    result = subprocess.run([sys.executable, "-c", PRELUDE, "--provider", "azure",
                             "--attributes", attributes], env=agent_env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 1
    assert "does not list version 2012-11-30" in result.stderr
    assert not attributes.exists()


def test_end_to_end_real_process(fake_server, agent_env, tmp_path):
    server = fake_server("azure")
    agent_env.update(CL_METADATA_ENDPOINT=server.url, TEST_DHCP_ROOT=str(tmp_path / "none"))
    attributes, hostname = tmp_path / "attributes", tmp_path / "hostname"
    result = subprocess.run([sys.executable, "-c", PRELUDE, "--provider", "azure",
                             "--attributes", attributes, "--hostname", hostname, "--check-in"],
                            env=agent_env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert attributes.read_text() == ("COREOS_AZURE_IPV4_DYNAMIC=10.0.1.15\n"
                                      "COREOS_AZURE_IPV4_VIRTUAL=203.0.113.25\n"
                                      "COREOS_AZURE_VMSIZE=m1.small\n")
    assert hostname.read_text() == "demo-1.example.internal\n"
    posts = [r for r in server.requests if r["method"] == "POST"]
    assert [(r["path"], r["query"], r["status"]) for r in posts] == [
        ("/machine/", "comp=health", 200)]
    # one platform check and one goal state serve attributes and check-in alike
    assert seen(server).count(("GET", VERSIONS)) == seen(server).count(("GET", GOAL_STATE)) == 1


def test_check_in_sends_the_ready_report(fake_server):
    server = fake_server("azure", instance=azure(incarnation="7"))
    provider(server).check_in()
    assert seen(server)[-1] == ("POST", HEALTH)
    post = server.requests[-1]
    assert post["status"] == 200  # the fake server validated the fields too
    assert post["headers"]["Content-Type"] == "text/xml; charset=utf-8"
    assert post["headers"]["x-ms-version"] == "2012-11-30"
    assert post["headers"]["x-ms-agent-name"] == "com.coreos.metadata"
    assert post["body"] == (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        '<Health xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"'
        ' xmlns:xsd="http://www.w3.org/2001/XMLSchema">\n'
        "  <GoalStateIncarnation>7</GoalStateIncarnation>\n"
        "  <Container>\n"
        f"    <ContainerId>{CONTAINER}</ContainerId>\n"
        "    <RoleInstanceList>\n"
        "      <Role>\n"
        f"        <InstanceId>{ROLE_INSTANCE}</InstanceId>\n"
        "        <Health>\n"
        "          <State>Ready</State>\n"
        "        </Health>\n"
        "      </Role>\n"
        "    </RoleInstanceList>\n"
        "  </Container>\n"
        "</Health>\n")


def test_check_in_refused_by_the_fabric_is_an_error(fake_server):
    server = fake_server("azure", faults=[Fault(HEALTH, "status", 400)])
    with pytest.raises(FetchError) as info:
        provider(server).check_in()
    assert info.value.status == 400


def test_hostname(fake_server):
    server = fake_server("azure")
    assert provider(server).hostname() == "demo-1.example.internal"
    assert sorted(seen(server)) == [("GET", VERSIONS),
                                    ("GET", COMPUTE + "name?api-version=2017-08-01&format=text")]


def test_hostname_empty_is_none_and_404_is_an_error(fake_server):
    server = fake_server("azure", faults=[Fault(COMPUTE + "name", "empty")])
    assert provider(server).hostname() is None
    server = fake_server("azure", instance=azure(**{"vm-name": None}))
    with pytest.raises(FetchError) as info:
        provider(server).hostname()
    assert info.value.status == 404


def test_empty_vm_size_is_written_empty_and_404_is_an_error(fake_server):
    server = fake_server("azure", faults=[Fault(COMPUTE + "vmSize", "empty")])
    assert provider(server).attributes()["AZURE_VMSIZE"] == ""
    server = fake_server("azure", instance=dataclasses.replace(azure(), instance_type=None))
    with pytest.raises(FetchError, match="404"):
        provider(server).attributes()


def test_ssh_keys_in_order(fake_server):
    server = fake_server("azure")
    assert provider(server).ssh_keys() == [ALICE, DEPLOY]


def test_no_keys_is_zero_keys(fake_server):
    server = fake_server("azure", instance=dataclasses.replace(azure(), ssh_keys=()))
    assert provider(server).ssh_keys() == []


def test_key_data_wrapped_over_lines_is_joined_and_empty_kept_for_the_writer(fake_server):
    body = ('[{"keyData": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAxYgbg7sT/3EjY7mw+pqeP/\\r\\n'
            'YuiykylRre135lEkf43f alice@workstation\\n"}, {"keyData": "", "path": "/x"}]')
    server = fake_server("azure", faults=[Fault(COMPUTE + "publicKeys", "malformed", body)])
    assert provider(server).ssh_keys() == [ALICE, ""]


@pytest.mark.parametrize("body, cause", [
    ('{"keyData": "ssh-ed25519 AAAA"}', "expected a JSON list"),
    ("[42]", "expected an object with keyData"),
    ('[{"path": "/home/azureuser/.ssh/authorized_keys"}]', "'keyData' is missing"),
    ('[{"keyData": ["ssh-ed25519"]}]', "'keyData': expected a string"),
    ('[{"keyData": ', "invalid JSON"),
])
def test_malformed_public_keys_are_an_error(fake_server, body, cause):
    server = fake_server("azure", faults=[Fault(COMPUTE + "publicKeys", "malformed", body)])
    with pytest.raises(InvalidMetadata, match=cause) as info:
        provider(server).ssh_keys()
    assert info.value.source.startswith(
        "GET http://169.254.169.254/metadata/instance/compute/publicKeys?api-version=2021-02-01")


@pytest.mark.parametrize("path", [VERSIONS, GOAL_STATE, SHARED_CONFIG])
def test_a_doctype_in_any_wireserver_document_is_refused(fake_server, path):
    server = fake_server("azure", faults=[Fault(path, "malformed", DOCTYPE)])
    with pytest.raises(InvalidMetadata, match="DOCTYPE or ENTITY declaration refused"):
        provider(server).attributes()


@pytest.mark.parametrize("document", [
    DOCTYPE.decode().replace('<?xml version="1.0"?>', '<?xml version="1.0" encoding="utf-16"?>')
    .encode("utf-16"),  # hides the declaration from a byte search; the parser still refuses
    b'<!ENTITY x SYSTEM "file:///etc/shadow"><Versions/>',
    b"<!doctype Versions><Versions/>",
])
def test_declarations_are_refused_however_written(document):
    with pytest.raises(InvalidMetadata, match="declaration refused"):
        fabric.parse_xml(document, "GET test")


def test_invalid_xml_names_the_place_not_the_content(fake_server):
    server = fake_server("azure", faults=[Fault(GOAL_STATE, "malformed", "<GoalState><secret>")])
    with pytest.raises(InvalidMetadata) as info:
        provider(server).attributes()
    assert info.value.cause.startswith("invalid XML at line 1") and "secret" not in str(info.value)


@pytest.mark.parametrize("body, cause", [
    ("<GoalState><Container><ContainerId>c</ContainerId></Container></GoalState>",
     "Incarnation is missing"),
    ("<GoalState><Incarnation>1</Incarnation><Container><ContainerId>c</ContainerId>"
     "</Container></GoalState>", "SharedConfig URL is missing"),
    ("<GoalState><Incarnation>1</Incarnation><Container><ContainerId>c</ContainerId>"
     "<RoleInstanceList><RoleInstance><InstanceId>i</InstanceId><Configuration><SharedConfig>"
     "http://metadata.example/config</SharedConfig></Configuration></RoleInstance>"
     "</RoleInstanceList></Container></GoalState>", "not on the WireServer's address"),
])
def test_unusable_goal_state(fake_server, body, cause):
    server = fake_server("azure", faults=[Fault(GOAL_STATE, "malformed", body)])
    with pytest.raises(InvalidMetadata, match=cause):
        provider(server).attributes()
    assert not any(r["path"].startswith("/machine/" + CONTAINER) for r in server.requests)


def test_wireserver_address_from_dhcp_option_245(tmp_path, monkeypatch):
    leases = tmp_path / "root/run/systemd/netif/leases"
    leases.mkdir(parents=True)
    (leases / "2").write_text("ADDRESS=10.0.1.15\nSERVER_ADDRESS=10.0.1.1\nOPTION_245=0a0b0c0d\n")
    monkeypatch.setattr(dhcp, "ROOT", str(tmp_path / "root"))
    # no override, so nothing may be sent: only the address is asked for (a lease read)
    assert AzureProvider(make_context())._wireserver() == "http://10.11.12.13"
    # a goal state naming the fallback address while DHCP said otherwise: refused
    with pytest.raises(InvalidMetadata, match="not on the WireServer's address") as info:
        fabric.fabric_url("http://168.63.129.16:80/machine/c/r?comp=config", "10.11.12.13",
                          "SharedConfig", "GET http://10.11.12.13/machine/?comp=goalstate")
    assert info.value.source == "GET http://10.11.12.13/machine/?comp=goalstate"


def waiting_lease_root(tmp_path):
    """A DHCP client directory without a lease yet: a lookup here waits for one (5 s)."""
    root = tmp_path / "waiting-root"
    (root / "run/systemd/netif/leases").mkdir(parents=True)
    return root


def test_under_the_override_no_lease_is_looked_up(fake_server, tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(dhcp, "ROOT", str(waiting_lease_root(tmp_path)))
    looked = []
    monkeypatch.setattr(dhcp, "find", lambda *a, **k: looked.append(1))
    server = fake_server("azure")
    with caplog.at_level(logging.DEBUG, logger="cl_metadata"):
        p = provider(server)
        assert p.attributes()["AZURE_IPV4_DYNAMIC"] == "10.0.1.15"
        p.check_in()
    assert looked == []
    # the WireServer's requests went to the override like IMDS's
    assert ("GET", VERSIONS) in seen(server) and ("POST", HEALTH) in seen(server)
    messages = [r.getMessage() for r in caplog.records]
    assert not [m for m in messages if "lease" in m.lower() or "dhcp" in m.lower()]
    assert not [r for r in caplog.records if r.levelno >= logging.INFO
                and "168.63.129.16" in r.getMessage()]


def test_under_the_override_the_real_process_does_not_wait_for_a_lease(fake_server, agent_env,
                                                                       tmp_path):
    server = fake_server("azure")
    agent_env.update(CL_METADATA_ENDPOINT=server.url,
                     TEST_DHCP_ROOT=str(waiting_lease_root(tmp_path)))
    attributes = tmp_path / "attributes"
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-c", PRELUDE, "--provider", "azure",
                             "--attributes", attributes], env=agent_env, capture_output=True,
                            text=True, timeout=60)
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    assert "COREOS_AZURE_IPV4_DYNAMIC=10.0.1.15\n" in attributes.read_text()
    # a lease lookup in that root would have waited 5 s; start-up and requests take < 1 s
    assert elapsed < 2.5, elapsed
    assert "168.63.129.16" not in result.stderr and "lease" not in result.stderr.lower()


def test_transient_failures_are_retried(fake_server):
    server = fake_server("azure", faults=[Fault(VERSIONS, "status", 503, count=2),
                                          Fault(GOAL_STATE, "reset", count=1),
                                          Fault(SHARED_CONFIG, "status", 503, count=1)])
    assert provider(server).attributes()["AZURE_IPV4_VIRTUAL"] == "203.0.113.25"
    assert seen(server).count(("GET", VERSIONS)) == 3


@pytest.mark.parametrize("path, kind, arg", [
    (VERSIONS, "status", 503), (GOAL_STATE, "reset", None), (SHARED_CONFIG, "status", 404),
    (COMPUTE + "vmSize", "status", 503)])
def test_persistent_failures_are_errors(fake_server, path, kind, arg):
    server = fake_server("azure", faults=[Fault(path, kind, arg)])
    with pytest.raises(FetchError):
        provider(server, timeout=1.5).attributes()


def test_empty_versions_document_is_invalid(fake_server):
    server = fake_server("azure", faults=[Fault(VERSIONS, "empty")])
    with pytest.raises(InvalidMetadata, match="invalid XML"):
        provider(server).hostname()


@pytest.mark.parametrize("path, headers", [
    (COMPUTE + "name?api-version=2017-08-01&format=text", {}),
    (VERSIONS, {"x-ms-agent-name": "com.coreos.metadata"}),
    (GOAL_STATE, {"x-ms-agent-name": "com.coreos.metadata", "x-ms-version": "2015-04-05"}),
])
def test_fake_server_refuses_requests_without_the_required_headers(fake_server, path, headers):
    server = fake_server("azure")
    with pytest.raises(FetchError) as info:
        make_context(server).http.get(server.url + path, headers=headers)
    assert info.value.status == 403


def test_fake_imds_wants_an_api_version(fake_server):
    server = fake_server("azure")
    with pytest.raises(FetchError) as info:
        make_context(server).http.get(server.url + COMPUTE + "name", headers={"Metadata": "true"})
    assert info.value.status == 400
