"""gcp and gce against the fake metadata server: the flavor header both ways, the endpoint
matrix, and the SSH key policy (project blocking, expiry, de-duplication)."""

import dataclasses
import datetime
import os

import pytest

from cl_metadata.outputs import envfile
from cl_metadata.errors import FetchError
from cl_metadata.fakeserver.faults import Fault
from cl_metadata.fakeserver.instance import load_instance
from cl_metadata.providers.gcp import GceProvider, GcpProvider, is_expired, parse_ssh_keys

from conftest import make_context, needs_root, run_agent

SAMPLE = load_instance(None)
ALICE, DEPLOY = (key.key for key in SAMPLE.ssh_keys)
ALICE_BARE = " ".join(ALICE.split()[:2])
BASE = "/computeMetadata/v1/"
FLAVOR = "Metadata-Flavor"
EXPECTED = {
    "HOSTNAME": "demo-1.example.internal",
    "IP_EXTERNAL_0": "203.0.113.25",
    "IP_LOCAL_0": "10.0.1.15",
    "MACHINE_TYPE": "projects/123456789012/machineTypes/m1.small",
}
PATHS = {
    "HOSTNAME": BASE + "instance/hostname",
    "IP_EXTERNAL_0": BASE + "instance/network-interfaces/0/access-configs/0/external-ip",
    "IP_LOCAL_0": BASE + "instance/network-interfaces/0/ip",
    "MACHINE_TYPE": BASE + "instance/machine-type",
}
KEY_PATHS = {BASE + p for p in ("instance/attributes/sshKeys", "instance/attributes/ssh-keys",
                                "instance/attributes/block-project-ssh-keys",
                                "project/attributes/sshKeys", "project/attributes/ssh-keys")}
NOW = datetime.datetime(2030, 6, 1, tzinfo=datetime.timezone.utc)


def expiring(key, when, user="alice@example.com"):
    return f'{" ".join(key.split()[:2])} google-ssh {{"userName":"{user}","expireOn":"{when}"}}'


def with_gcp(**extra):
    return dataclasses.replace(SAMPLE, platform_data={"gcp": extra})


def provider(server, cls=GcpProvider, timeout=3, **http):
    return cls(make_context(server, timeout=timeout, **http))


def envfile_text(attributes, prefix):
    data, dropped = envfile.render(attributes, prefix)
    assert dropped == []
    return data.decode()


# -- attributes --------------------------------------------------------------------------------

@pytest.mark.parametrize("cls, stem", [(GcpProvider, "GCP"), (GceProvider, "GCE")])
@pytest.mark.parametrize("prefix", ["COREOS", "AFTERBURN"])
def test_attribute_files(fake_server, cls, stem, prefix):
    server = fake_server(cls.id)
    assert envfile_text(provider(server, cls).attributes(), prefix) == "".join(
        f"{prefix}_{stem}_{name}={value}\n" for name, value in sorted(EXPECTED.items()))


def test_every_request_sends_the_flavor_header(fake_server):
    server = fake_server("gcp")
    p = provider(server)
    p.attributes(), p.ssh_keys(), p.hostname()
    assert sorted(r["path"] for r in server.requests) == sorted(set(PATHS.values()) | KEY_PATHS)
    assert {r["headers"].get(FLAVOR) for r in server.requests} == {"Google"}


def test_key_sources_cost_one_round_trip(fake_server):
    server = fake_server("gcp", latency=0.2)  # answers held so that requests meet
    provider(server, timeout=20).ssh_keys()
    assert len(server.requests) == 5 and server.max_in_flight == 5


def test_the_server_refuses_a_request_without_the_flavor_header(fake_server):
    server = fake_server("gcp")
    with pytest.raises(FetchError) as info:
        make_context(server, timeout=1).http.get("http://169.254.169.254" + PATHS["HOSTNAME"])
    assert info.value.status == 403


@pytest.mark.parametrize("name", sorted(PATHS))
def test_each_item_404_empty_and_transient(fake_server, name):
    field = {"HOSTNAME": "hostname", "IP_EXTERNAL_0": "public_ipv4", "IP_LOCAL_0": "local_ipv4",
             "MACHINE_TYPE": "instance_type"}[name]
    others = {f"GCP_{n}" for n in EXPECTED if n != name}
    absent = fake_server("gcp", instance=dataclasses.replace(SAMPLE, **{field: None}))
    assert set(provider(absent).attributes()) == others  # a real 404 (it has the header)
    if field != "instance_type":  # the machine type is a path built around the value
        empty = fake_server("gcp", instance=dataclasses.replace(SAMPLE, **{field: ""}))
        assert set(provider(empty).attributes()) == others
    path = PATHS[name]
    flaky = fake_server("gcp", faults=[Fault(path, "status", 503, count=1),
                                       Fault(path, "reset", count=1)])
    assert provider(flaky).attributes()[f"GCP_{name}"] == EXPECTED[name]
    assert [r["status"] for r in flaky.requests if r["path"] == path] == [503, None, 200]


