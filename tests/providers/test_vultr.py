"""vultr against the fake metadata service: three text items, keys, hostname (docs/protocols.md)."""

import dataclasses

import pytest

from cl_metadata.outputs import envfile, sshkeys
from cl_metadata.errors import FetchError
from cl_metadata.fakeserver.faults import Fault
from cl_metadata.fakeserver.instance import load_instance
from cl_metadata.providers.vultr import VultrProvider

from conftest import make_context, run_agent

SAMPLE = load_instance(None)
ALICE, DEPLOY = (key.key for key in SAMPLE.ssh_keys)
INSTANCE = dataclasses.replace(SAMPLE, platform_data={"vultr": {"region-code": "ewr"}})
BASE = "/v1/"
PATHS = {"VULTR_HOSTNAME": BASE + "hostname", "VULTR_INSTANCE_ID": BASE + "instanceid",
         "VULTR_REGION_CODE": BASE + "region/regioncode"}
EXPECTED = {"VULTR_HOSTNAME": "demo-1.example.internal",
            "VULTR_INSTANCE_ID": "i-0a1b2c3d4e5f60718", "VULTR_REGION_CODE": "ewr"}
KEYS = BASE + "public-keys"


def provider(server, timeout=3):
    return VultrProvider(make_context(server, timeout=timeout))


def server_with(fake_server, *faults, instance=INSTANCE):
    return fake_server("vultr", instance=instance, faults=list(faults))


@pytest.mark.parametrize("prefix", ["COREOS", "AFTERBURN"])
def test_attribute_file(fake_server, prefix):
    server = server_with(fake_server)
    data, dropped = envfile.render(provider(server).attributes(), prefix)
    assert dropped == [] and data.decode() == "".join(
        f"{prefix}_{name}={value}\n" for name, value in sorted(EXPECTED.items()))
    assert sorted(r["path"] for r in server.requests) == sorted(PATHS.values())


@pytest.mark.parametrize("name", sorted(PATHS))
def test_each_item_404_empty_and_transient(fake_server, name):
    path = PATHS[name]
    server = server_with(fake_server, Fault(path, "status", 404, count=1),
                         Fault(path, "empty", count=1), Fault(path, "status", 503, count=1),
                         Fault(path, "reset", count=1))
    others = {n: v for n, v in EXPECTED.items() if n != name}
    assert provider(server).attributes() == others  # 404: absent
    assert provider(server).attributes() == others  # empty: absent too
    assert provider(server).attributes() == EXPECTED  # 503, reset, then the value
    assert [r["status"] for r in server.requests if r["path"] == path] == [404, 200, 503, None,
                                                                           200]


@pytest.mark.parametrize("kind, arg", [("status", 503), ("reset", None)])
def test_persistent_failure_is_an_error(fake_server, kind, arg):
    server = server_with(fake_server, Fault(PATHS["VULTR_INSTANCE_ID"], kind, arg))
    with pytest.raises(FetchError) as info:
        provider(server, timeout=1.5).attributes()
    assert info.value.source == f"GET http://169.254.169.254{PATHS['VULTR_INSTANCE_ID']}"


def test_hostname_matrix(fake_server):
    path = PATHS["VULTR_HOSTNAME"]
    server = server_with(fake_server, Fault(path, "status", 404, count=1),
                         Fault(path, "empty", count=1))
    assert [provider(server).hostname() for _ in range(3)] == [None, None,
                                                              "demo-1.example.internal"]
    assert [r["path"] for r in server.requests] == [path] * 3
    with pytest.raises(FetchError):
        provider(server_with(fake_server, Fault(path, "status", 503)), timeout=1.5).hostname()


def test_two_keys(fake_server):
    server = server_with(fake_server)
    assert provider(server).ssh_keys() == [ALICE, DEPLOY]
    assert [r["path"] for r in server.requests] == [KEYS]


@pytest.mark.parametrize("fault", [Fault(KEYS, "status", 404), Fault(KEYS, "empty")])
def test_no_keys(fake_server, fault):
    assert provider(server_with(fake_server, fault)).ssh_keys() == []


def test_a_bad_line_is_left_to_the_writer(fake_server):
    body = f"{ALICE}\n\nnot a key\n{DEPLOY}\n"
    server = server_with(fake_server, Fault(KEYS, "malformed", body))
    lines = provider(server).ssh_keys()
    assert lines == [ALICE, "not a key", DEPLOY]
    keys, warnings = sshkeys.validate_keys(lines)
    assert [k.line() for k in keys] == [ALICE, DEPLOY] and len(warnings) == 1


def test_keys_fetch_failure_is_an_error(fake_server):
    with pytest.raises(FetchError):
        provider(server_with(fake_server, Fault(KEYS, "reset")), timeout=1.5).ssh_keys()


def test_agent_writes_attributes_and_hostname(fake_server, agent_env, tmp_path):
    server = server_with(fake_server)
    agent_env["CL_METADATA_ENDPOINT"] = server.url
    attributes, hostname = tmp_path / "attributes", tmp_path / "hostname"
    result = run_agent("--provider", "vultr", "--attributes", attributes, "--hostname", hostname,
                       env=agent_env)
    assert result.returncode == 0, result.stderr
    assert attributes.read_text() == "".join(
        f"COREOS_{name}={value}\n" for name, value in sorted(EXPECTED.items()))
    assert hostname.read_text() == "demo-1.example.internal\n"
    assert len(server.requests) == 3  # the hostname is fetched once for both outputs
