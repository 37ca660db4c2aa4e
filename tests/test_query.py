"""``cl-metadata query`` and ``--instance-data FILE``: every provider, through the real process.

Each platform serves one machine (tests/fixtures/contract-instance.yaml) from the fake server
or a drive it wrote. ``query --json`` and the ``--instance-data`` file must be the same document,
valid against docs/instance-data.schema.json; its attributes must be what the attributes file
holds, its fingerprints what ``ssh-keygen -lf`` says of the served keys; no key, key comment
or user-data may appear; and the query must write nothing and send no check-in.
"""

from __future__ import annotations

import dataclasses
import json
import os
import stat
import subprocess
import sys

import pytest

from cl_metadata import registry
from cl_metadata.fakeserver.drive import write_tree
from cl_metadata.fakeserver.instance import load_instance
from cl_metadata.fakeserver.render import renderer_for
from cl_metadata.fakeserver.server import FakeServer, UnixFakeServer
from cl_metadata.fakeserver.standins import write_vmware_rpctool

from conftest import AGENT_LAUNCHER, DRIVE_PLATFORMS, REPO
from systemd_envfile import load_environment_file

CONTRACT = load_instance(os.path.join(REPO, "tests", "fixtures", "contract-instance.yaml"))
USER_DATA = "#cloud-config\nwrite_files: [{path: /etc/qxsecret, content: qxuserdatamarker}]\n"
MACHINE = dataclasses.replace(CONTRACT, user_data=USER_DATA)
SCHEMA_PATH = os.path.join(REPO, "docs", "instance-data.schema.json")
if not os.path.exists(SCHEMA_PATH) and not os.path.exists(os.path.join(REPO, ".git")):
    pytest.skip("docs/ is not in this tree (an sdist or a package build)", allow_module_level=True)
# the test extra has it (pyproject.toml); a distribution's package build may not
jsonschema = pytest.importorskip("jsonschema")
with open(SCHEMA_PATH, encoding="utf-8") as f:
    SCHEMA = json.load(f)
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA, format_checker=None)
KEY_BLOBS = [key.key.split()[1] for key in MACHINE.ssh_keys]
KEY_COMMENTS = [key.key.split()[2] for key in MACHINE.ssh_keys]



def schema_errors(doc):
    return [f"{'/'.join(map(str, error.absolute_path))}: {error.message}"
            for error in VALIDATOR.iter_errors(doc)]


class Platform:
    """One provider serving MACHINE: the fake server, or a drive / guestinfo it wrote."""

    def __init__(self, provider_id, env, tmp_path, machine=MACHINE):
        self.provider_id = provider_id
        self.env = dict(env)
        self.server = None
        leases = tmp_path / "dhcp/run/systemd/netif/leases"
        leases.mkdir(parents=True, exist_ok=True)
        (leases / "2").write_text("ADDRESS=10.20.30.40\nSERVER_ADDRESS=10.20.0.1\n")
        self.env["TEST_DHCP_ROOT"] = str(tmp_path / "dhcp")
        if provider_id == "vmware":
            write_tree(renderer_for(provider_id).drive_files(machine), tmp_path / "guestinfo")
            write_vmware_rpctool(tmp_path / "bin", tmp_path / "guestinfo")
            self.env["PATH"] = f"{tmp_path / 'bin'}:{self.env.get('PATH', os.defpath)}"
        elif provider_id in DRIVE_PLATFORMS:
            write_tree(renderer_for(provider_id).drive_files(machine), tmp_path / "drive")
            self.env["CL_METADATA_CONFIG_DRIVE"] = str(tmp_path / "drive")
        elif registry.get(provider_id).provider.source == "local socket":  # LXD/Incus
            self.server = UnixFakeServer(provider_id, machine,
                                         socket_path=tmp_path / f"{provider_id}.sock").start()
            self.env["CL_METADATA_LXD_SOCKET"] = self.server.socket_path
        elif provider_id != "vagrant-virtualbox":
            self.server = FakeServer(provider_id, machine).start()
            self.env["CL_METADATA_ENDPOINT"] = self.server.url

    def requests(self):
        return [(r["method"], r["path"]) for r in self.server.requests] if self.server else []

    def run(self, *args, cwd=None, env=None):
        return subprocess.run([sys.executable, "-c", AGENT_LAUNCHER, *map(str, args)],
                              env=env or self.env, cwd=cwd, capture_output=True, text=True,
                              timeout=120)

    def close(self):
        if self.server is not None:
            self.server.stop()