@pytest.mark.parametrize("fault", [Fault(PATHS["IP_LOCAL_0"], "status", 404),
                                   Fault(PATHS["IP_LOCAL_0"], "empty")])
def test_an_answer_without_the_flavor_header_is_not_gce(fake_server, fault):
    server = fake_server("gcp", faults=[fault])
    with pytest.raises(FetchError) as info:
        provider(server).attributes()
    assert info.value.source == f"GET http://169.254.169.254{PATHS['IP_LOCAL_0']}"
    assert "Metadata-Flavor" in info.value.cause


@pytest.mark.parametrize("kind, arg", [("status", 503), ("reset", None)])
def test_persistent_failure_is_an_error(fake_server, kind, arg):
    server = fake_server("gcp", faults=[Fault(PATHS["MACHINE_TYPE"], kind, arg)])
    with pytest.raises(FetchError) as info:
        provider(server, timeout=1.5).attributes()
    assert info.value.source == f"GET http://169.254.169.254{PATHS['MACHINE_TYPE']}"


def test_hostname_matrix(fake_server):
    assert provider(fake_server("gce"), GceProvider).hostname() == EXPECTED["HOSTNAME"]
    for hostname in (None, ""):
        server = fake_server("gcp", instance=dataclasses.replace(SAMPLE, hostname=hostname))
        assert provider(server).hostname() is None
    with pytest.raises(FetchError):
        provider(fake_server("gcp", faults=[Fault(PATHS["HOSTNAME"], "status", 503)]),
                 timeout=1.5).hostname()


# -- SSH keys ----------------------------------------------------------------------------------

def test_instance_keys_lose_their_user_prefix(fake_server):
    assert provider(fake_server("gcp")).ssh_keys() == [ALICE, DEPLOY]


@pytest.mark.parametrize("block, blocked", [(None, False), ("false", False), ("yes", False),
                                            ("true", True), ("TRUE", True), ("1", True)])
def test_block_project_ssh_keys(fake_server, block, blocked):
    extra = {"project-ssh-keys": [f"ops:{DEPLOY}"], "instance-ssh-keys": [f"alice:{ALICE}"]}
    if block is not None:
        extra["block-project-ssh-keys"] = block
    keys = provider(fake_server("gcp", instance=with_gcp(**extra))).ssh_keys()
    assert keys == ([ALICE] if blocked else [ALICE, DEPLOY])


def test_project_keys_both_attributes(fake_server):
    instance = with_gcp(**{"instance-ssh-keys": [], "project-sshKeys": [f"a:{ALICE}"],
                           "project-ssh-keys": [f"d:{DEPLOY}"]})
    assert provider(fake_server("gcp", instance=instance)).ssh_keys() == [ALICE, DEPLOY]


def test_legacy_instance_sshkeys_are_used_alone(fake_server):
    instance = with_gcp(**{"instance-sshKeys": [f"old:{DEPLOY}"],
                           "project-ssh-keys": [f"ops:{ALICE}"]})
    assert provider(fake_server("gcp", instance=instance)).ssh_keys() == [DEPLOY]


def test_expired_google_ssh_key_is_dropped(fake_server, caplog):
    instance = with_gcp(**{"instance-ssh-keys": [
        f"alice:{expiring(ALICE, '2001-01-01T00:00:00+0000')}",
        f"deploy:{expiring(DEPLOY, '2999-01-01T00:00:00+0000')}"]})
    keys = provider(fake_server("gcp", instance=instance)).ssh_keys()
    assert keys == [expiring(DEPLOY, "2999-01-01T00:00:00+0000")]
    assert "ssh-keys line 1 dropped: expired" in caplog.text
    assert ALICE_BARE.split()[1] not in caplog.text


def test_the_provider_clock_decides_expiry(fake_server):
    instance = with_gcp(**{"instance-ssh-keys": [
        f"a:{expiring(ALICE, '2030-05-31T23:59:59Z')}",
        f"d:{expiring(DEPLOY, '2030-06-01T00:00:01Z')}"]})
    p = provider(fake_server("gcp", instance=instance))
    p.clock = lambda: NOW
    assert p.ssh_keys() == [expiring(DEPLOY, "2030-06-01T00:00:01Z")]


def test_duplicates_keep_the_first_occurrence(fake_server):
    instance = with_gcp(**{"instance-ssh-keys": [f"alice:{ALICE}", f"alice2:{ALICE_BARE} other"],
                           "project-ssh-keys": [f"ops:{ALICE_BARE} ops", f"ops:{DEPLOY}"]})
    assert provider(fake_server("gcp", instance=instance)).ssh_keys() == [ALICE, DEPLOY]


