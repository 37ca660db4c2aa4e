"""cloudstack-metadata against the fake server: the server comes from a DHCP lease (temp root),
every item may be absent, Go's CLOUDSTACK_HOSTNAME, keys, no hostname, no lease → clear error."""

import dataclasses
import subprocess
import sys

import pytest

from cl_metadata.sources import dhcp

from cl_metadata.outputs import envfile
from cl_metadata.errors import FetchError, InvalidMetadata, MetadataError
from cl_metadata.fakeserver.faults import Fault
from cl_metadata.fakeserver.instance import load_instance
from cl_metadata.providers.cloudstack_metadata import CloudStackMetadataProvider

from conftest import make_context

SAMPLE = load_instance(None)
ALICE, DEPLOY = (key.key for key in SAMPLE.ssh_keys)
META = "/latest/meta-data/"
ITEMS = ("instance-id", "local-hostname", "public-hostname", "availability-zone", "public-ipv4",
         "local-ipv4", "service-offering", "cloud-identifier", "vm-id")
EXPECTED = {
    "CLOUDSTACK_AVAILABILITY_ZONE": "nova",
    "CLOUDSTACK_CLOUD_IDENTIFIER": "CloudStack-{8f1c2d4e6a7b4c3d9e0f1a2b3c4d5e6f}",
    "CLOUDSTACK_HOSTNAME": "demo-1.example.internal",
    "CLOUDSTACK_INSTANCE_ID": "i-0a1b2c3d4e5f60718",
    "CLOUDSTACK_IPV4_LOCAL": "10.0.1.15",
    "CLOUDSTACK_IPV4_PUBLIC": "203.0.113.25",
    "CLOUDSTACK_LOCAL_HOSTNAME": "demo-1.example.internal",
    "CLOUDSTACK_PUBLIC_HOSTNAME": "203.0.113.25",
    "CLOUDSTACK_SERVICE_OFFERING": "m1.small",
    "CLOUDSTACK_VM_ID": "5d3f8c2a-9b14-4e6f-a0c7-2e81b4d9f063",
}
PRELUDE = ("import os, cl_metadata.sources.dhcp as d; d.ROOT = os.environ['TEST_DHCP_ROOT']; "
           "from cl_metadata.cli import run; run()")


def lease_root(base, text="ADDRESS=10.1.1.20\nSERVER_ADDRESS=10.1.1.1\n"):
    leases = base / "run/systemd/netif/leases"
    leases.mkdir(parents=True, exist_ok=True)
    (leases / "2").write_text(text)
    return base


@pytest.fixture(autouse=True)
def dhcp_lease(tmp_path, monkeypatch):
    monkeypatch.setattr(dhcp, "ROOT", str(lease_root(tmp_path / "root")))


def provider(server, timeout=3):
    return CloudStackMetadataProvider(make_context(server, timeout=timeout))


def paths(server):
    return [r["path"] for r in server.requests]


COREOS_FILE = """\
COREOS_CLOUDSTACK_AVAILABILITY_ZONE=nova
COREOS_CLOUDSTACK_CLOUD_IDENTIFIER="CloudStack-{8f1c2d4e6a7b4c3d9e0f1a2b3c4d5e6f}"
COREOS_CLOUDSTACK_HOSTNAME=demo-1.example.internal
COREOS_CLOUDSTACK_INSTANCE_ID=i-0a1b2c3d4e5f60718
COREOS_CLOUDSTACK_IPV4_LOCAL=10.0.1.15
COREOS_CLOUDSTACK_IPV4_PUBLIC=203.0.113.25
COREOS_CLOUDSTACK_LOCAL_HOSTNAME=demo-1.example.internal
COREOS_CLOUDSTACK_PUBLIC_HOSTNAME=203.0.113.25
COREOS_CLOUDSTACK_SERVICE_OFFERING=m1.small
COREOS_CLOUDSTACK_VM_ID=5d3f8c2a-9b14-4e6f-a0c7-2e81b4d9f063
"""


def test_attributes_both_prefixes_and_requests(fake_server):
    server = fake_server("cloudstack-metadata")
    attributes = provider(server).attributes()
    assert attributes == EXPECTED
    assert envfile.render(attributes, "COREOS")[0].decode() == COREOS_FILE
    assert envfile.render(attributes, "AFTERBURN")[0].decode() == COREOS_FILE.replace(
        "COREOS_", "AFTERBURN_")
    assert sorted(paths(server)) == sorted(META + item for item in ITEMS)  # local-hostname once


def test_the_server_is_the_dhcp_server_identifier(fake_server):
    server = fake_server("cloudstack-metadata",
                         faults=[Fault(META + "vm-id", "malformed", b"\xff")])
    with pytest.raises(InvalidMetadata) as info:
        provider(server).attributes()
    assert info.value.source == "GET http://10.1.1.1/latest/meta-data/vm-id"


