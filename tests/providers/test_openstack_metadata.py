"""openstack-metadata against the fake server: the endpoint matrix of docs/protocols.md"""

import dataclasses

import pytest

from cl_metadata.errors import FetchError, InvalidMetadata
from cl_metadata.fakeserver.faults import Fault
from cl_metadata.fakeserver.instance import load_instance
from cl_metadata.providers.openstack_metadata import OpenStackMetadataProvider

from conftest import make_context

SAMPLE = load_instance(None)
ALICE, DEPLOY = (key.key for key in SAMPLE.ssh_keys)
META = "/latest/meta-data/"
DOCUMENT = "/openstack/2012-08-10/meta_data.json"
ATTRIBUTE_PATHS = {META + p for p in
                   ("hostname", "instance-id", "instance-type", "local-ipv4", "public-ipv4")}


def provider(server, timeout=3, **http):
    return OpenStackMetadataProvider(make_context(server, timeout=timeout, **http))


def paths(server):
    return [r["path"] for r in server.requests]


def test_attributes(fake_server):
    server = fake_server("openstack-metadata")
    assert provider(server).attributes() == {
        "OPENSTACK_HOSTNAME": "demo-1.example.internal",
        "OPENSTACK_INSTANCE_ID": "i-0a1b2c3d4e5f60718",
        "OPENSTACK_INSTANCE_TYPE": "m1.small",
        "OPENSTACK_INSTANCE_UUID": "5d3f8c2a-9b14-4e6f-a0c7-2e81b4d9f063",
        "OPENSTACK_IPV4_LOCAL": "10.0.1.15",
        "OPENSTACK_IPV4_PUBLIC": "203.0.113.25",
    }
    # exactly the attribute items, each once, and nothing for keys or user-data
    assert sorted(paths(server)) == sorted(ATTRIBUTE_PATHS | {DOCUMENT})


def test_no_floating_ip_is_not_an_error(fake_server):
    server = fake_server("openstack-metadata",
                         instance=dataclasses.replace(SAMPLE, public_ipv4=None))
    attributes = provider(server).attributes()
    assert "OPENSTACK_IPV4_PUBLIC" not in attributes
    assert attributes["OPENSTACK_IPV4_LOCAL"] == "10.0.1.15"


def test_everything_absent_gives_nothing_and_succeeds(fake_server):
    server = fake_server("openstack-metadata", faults=[Fault("*", "status", 404)])
    p = provider(server)
    assert p.attributes() == {}
    assert p.ssh_keys() == []
    assert p.hostname() is None


def test_empty_value_is_kept_as_empty(fake_server):
    server = fake_server("openstack-metadata", faults=[Fault(META + "instance-type", "empty")])
    p = provider(server)
    assert p.attributes()["OPENSTACK_INSTANCE_TYPE"] == ""


def test_empty_hostname_is_no_hostname(fake_server):
    server = fake_server("openstack-metadata", faults=[Fault(META + "hostname", "empty")])
    assert provider(server).hostname() is None


def test_hostname(fake_server):
    server = fake_server("openstack-metadata")
    assert provider(server).hostname() == "demo-1.example.internal"
    assert paths(server) == [META + "hostname"]


def test_ssh_keys_in_index_order(fake_server):
    server = fake_server("openstack-metadata")
    assert provider(server).ssh_keys() == [ALICE, DEPLOY]
    assert sorted(paths(server)) == [META + "public-keys", META + "public-keys/0/openssh-key",
                                     META + "public-keys/1/openssh-key"]


def test_no_keys_configured_is_zero_keys(fake_server):
    server = fake_server("openstack-metadata", instance=dataclasses.replace(SAMPLE, ssh_keys=()))
    assert provider(server).ssh_keys() == []


def test_transient_503_and_reset_are_retried(fake_server):
    server = fake_server("openstack-metadata", faults=[
        Fault(META + "instance-id", "status", 503, count=2),
        Fault(META + "local-ipv4", "reset", count=1)])
    attributes = provider(server).attributes()
    assert attributes["OPENSTACK_INSTANCE_ID"] == "i-0a1b2c3d4e5f60718"
    assert attributes["OPENSTACK_IPV4_LOCAL"] == "10.0.1.15"
    assert paths(server).count(META + "instance-id") == 3


def test_persistent_503_fails_naming_the_url(fake_server):
    server = fake_server("openstack-metadata", faults=[Fault(META + "instance-id", "status", 503)])
    with pytest.raises(FetchError) as info:
        provider(server).attributes()
    assert info.value.source == f"GET http://169.254.169.254{META}instance-id"
    assert "503" in info.value.cause


def test_malformed_openstack_document(fake_server):
    server = fake_server("openstack-metadata", faults=[Fault(DOCUMENT, "malformed", '{"uuid": ')])
    with pytest.raises(InvalidMetadata) as info:
        provider(server).attributes()
    # parse errors name the platform's URL (the override only redirects the request)
    assert info.value.source == f"GET http://169.254.169.254{DOCUMENT}"
    assert "invalid JSON" in info.value.cause


def test_malformed_key_index(fake_server):
    server = fake_server("openstack-metadata", faults=[Fault(META + "public-keys", "malformed")])
    with pytest.raises(InvalidMetadata) as info:
        provider(server).ssh_keys()
    assert info.value.source == f"GET http://169.254.169.254{META}public-keys"


def test_oversized_value_is_refused(fake_server):
    server = fake_server("openstack-metadata",
                         faults=[Fault(META + "hostname", "oversize", 2 << 20)])
    with pytest.raises(FetchError, match="exceeds"):
        provider(server).hostname()


def test_redirect_to_another_origin_is_refused(fake_server):
    other = fake_server("openstack-metadata")
    server = fake_server("openstack-metadata",
                         faults=[Fault(META + "hostname", "redirect", other.url + META + "hostname")])
    with pytest.raises(FetchError, match="another origin"):
        provider(server).hostname()
    assert other.requests == []


@pytest.mark.parametrize("workers, expected", [(8, 6), (1, 1)])
def test_requests_of_a_part_overlap_at_the_server(fake_server, workers, expected):
    # each answer is held 0.3 s so that concurrent requests meet at the server
    server = fake_server("openstack-metadata", latency=0.3)
    provider(server, timeout=20, max_workers=workers).attributes()
    assert len(server.requests) == 6
    assert server.max_in_flight == expected