def test_lines_without_a_user_are_dropped(fake_server, caplog):
    instance = with_gcp(**{"instance-ssh-keys": [ALICE_BARE, f":{ALICE}", "bob:", f"d:{DEPLOY}"]})
    assert provider(fake_server("gcp", instance=instance)).ssh_keys() == [DEPLOY]
    assert [m for m in caplog.messages if "not 'user:key'" in m] == [
        f"http://169.254.169.254{BASE}instance/attributes/ssh-keys line {n} dropped: "
        "not 'user:key'" for n in (1, 2, 3)]


@pytest.mark.parametrize("fault", [Fault(BASE + "project/attributes/ssh-keys", "status", 404),
                                   Fault(BASE + "project/attributes/ssh-keys", "reset")])
def test_key_fetch_without_flavor_or_failing_is_an_error(fake_server, fault):
    with pytest.raises(FetchError):
        provider(fake_server("gcp", faults=[fault]), timeout=1.5).ssh_keys()


def test_no_keys_anywhere(fake_server):
    server = fake_server("gcp", instance=dataclasses.replace(SAMPLE, ssh_keys=()))
    assert provider(server).ssh_keys() == []


@pytest.mark.parametrize("comment, expired", [
    ("alice@laptop", False),
    ('google-ssh {"userName":"a@example.com","expireOn":"2030-06-01T00:00:01+0000"}', False),
    ('google-ssh {"userName":"a@example.com","expireOn":"2030-06-01T00:00:00+0000"}', True),
    ('google-ssh {"userName":"a@example.com","expireOn":"2030-06-01T01:59:59.5+02:00"}', True),
    ('google-ssh {"userName":"a@example.com","expireOn":"2030-06-01T02:00:01.5+02:00"}', False),
    ('google-ssh {"userName":"a@example.com","expireOn":"June 2031"}', True),
    ('google-ssh {"userName":"a@example.com"}', True),
    ('google-ssh [1, 2]', True),
    ("google-ssh", True),
])
def test_is_expired(comment, expired):
    assert is_expired(f"{ALICE_BARE} {comment}", NOW) is expired


def test_parse_ssh_keys_is_pure():
    values = {"instance/attributes/ssh-keys": f"a:{ALICE}\n\n  d:{DEPLOY}  \n",
              "instance/attributes/block-project-ssh-keys": "true",
              "project/attributes/ssh-keys": "ops:" + ALICE_BARE}
    assert parse_ssh_keys(values, NOW) == [ALICE, DEPLOY]


# -- the real process --------------------------------------------------------------------------

def test_agent_writes_gce_attributes_and_hostname(fake_server, agent_env, tmp_path):
    server = fake_server("gce")
    agent_env["CL_METADATA_ENDPOINT"] = server.url
    attributes, hostname = tmp_path / "attributes", tmp_path / "hostname"
    result = run_agent("--provider", "gce", "--attributes", attributes, "--hostname", hostname,
                       env=agent_env)
    assert result.returncode == 0, result.stderr
    assert attributes.read_text() == "".join(
        f"COREOS_GCE_{name}={value}\n" for name, value in sorted(EXPECTED.items()))
    assert hostname.read_text() == "demo-1.example.internal\n"


def test_agent_refuses_a_server_that_is_not_gce(fake_server, agent_env, tmp_path):
    server = fake_server("openstack-metadata")  # answers, but not as Google would
    agent_env["CL_METADATA_ENDPOINT"] = server.url
    out = tmp_path / "attributes"
    result = run_agent("--provider", "gcp", "--attributes", out, "--attributes-prefix",
                       "AFTERBURN", env=agent_env)
    assert result.returncode == 1
    assert "response header Metadata-Flavor missing" in result.stderr
    assert not os.path.exists(out)


@needs_root
def test_agent_writes_gcp_keys(fake_server, agent_env, throwaway_user):
    expired = expiring(ALICE, "2001-01-01T00:00:00Z")
    instance = with_gcp(**{"instance-ssh-keys": [f"alice:{expired}"],
                           "project-ssh-keys": [f"ops:{DEPLOY}"]})
    server = fake_server("gcp", instance=instance)
    agent_env["CL_METADATA_ENDPOINT"] = server.url
    result = run_agent("--provider", "gcp", "--ssh-keys", throwaway_user.pw_name, env=agent_env)
    assert result.returncode == 0, result.stderr
    with open(os.path.join(throwaway_user.pw_dir, ".ssh/authorized_keys.d/cl-metadata")) as f:
        assert f.read() == f"{DEPLOY}\n"