def test_server_from_a_dhclient_lease(fake_server, tmp_path, monkeypatch):
    leases = tmp_path / "other/var/lib/dhcp"
    leases.mkdir(parents=True)
    (leases / "dhclient.eth0.leases").write_text(
        'lease {\n  interface "eth0";\n  option dhcp-server-identifier 10.2.2.2;\n}\n')
    monkeypatch.setattr(dhcp, "ROOT", str(tmp_path / "other"))
    server = fake_server("cloudstack-metadata", faults=[Fault(META + "public-keys", "malformed",
                                                              b"\xff")])
    with pytest.raises(InvalidMetadata) as info:
        provider(server).ssh_keys()
    assert info.value.source == "GET http://10.2.2.2/latest/meta-data/public-keys"


def test_no_lease_is_a_clear_error_and_nothing_is_asked(fake_server, tmp_path, monkeypatch):
    monkeypatch.setattr(dhcp, "ROOT", str(tmp_path / "no-dhcp-client"))
    server = fake_server("cloudstack-metadata")
    for part in ("attributes", "ssh_keys"):
        with pytest.raises(MetadataError, match="no DHCP lease names a server identifier") as info:
            getattr(provider(server), part)()
        assert info.value.source == "DHCP leases"
    assert server.requests == []


def test_everything_absent_is_no_attributes_and_no_keys(fake_server):
    server = fake_server("cloudstack-metadata", faults=[Fault("*", "status", 404)])
    p = provider(server)
    assert p.attributes() == {}
    assert p.ssh_keys() == []


def test_no_public_ip_leaves_those_names_out(fake_server):
    server = fake_server("cloudstack-metadata",
                         instance=dataclasses.replace(SAMPLE, public_ipv4=None))
    attributes = provider(server).attributes()
    assert "CLOUDSTACK_IPV4_PUBLIC" not in attributes
    assert "CLOUDSTACK_PUBLIC_HOSTNAME" not in attributes
    assert len(attributes) == 8


def test_empty_values_are_written_empty(fake_server):
    server = fake_server("cloudstack-metadata", faults=[Fault(META + "local-hostname", "empty")])
    attributes = provider(server).attributes()
    assert attributes["CLOUDSTACK_LOCAL_HOSTNAME"] == attributes["CLOUDSTACK_HOSTNAME"] == ""
    assert b"COREOS_CLOUDSTACK_HOSTNAME=\n" in envfile.render(attributes, "COREOS")[0]


def test_keys(fake_server):
    server = fake_server("cloudstack-metadata")
    assert provider(server).ssh_keys() == [ALICE, DEPLOY]
    assert paths(server) == [META + "public-keys"]


@pytest.mark.parametrize("fault", [Fault(META + "public-keys", "empty"),
                                   Fault(META + "public-keys", "status", 404)])
def test_no_keys(fake_server, fault):
    server = fake_server("cloudstack-metadata", faults=[fault])
    assert provider(server).ssh_keys() == []


def test_no_hostname_output(fake_server):
    server = fake_server("cloudstack-metadata")
    p = provider(server)
    assert "hostname" not in p.features
    assert p.hostname() is None and server.requests == []


def test_transient_503_and_reset_are_retried(fake_server):
    server = fake_server("cloudstack-metadata", faults=[
        Fault(META + "instance-id", "status", 503, count=2),
        Fault(META + "public-keys", "reset", count=1)])
    p = provider(server)
    assert p.attributes()["CLOUDSTACK_INSTANCE_ID"] == "i-0a1b2c3d4e5f60718"
    assert p.ssh_keys() == [ALICE, DEPLOY]
    assert paths(server).count(META + "instance-id") == 3


@pytest.mark.parametrize("fault", [Fault(META + "vm-id", "status", 503),
                                   Fault(META + "vm-id", "reset")])
def test_persistent_failure_is_an_error(fake_server, fault):
    server = fake_server("cloudstack-metadata", faults=[fault])
    with pytest.raises(FetchError):
        provider(server, timeout=1.5).attributes()


def run_agent_with_leases(root, *args, env):
    env = dict(env, TEST_DHCP_ROOT=str(root))
    return subprocess.run([sys.executable, "-c", PRELUDE, *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=60)


def test_real_process(fake_server, agent_env, tmp_path):
    server = fake_server("cloudstack-metadata")
    agent_env["CL_METADATA_ENDPOINT"] = server.url
    attributes = tmp_path / "attributes"
    result = run_agent_with_leases(tmp_path / "root", "--provider", "cloudstack-metadata",
                                   "--attributes", attributes, "--attributes-prefix", "AFTERBURN",
                                   env=agent_env)
    assert result.returncode == 0, result.stderr
    assert attributes.read_text() == COREOS_FILE.replace("COREOS_", "AFTERBURN_")

    result = run_agent_with_leases(tmp_path / "no-dhcp", "--provider", "cloudstack-metadata",
                                   "--attributes", tmp_path / "other", env=agent_env)
    assert result.returncode == 1
    assert "cloudstack-metadata: DHCP leases: no DHCP lease names a server identifier" \
        in result.stderr
    assert not (tmp_path / "other").exists()
