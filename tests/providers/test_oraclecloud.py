"""oraclecloud against the fake IMDS v2: one document, a bearer header, strict key types."""

import dataclasses
import json

import pytest

from cl_metadata.outputs import envfile
from cl_metadata.errors import FetchError, InvalidMetadata
from cl_metadata.fakeserver.faults import Fault
from cl_metadata.fakeserver.instance import load_instance
from cl_metadata.providers.oraclecloud import OracleCloudProvider

from conftest import make_context, run_agent

SAMPLE = load_instance(None)
ALICE, DEPLOY = (key.key for key in SAMPLE.ssh_keys)
PATH = "/opc/v2/instance"
SOURCE = "GET http://169.254.169.254/opc/v2/instance"
EXPECTED = (
    "{p}_ORACLECLOUD_AVAILABILITY_DOMAIN=Uocm:PHX-AD-1\n"
    "{p}_ORACLECLOUD_COMPARTMENT_ID=ocid1.compartment.oc1..aaaaaaaafakecompartment\n"
    "{p}_ORACLECLOUD_FAULT_DOMAIN=FAULT-DOMAIN-1\n"
    "{p}_ORACLECLOUD_HOSTNAME=demo-1.example.internal\n"
    "{p}_ORACLECLOUD_INSTANCE_ID=i-0a1b2c3d4e5f60718\n"
    "{p}_ORACLECLOUD_INSTANCE_SHAPE=m1.small\n"
    "{p}_ORACLECLOUD_REGION_ID=RegionOne\n"
)


def provider(server, timeout=3):
    return OracleCloudProvider(make_context(server, timeout=timeout))


def with_metadata(**metadata):
    return dataclasses.replace(SAMPLE, platform_data={"oraclecloud": {"metadata": metadata}})


def document(**changes):
    doc = {"id": "ocid1.instance.oc1.phx.abc", "hostname": "web-1", "shape": "VM.Standard.E4.Flex"}
    doc.update(changes)
    return json.dumps(doc)


@pytest.mark.parametrize("prefix", ["COREOS", "AFTERBURN"])
def test_attribute_file(fake_server, prefix):
    data, dropped = envfile.render(provider(fake_server("oraclecloud")).attributes(), prefix)
    assert dropped == [] and data.decode() == EXPECTED.format(p=prefix)


def test_every_output_reads_one_document_with_the_bearer_header(fake_server):
    server = fake_server("oraclecloud")
    p = provider(server)
    assert p.hostname() == "demo-1.example.internal"
    assert p.ssh_keys() == [ALICE, DEPLOY]
    p.attributes()
    assert [(r["method"], r["path"]) for r in server.requests] == [("GET", PATH)]
    assert server.requests[0]["headers"]["Authorization"] == "Bearer Oracle"


def test_the_server_refuses_a_request_without_the_bearer_header(fake_server):
    server = fake_server("oraclecloud")
    with pytest.raises(FetchError) as info:
        make_context(server, timeout=1).http.get("http://169.254.169.254" + PATH)
    assert info.value.status == 403


@pytest.mark.parametrize("kind, arg", [("status", 404), ("status", 503), ("reset", None)])
def test_document_failures_are_errors(fake_server, kind, arg):
    server = fake_server("oraclecloud", faults=[Fault(PATH, kind, arg)])
    with pytest.raises(FetchError) as info:
        provider(server, timeout=1.5).attributes()
    assert info.value.source == SOURCE


def test_transient_failures_are_retried(fake_server):
    server = fake_server("oraclecloud", faults=[Fault(PATH, "status", 503, count=1),
                                                Fault(PATH, "reset", count=1)])
    assert provider(server).hostname() == "demo-1.example.internal"
    assert [r["status"] for r in server.requests] == [503, None, 200]


@pytest.mark.parametrize("fault, cause", [
    (Fault(PATH, "empty"), "invalid JSON"), (Fault(PATH, "malformed", "[]"), "a JSON object"),
    (Fault(PATH, "malformed", document(shape=["x"])), "'shape'")])
def test_malformed_documents(fake_server, fault, cause):
    server = fake_server("oraclecloud", faults=[fault])
    with pytest.raises(InvalidMetadata) as info:
        provider(server).attributes()
    assert info.value.source == SOURCE and cause in info.value.cause


def test_missing_fields_are_absent_and_empty_ones_written_empty(fake_server):
    server = fake_server("oraclecloud", faults=[Fault(PATH, "malformed", document(hostname=""))])
    p = provider(server)
    assert p.attributes() == {"ORACLECLOUD_HOSTNAME": "", "ORACLECLOUD_INSTANCE_ID":
                              "ocid1.instance.oc1.phx.abc",
                              "ORACLECLOUD_INSTANCE_SHAPE": "VM.Standard.E4.Flex"}
    assert p.hostname() is None and p.ssh_keys() == []


def test_keys_absent_or_null_are_zero_keys(fake_server):
    assert provider(fake_server("oraclecloud", instance=dataclasses.replace(
        SAMPLE, ssh_keys=()))).ssh_keys() == []
    server = fake_server("oraclecloud", instance=with_metadata(ssh_authorized_keys=None))
    assert provider(server).ssh_keys() == []


def test_nested_instance_pool_metadata_is_ignored(fake_server):
    instance = with_metadata(**{"oci:pool": {"id": "ocid1.instancepool.x", "size": 3},
                                "tags": ["a", "b"]})
    assert provider(fake_server("oraclecloud", instance=instance)).ssh_keys() == [ALICE, DEPLOY]


@pytest.mark.parametrize("value, kind", [({"k": ALICE}, "an object"), ([ALICE], "a list"),
                                         (7, "a number"), (True, "a boolean")])
def test_keys_of_another_type_are_an_error_naming_the_type(fake_server, value, kind):
    server = fake_server("oraclecloud", instance=with_metadata(ssh_authorized_keys=value))
    with pytest.raises(InvalidMetadata) as info:
        provider(server).ssh_keys()
    assert info.value.cause == ("field 'metadata.ssh_authorized_keys': expected a string, "
                                f"got {kind}")
    assert "AAAA" not in str(info.value)


def test_metadata_that_is_not_an_object(fake_server):
    server = fake_server("oraclecloud", faults=[Fault(PATH, "malformed", document(metadata="x"))])
    with pytest.raises(InvalidMetadata, match="'metadata': expected an object"):
        provider(server).ssh_keys()


def test_agent_writes_attributes_and_hostname(fake_server, agent_env, tmp_path):
    server = fake_server("oraclecloud")
    agent_env["CL_METADATA_ENDPOINT"] = server.url
    attributes, hostname = tmp_path / "attributes", tmp_path / "hostname"
    result = run_agent("--provider", "oraclecloud", "--attributes", attributes, "--hostname",
                       hostname, "--attributes-prefix", "AFTERBURN", env=agent_env)
    assert result.returncode == 0, result.stderr
    assert attributes.read_text() == EXPECTED.format(p="AFTERBURN")
    assert hostname.read_text() == "demo-1.example.internal\n"
    assert len(server.requests) == 1
