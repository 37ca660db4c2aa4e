"""exoscale against the fake server: CloudStack's items under /1.0/meta-data/, nothing
404-tolerant, empty values kept, hostname and keys, and the real process end to end."""

import dataclasses

import pytest

from cl_metadata.outputs import envfile
from cl_metadata.errors import FetchError, InvalidMetadata
from cl_metadata.fakeserver.faults import Fault
from cl_metadata.fakeserver.instance import load_instance
from cl_metadata.providers.exoscale import ExoscaleProvider

from conftest import make_context, run_agent

SAMPLE = load_instance(None)
ALICE, DEPLOY = (key.key for key in SAMPLE.ssh_keys)
META = "/1.0/meta-data/"
ITEMS = ("instance-id", "local-hostname", "public-hostname", "availability-zone", "public-ipv4",
         "local-ipv4", "service-offering", "cloud-identifier", "vm-id")
COREOS_FILE = """\
COREOS_EXOSCALE_AVAILABILITY_ZONE=nova
COREOS_EXOSCALE_CLOUD_IDENTIFIER="CloudStack-{8f1c2d4e6a7b4c3d9e0f1a2b3c4d5e6f}"
COREOS_EXOSCALE_INSTANCE_ID=i-0a1b2c3d4e5f60718
COREOS_EXOSCALE_LOCAL_HOSTNAME=demo-1.example.internal
COREOS_EXOSCALE_LOCAL_IPV4=10.0.1.15
COREOS_EXOSCALE_PUBLIC_HOSTNAME=203.0.113.25
COREOS_EXOSCALE_PUBLIC_IPV4=203.0.113.25
COREOS_EXOSCALE_SERVICE_OFFERING=m1.small
COREOS_EXOSCALE_VM_ID=5d3f8c2a-9b14-4e6f-a0c7-2e81b4d9f063
"""


def provider(server, timeout=3):
    return ExoscaleProvider(make_context(server, timeout=timeout))


def paths(server):
    return [r["path"] for r in server.requests]


def test_attributes_both_prefixes_and_requests(fake_server):
    server = fake_server("exoscale")
    attributes = provider(server).attributes()
    assert len(attributes) == 9
    assert envfile.render(attributes, "COREOS")[0].decode() == COREOS_FILE
    assert envfile.render(attributes, "AFTERBURN")[0].decode() == COREOS_FILE.replace(
        "COREOS_", "AFTERBURN_")
    assert sorted(paths(server)) == sorted(META + item for item in ITEMS)


def test_hostname_and_keys(fake_server):
    server = fake_server("exoscale")
    p = provider(server)
    assert p.hostname() == "demo-1.example.internal"
    assert p.ssh_keys() == [ALICE, DEPLOY]
    assert paths(server) == [META + "local-hostname", META + "public-keys"]


@pytest.mark.parametrize("part, path", [("attributes", "public-ipv4"),
                                        ("hostname", "local-hostname"),
                                        ("ssh_keys", "public-keys")])
def test_404_is_an_error_everywhere(fake_server, part, path):
    server = fake_server("exoscale", faults=[Fault(META + path, "status", 404)])
    with pytest.raises(FetchError) as info:
        getattr(provider(server), part)()
    assert info.value.status == 404
    assert info.value.source == f"GET http://169.254.169.254{META}{path}"


def test_absent_public_ip_fails_the_run(fake_server):
    server = fake_server("exoscale", instance=dataclasses.replace(SAMPLE, public_ipv4=None))
    with pytest.raises(FetchError, match="404"):
        provider(server).attributes()


def test_empty_values(fake_server):
    server = fake_server("exoscale", faults=[Fault(META + "local-hostname", "empty"),
                                             Fault(META + "public-keys", "empty")])
    p = provider(server)
    assert p.attributes()["EXOSCALE_LOCAL_HOSTNAME"] == ""
    assert p.hostname() is None
    assert p.ssh_keys() == []


def test_transient_503_and_reset_are_retried(fake_server):
    server = fake_server("exoscale", faults=[Fault(META + "vm-id", "status", 503, count=2),
                                             Fault(META + "local-hostname", "reset", count=1)])
    p = provider(server)
    assert p.attributes()["EXOSCALE_VM_ID"] == "5d3f8c2a-9b14-4e6f-a0c7-2e81b4d9f063"
    assert p.hostname() == "demo-1.example.internal"


@pytest.mark.parametrize("fault", [Fault(META + "instance-id", "status", 503),
                                   Fault(META + "instance-id", "reset")])
def test_persistent_failure_is_an_error(fake_server, fault):
    server = fake_server("exoscale", faults=[fault])
    with pytest.raises(FetchError):
        provider(server, timeout=1.5).attributes()


def test_value_that_is_not_utf8_names_the_platform_url(fake_server):
    server = fake_server("exoscale", faults=[Fault(META + "vm-id", "malformed", b"\xff\xfe")])
    with pytest.raises(InvalidMetadata) as info:
        provider(server).attributes()
    assert info.value.source == "GET http://169.254.169.254/1.0/meta-data/vm-id"


def test_real_process(fake_server, agent_env, tmp_path):
    server = fake_server("exoscale")
    agent_env["CL_METADATA_ENDPOINT"] = server.url
    attributes, hostname = tmp_path / "attributes", tmp_path / "hostname"
    result = run_agent("--provider", "exoscale", "--attributes", attributes,
                       "--hostname", hostname, env=agent_env)
    assert result.returncode == 0, result.stderr
    assert attributes.read_text() == COREOS_FILE
    assert hostname.read_text() == "demo-1.example.internal\n"
    assert sorted(paths(server)) == sorted(META + item for item in ITEMS)  # hostname asked once