@pytest.fixture
def platform(agent_env, tmp_path):
    started = []

    def start(provider_id, machine=MACHINE):
        started.append(Platform(provider_id, agent_env, tmp_path, machine))
        return started[-1]

    yield start
    for each in started:
        each.close()


def ssh_keygen_prints(tmp_path):
    """(bits, fingerprint) of each of MACHINE's keys, as ``ssh-keygen -lf`` gives them."""
    keys = tmp_path / "served_keys"
    keys.write_text("".join(key.key + "\n" for key in MACHINE.ssh_keys))
    out = subprocess.run(["ssh-keygen", "-lf", str(keys)], capture_output=True, text=True,
                         check=True).stdout
    return [(int(line.split()[0]), line.split()[1]) for line in out.splitlines()]


def tree(path):
    return sorted(os.path.relpath(os.path.join(d, name), path)
                  for d, dirs, files in os.walk(path) for name in dirs + files)


@pytest.mark.parametrize("provider_id", sorted(registry.BUILTIN))
def test_query_and_instance_data(provider_id, platform, tmp_path):
    served = platform(provider_id)
    features = registry.get(provider_id).provider.features
    # the query, from an empty working directory with an empty home: nothing may appear
    scratch = tmp_path / "scratch"
    (scratch / "home").mkdir(parents=True)
    env = dict(served.env, HOME=str(scratch / "home"))
    result = served.run("query", "--provider", provider_id, "--json", cwd=scratch, env=env)
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    text = served.run("query", "--provider", provider_id, cwd=scratch, env=env)
    assert (text.returncode, text.stderr) == (0, ""), text.stderr
    assert tree(scratch) == ["home"]
    query_requests = served.requests()
    doc = json.loads(result.stdout)
    assert schema_errors(doc) == []
    assert doc["provider"] == provider_id and doc["schema_version"] == 1
    assert doc["features"] == sorted(features)
    assert doc["check_in"] == ("check-in" in features)
    assert doc["user_data"] is (True if "user-data" in features else None)
    # never a key or its comment (the key data is served; its fingerprint is what is shown)
    for shown in (result.stdout, text.stdout):
        assert [blob for blob in KEY_BLOBS if blob in shown] == []
        assert [comment for comment in KEY_COMMENTS if comment in shown] == []
        assert "qxuserdatamarker" not in shown and "qxsecret" not in shown
    if "ssh-keys" in features:
        prints = [(key["bits"], key["fingerprint"]) for key in doc["ssh_keys"]]
        expected = ssh_keygen_prints(tmp_path)
        if provider_id == "azurestack":  # it serves only the RSA key
            assert prints == [expected[1]]
        else:
            assert sorted(prints) == sorted(expected)
        assert [key["fingerprint"] in text.stdout for key in doc["ssh_keys"]] == [True] * len(prints)
    else:
        assert doc["ssh_keys"] == []

    # a run writing the attributes file (each prefix) and the instance-data file
    out = tmp_path / "out"
    out.mkdir()
    for prefix in ("COREOS", "AFTERBURN"):
        run = served.run("--provider", provider_id, "--attributes", out / prefix,
                         "--attributes-prefix", prefix, "--instance-data", out / "instance.json")
        assert run.returncode == 0, run.stderr
        written = load_environment_file((out / prefix).read_bytes())
        assert doc["attributes"][prefix] == written
        assert json.loads((out / "instance.json").read_text()) == doc
    assert stat.S_IMODE(os.stat(out / "instance.json").st_mode) == 0o644
    assert os.stat(out / "instance.json").st_uid == os.geteuid()
    if "attributes" in features and provider_id != "vmware":
        assert doc["attributes"]["COREOS"]  # the comparison above compared something
    if served.server is not None:
        # the query fetched what --instance-data fetches, and sent nothing but reads
        run_requests = served.requests()[len(query_requests):]
        assert set(query_requests) == set(run_requests[:len(run_requests) // 2])
        assert {method for method, _ in query_requests} <= {"GET", "PUT"}
        assert [path for method, path in query_requests
                if method == "PUT" and not path.endswith("/token")] == []


GOLDEN_TEXT = """\
provider   openstack-metadata (http)
features   attributes hostname network-units ssh-keys user-data
hostname   contract-1.example.net
user-data  present
check-in   not supported

attributes (COREOS)
  COREOS_OPENSTACK_HOSTNAME       contract-1.example.net
  COREOS_OPENSTACK_INSTANCE_ID    i-0c0ffee0c0ffee001
  COREOS_OPENSTACK_INSTANCE_TYPE  c1.medium
  COREOS_OPENSTACK_INSTANCE_UUID  0f1e2d3c-4b5a-4978-8a6b-5c4d3e2f1a00
  COREOS_OPENSTACK_IPV4_LOCAL     10.20.30.40
  COREOS_OPENSTACK_IPV4_PUBLIC    198.51.100.7

attributes (AFTERBURN)
  AFTERBURN_OPENSTACK_HOSTNAME       contract-1.example.net
  AFTERBURN_OPENSTACK_INSTANCE_ID    i-0c0ffee0c0ffee001
  AFTERBURN_OPENSTACK_INSTANCE_TYPE  c1.medium
  AFTERBURN_OPENSTACK_INSTANCE_UUID  0f1e2d3c-4b5a-4978-8a6b-5c4d3e2f1a00
  AFTERBURN_OPENSTACK_IPV4_LOCAL     10.20.30.40
  AFTERBURN_OPENSTACK_IPV4_PUBLIC    198.51.100.7

ssh keys
  ssh-ed25519  256   SHA256:LS52q4+RkN01PcFzX98xFm2ZAlFYJZHZhJtHLMGZc6s
  ssh-rsa      2048  SHA256:0OVOY31od2EoiiTL+jEDwAZBf271jE9ld3ORWcpkq/s

interfaces
  mac  02:00:0a:14:1e:28  address 2001:db8:77::7/64
                          route ::/0 via 2001:db8:77::1
                          dns 192.0.2.53
  mac  02:00:0a:14:1e:29  address 10.20.30.40/16
                          route 0.0.0.0/0 via 10.20.0.1
                          dns 192.0.2.53

netdevs
  (none)
"""


def test_query_text_is_stable_and_aligned(platform):
    served = platform("openstack-metadata")
    result = served.run("query", "--provider", "openstack-metadata")
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == GOLDEN_TEXT


def test_bad_metadata_is_one_line_exit_1_and_nothing_written(platform, tmp_path):
    bad = dataclasses.replace(MACHINE, hostname="contract_1!.example.net")  # not a host name
    served = platform("openstack-metadata", bad)
    instance_data = tmp_path / "instance.json"
    instance_data.write_text("earlier boot\n")
    for args in (["query", "--json"], ["query"], ["--instance-data", instance_data]):
        result = served.run(*args, "--provider", "openstack-metadata")
        assert result.returncode == 1
        assert result.stdout == ""
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith(
            "cl-metadata: error: openstack-metadata: hostname: not a valid host name"), lines
        assert "contract_1" not in result.stderr
    assert instance_data.read_text() == "earlier boot\n"


def test_an_unreadable_platform_fails_the_query_like_a_run(platform):
    served = platform("openstack-metadata")
    served.server.stop()  # nothing answers there any more
    result = served.run("query", "--provider", "openstack-metadata", "--timeout", "1")
    assert result.returncode == 1 and result.stdout == ""
    assert len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith("cl-metadata: error: openstack-metadata: GET http://")


def test_instance_data_output_path_is_checked_before_the_platform_is_asked(platform, tmp_path):
    served = platform("openstack-metadata")
    os.symlink(tmp_path / "elsewhere", tmp_path / "link")
    result = served.run("--provider", "openstack-metadata", "--instance-data", tmp_path / "link")
    assert result.returncode == 1 and "symbolic link" in result.stderr
    assert served.requests() == []
    assert not (tmp_path / "elsewhere").exists()


def test_instance_data_alone_fetches_every_part(platform, tmp_path):
    served = platform("openstack-metadata")
    result = served.run("--provider", "openstack-metadata", "--instance-data",
                        tmp_path / "instance.json")
    assert result.returncode == 0, result.stderr
    doc = json.loads((tmp_path / "instance.json").read_text())
    assert schema_errors(doc) == []
    assert doc["hostname"] == MACHINE.hostname and len(doc["ssh_keys"]) == 2
    assert {i["mac"] for i in doc["interfaces"]} == {n.mac for n in MACHINE.network_interfaces}


def test_query_flavor_reads_the_id_a_run_with_that_flavor_reads(platform):
    served = platform("aws")
    result = served.run("query", "--provider", "aws", "--attributes-flavor", "flatcar", "--json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["provider"] == "ec2"
    assert doc["attributes"]["COREOS"]["COREOS_EC2_INSTANCE_ID"] == MACHINE.instance_id


def test_query_without_a_metadata_service_prints_nothing(agent_env):
    from conftest import run_agent

    result = run_agent("query", "--provider", "metal", "--json", env=agent_env)
    assert (result.returncode, result.stdout) == (0, "")
    assert result.stderr == ("cl-metadata: notice: metal: this platform has no metadata "
                             "service; nothing to do\n")


def test_query_usage_errors_exit_2(agent_env):
    from conftest import run_agent

    for args in (["query"], ["query", "--provider", "aws", "--provider", "gcp"],
                 ["query", "--attributes", "/tmp/x", "--provider", "aws"]):
        result = run_agent(*args, env=agent_env)
        assert result.returncode == 2, args
        assert len(result.stderr.splitlines()) == 1


@pytest.mark.parametrize("key_type, size", [("rsa", 3072), ("ecdsa", 384), ("ecdsa", 521),
                                            ("ed25519", None)])
def test_fingerprint_and_size_match_ssh_keygen(key_type, size, tmp_path):
    from cl_metadata.outputs import fingerprints
    from cl_metadata.outputs.sshkeys import parse_key

    args = ["-b", str(size)] if size else []
    subprocess.run(["ssh-keygen", "-q", "-t", key_type, *args, "-N", "", "-C", "c",
                    "-f", str(tmp_path / "k")], check=True)
    bits, fingerprint = subprocess.run(["ssh-keygen", "-lf", str(tmp_path / "k.pub")],
                                       capture_output=True, text=True,
                                       check=True).stdout.split()[:2]
    key = parse_key((tmp_path / "k.pub").read_text())
    assert (fingerprints.bits(key), fingerprints.fingerprint(key)) == (int(bits), fingerprint)


def test_the_schema_refuses_what_the_document_must_not_hold():
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    good = {"schema_version": 1, "provider": "aws", "source": "http", "features": [],
            "attributes": {"COREOS": {}, "AFTERBURN": {}}, "ssh_keys": [], "hostname": None,
            "interfaces": [], "netdevs": [], "user_data": None, "check_in": False}
    assert schema_errors(good) == []
    key = {"type": "ssh-ed25519", "bits": 256, "fingerprint": "SHA256:" + "A" * 43}
    assert schema_errors(dict(good, ssh_keys=[key])) == []
    for bad in (dict(good, ssh_keys=[dict(key, key="AAAAC3Nza")]),  # a key: never
                dict(good, ssh_keys=[dict(key, comment="alice@workstation")]),
                dict(good, user_data="#cloud-config"),  # presence only
                dict(good, schema_version=2),
                {k: v for k, v in good.items() if k != "hostname"}):
        assert schema_errors(bad) != []


def test_a_dropped_attribute_is_left_out_under_both_prefixes_and_warned_about_once(platform,
                                                                                  tmp_path):
    hostile = dataclasses.replace(MACHINE, instance_type="c1.medium\x1b[2J")  # a control char
    served = platform("openstack-metadata", hostile)
    warning = ("cl-metadata: warning: attribute COREOS_OPENSTACK_INSTANCE_TYPE dropped: the "
               "value contains a control character\n")
    result = served.run("query", "--provider", "openstack-metadata", "--json")
    assert (result.returncode, result.stderr) == (0, warning)
    doc = json.loads(result.stdout)
    assert "COREOS_OPENSTACK_INSTANCE_ID" in doc["attributes"]["COREOS"]
    assert [name for names in doc["attributes"].values() for name in names
            if "INSTANCE_TYPE" in name] == []
    # with the attributes file too: its writer's warning, not a second one
    run = served.run("--provider", "openstack-metadata", "--attributes", tmp_path / "attributes",
                     "--instance-data", tmp_path / "instance.json")
    assert (run.returncode, run.stderr) == (0, warning)
    assert json.loads((tmp_path / "instance.json").read_text()) == doc


def test_no_user_data_is_false_and_a_platform_without_it_null(platform):
    served = platform("openstack-metadata", CONTRACT)  # no user-data
    result = served.run("query", "--provider", "openstack-metadata", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["user_data"] is False
    served = platform("vagrant-virtualbox")  # the machine itself: no user-data at all
    result = served.run("query", "--provider", "vagrant-virtualbox", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["user_data"] is None


def test_help_names_the_query_command(capsys):
    from cl_metadata import cli

    assert cli.main(["help", "query"], environ={}) == 0
    assert capsys.readouterr().out.startswith("usage: cl-metadata query (--provider ID|auto")
    assert cli.main(["help"], environ={}) == 0
    assert "\n  query [--json]  " in capsys.readouterr().out


def test_instance_data_to_standard_output_is_the_query_document(platform):
    served = platform("openstack-metadata")
    printed = served.run("--provider", "openstack-metadata", "--instance-data", "-")
    queried = served.run("query", "--provider", "openstack-metadata", "--json")
    assert printed.returncode == queried.returncode == 0
    assert printed.stdout == queried.stdout
