"""aliyun against the fake ECS metadata service: ten text items, key ids, de-duplication."""

import dataclasses

import pytest

from cl_metadata.outputs import envfile
from cl_metadata.errors import FetchError, InvalidMetadata
from cl_metadata.fakeserver.faults import Fault
from cl_metadata.fakeserver.instance import SshKey, load_instance
from cl_metadata.providers.aliyun import AliyunProvider

from conftest import make_context, run_agent

SAMPLE = load_instance(None)
ALICE, DEPLOY = (key.key for key in SAMPLE.ssh_keys)
INSTANCE = dataclasses.replace(
    SAMPLE, region="cn-hangzhou", availability_zone="cn-hangzhou-i",
    instance_type="ecs.g7.large", image_id="aliyun_3_x64_20G_alibase_20240528.vhd",
    platform_data={"aliyun": {"eipv4": "198.51.100.40", "vpc-id": "vpc-bp67acfmxazb4p"}})
META = "/latest/meta-data/"
PATHS = {"EIPV4": "eipv4", "HOSTNAME": "hostname", "IMAGE_ID": "image-id",
         "INSTANCE_ID": "instance-id", "INSTANCE_TYPE": "instance/instance-type",
         "IPV4_PRIVATE": "private-ipv4", "IPV4_PUBLIC": "public-ipv4", "REGION_ID": "region-id",
         "VPC_ID": "vpc-id", "ZONE_ID": "zone-id"}
EXPECTED = {"EIPV4": "198.51.100.40", "HOSTNAME": "demo-1.example.internal",
            "IMAGE_ID": "aliyun_3_x64_20G_alibase_20240528.vhd",
            "INSTANCE_ID": "i-0a1b2c3d4e5f60718", "INSTANCE_TYPE": "ecs.g7.large",
            "IPV4_PRIVATE": "10.0.1.15", "IPV4_PUBLIC": "203.0.113.25",
            "REGION_ID": "cn-hangzhou", "VPC_ID": "vpc-bp67acfmxazb4p", "ZONE_ID": "cn-hangzhou-i"}
INDEX = META + "public-keys/"


def provider(server, timeout=3):
    return AliyunProvider(make_context(server, timeout=timeout))


def server_with(fake_server, *faults, instance=INSTANCE):
    return fake_server("aliyun", instance=instance, faults=list(faults))


@pytest.mark.parametrize("prefix", ["COREOS", "AFTERBURN"])
def test_attribute_file(fake_server, prefix):
    server = server_with(fake_server)
    data, dropped = envfile.render(provider(server).attributes(), prefix)
    assert dropped == [] and data.decode() == "".join(
        f"{prefix}_ALIYUN_{name}={value}\n" for name, value in sorted(EXPECTED.items()))
    assert sorted(r["path"] for r in server.requests) == sorted(META + p for p in PATHS.values())


@pytest.mark.parametrize("name", sorted(PATHS))
def test_each_item_404_empty_and_transient(fake_server, name):
    path = META + PATHS[name]
    server = server_with(fake_server, Fault(path, "status", 404, count=1),
                         Fault(path, "empty", count=1), Fault(path, "status", 503, count=1),
                         Fault(path, "reset", count=1))
    expected = {f"ALIYUN_{n}": v for n, v in EXPECTED.items()}
    others = {n: v for n, v in expected.items() if n != f"ALIYUN_{name}"}
    assert provider(server).attributes() == others  # 404: absent
    assert provider(server).attributes() == others  # empty: absent too
    assert provider(server).attributes() == expected  # 503, reset, then the value


def test_no_elastic_ip_by_default(fake_server):
    server = server_with(fake_server, instance=SAMPLE)
    assert "ALIYUN_EIPV4" not in provider(server).attributes()


@pytest.mark.parametrize("kind, arg", [("status", 503), ("reset", None)])
def test_persistent_failure_is_an_error(fake_server, kind, arg):
    server = server_with(fake_server, Fault(META + "vpc-id", kind, arg))
    with pytest.raises(FetchError) as info:
        provider(server, timeout=1.5).attributes()
    assert info.value.source == f"GET http://100.100.100.200{META}vpc-id"


def test_hostname_matrix(fake_server):
    path = META + "hostname"
    server = server_with(fake_server, Fault(path, "status", 404, count=1),
                         Fault(path, "empty", count=1))
    assert [provider(server).hostname() for _ in range(3)] == [None, None,
                                                              "demo-1.example.internal"]
    with pytest.raises(FetchError):
        provider(server_with(fake_server, Fault(path, "status", 503)), timeout=1.5).hostname()


def test_keys_by_id_de_duplicated(fake_server):
    keys = SAMPLE.ssh_keys + (SshKey("alice-again", ALICE),)
    server = server_with(fake_server, instance=dataclasses.replace(INSTANCE, ssh_keys=keys))
    assert provider(server).ssh_keys() == [ALICE, DEPLOY]
    assert sorted(r["path"] for r in server.requests) == [INDEX] + [
        f"{INDEX}{i}/openssh-key" for i in range(3)]


@pytest.mark.parametrize("fault", [Fault(INDEX, "status", 404), Fault(INDEX, "empty")])
def test_no_key_listing_is_zero_keys(fake_server, fault):
    assert provider(server_with(fake_server, fault)).ssh_keys() == []


def test_a_listed_key_that_is_missing_is_an_error(fake_server):
    server = server_with(fake_server, Fault(INDEX, "malformed", "0/\ntest/\n"))
    with pytest.raises(FetchError) as info:
        provider(server).ssh_keys()
    assert info.value.status == 404 and info.value.source.endswith("public-keys/test/openssh-key")


@pytest.mark.parametrize("listing", ["0/\n../../user-data/\n", "0/\n/\n", "a b/\n"])
def test_key_ids_are_checked_before_use(fake_server, listing):
    server = server_with(fake_server, Fault(INDEX, "malformed", listing))
    with pytest.raises(InvalidMetadata) as info:
        provider(server).ssh_keys()
    assert info.value.source == "GET http://100.100.100.200/latest/meta-data/public-keys/"
    assert [r["path"] for r in server.requests] == [INDEX]


def test_key_fetch_failure_is_an_error(fake_server):
    server = server_with(fake_server, Fault(INDEX + "1/openssh-key", "status", 503))
    with pytest.raises(FetchError, match="503"):
        provider(server, timeout=1.5).ssh_keys()


def test_agent_writes_attributes_and_hostname(fake_server, agent_env, tmp_path):
    server = server_with(fake_server)
    agent_env["CL_METADATA_ENDPOINT"] = server.url
    attributes, hostname = tmp_path / "attributes", tmp_path / "hostname"
    result = run_agent("--provider", "aliyun", "--attributes", attributes, "--hostname", hostname,
                       "--attributes-prefix", "AFTERBURN", env=agent_env)
    assert result.returncode == 0, result.stderr
    assert attributes.read_text() == "".join(
        f"AFTERBURN_ALIYUN_{name}={value}\n" for name, value in sorted(EXPECTED.items()))
    assert hostname.read_text() == "demo-1.example.internal\n"
    assert len(server.requests) == 10
