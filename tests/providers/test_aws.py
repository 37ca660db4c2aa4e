"""aws and ec2 against the fake IMDS: IMDSv2 token handling and the endpoint matrix."""

import dataclasses
import logging
import os

import pytest

from cl_metadata.outputs import envfile
from cl_metadata.errors import FetchError, InvalidMetadata
from cl_metadata.fakeserver.faults import Fault
from cl_metadata.fakeserver.instance import load_instance
from cl_metadata.providers.aws import AwsProvider, Ec2Provider

from conftest import make_context, needs_root, run_agent

SAMPLE = load_instance(None)
ALICE, DEPLOY = (key.key for key in SAMPLE.ssh_keys)
INSTANCE = dataclasses.replace(
    SAMPLE, region="eu-west-1", availability_zone="eu-west-1b", instance_type="t3.micro",
    hostname="ip-10-0-1-15.eu-west-1.compute.internal",
    platform_data={"aws": {"availability-zone-id": "euw1-az2"}})
TOKEN = "/latest/api/token"
DATA = "/2021-01-03/"
META = DATA + "meta-data/"
DOCUMENT = DATA + "dynamic/instance-identity/document"
TOKEN_HEADER = "X-aws-ec2-metadata-token"

EXPECTED = {  # suffix -> value, for both stems
    "AVAILABILITY_ZONE": "eu-west-1b",
    "AVAILABILITY_ZONE_ID": "euw1-az2",
    "HOSTNAME": "ip-10-0-1-15.eu-west-1.compute.internal",
    "INSTANCE_ID": "i-0a1b2c3d4e5f60718",
    "INSTANCE_TYPE": "t3.micro",
    "IPV4_LOCAL": "10.0.1.15",
    "IPV4_PUBLIC": "203.0.113.25",
    "IPV6": "2001:db8:1:2::15",
    "PUBLIC_HOSTNAME": "ec2-203-0-113-25.compute-1.amazonaws.com",
    "REGION": "eu-west-1",
}
ATTRIBUTE_PATHS = {
    "INSTANCE_ID": META + "instance-id", "INSTANCE_TYPE": META + "instance-type",
    "IPV4_LOCAL": META + "local-ipv4", "IPV4_PUBLIC": META + "public-ipv4",
    "IPV6": META + "ipv6", "AVAILABILITY_ZONE": META + "placement/availability-zone",
    "AVAILABILITY_ZONE_ID": META + "placement/availability-zone-id",
    "HOSTNAME": META + "hostname", "PUBLIC_HOSTNAME": META + "public-hostname",
    "REGION": DOCUMENT,
}


def server_for(fake_server, instance=INSTANCE, platform="aws", **kwargs):
    return fake_server(platform, instance=instance, **kwargs)


def provider(server, cls=AwsProvider, timeout=3, **http):
    return cls(make_context(server, timeout=timeout, **http))


def of(server, method):
    return [r for r in server.requests if r["method"] == method]


def envfile_text(attributes, prefix):
    data, dropped = envfile.render(attributes, prefix)
    assert dropped == []
    return data.decode()


# -- attributes, both ids, both prefixes -------------------------------------------------------

@pytest.mark.parametrize("cls, stem", [(AwsProvider, "AWS"), (Ec2Provider, "EC2")])
@pytest.mark.parametrize("prefix", ["COREOS", "AFTERBURN"])
def test_attribute_files(fake_server, cls, stem, prefix):
    server = server_for(fake_server, platform=cls.id)
    attributes = provider(server, cls).attributes()
    assert envfile_text(attributes, prefix) == "".join(
        f"{prefix}_{stem}_{suffix}={value}\n" for suffix, value in sorted(EXPECTED.items()))


def test_attributes_cost_one_token_and_one_get_per_item(fake_server):
    server = server_for(fake_server)
    provider(server).attributes()
    put, *gets = server.requests
    assert (put["method"], put["path"]) == ("PUT", TOKEN)
    assert put["headers"]["X-aws-ec2-metadata-token-ttl-seconds"] == "300"
    assert sorted(r["path"] for r in gets) == sorted(ATTRIBUTE_PATHS.values())
    assert {r["method"] for r in gets} == {"GET"} and {r["status"] for r in gets} == {200}


def test_attribute_items_cost_one_round_trip_after_the_token(fake_server):
    server = server_for(fake_server, latency=0.2)  # answers held so that requests meet
    provider(server, timeout=20, max_workers=16).attributes()
    assert server.max_in_flight == 10
    assert server.requests[0]["in_flight"] == 1  # the PUT went alone, before the GETs


def test_every_get_of_every_part_carries_the_one_token(fake_server):
    server = server_for(fake_server)
    p = provider(server)
    p.attributes(), p.hostname(), p.ssh_keys()
    assert len(of(server, "PUT")) == 1
    gets = of(server, "GET")
    assert len(gets) == 13  # 10 attribute items (hostname shared) + index + 2 keys
    assert len({r["headers"].get(TOKEN_HEADER) for r in gets}) == 1
    assert None not in {r["headers"].get(TOKEN_HEADER) for r in gets}
    assert {r["status"] for r in gets} == {200}  # the server knew the token


def test_the_token_is_never_logged(fake_server, caplog):
    caplog.set_level(logging.DEBUG, logger="cl_metadata")
    server = server_for(fake_server, faults=[Fault(META + "instance-id", "status", 401, count=1)])
    provider(server).attributes()
    tokens = {r["headers"][TOKEN_HEADER] for r in of(server, "GET")}
    assert len(tokens) == 2 and caplog.records
    assert not any(token in caplog.text for token in tokens)


# -- the token protocol ------------------------------------------------------------------------

def test_put_403_means_imds_disabled_and_fails_at_once(fake_server):
    server = server_for(fake_server, faults=[Fault(TOKEN, "status", 403)])
    p = provider(server)
    with pytest.raises(FetchError) as info:
        p.attributes()
    assert info.value.status == 403 and "disabled" in str(info.value)
    with pytest.raises(FetchError):  # another part does not ask again
        p.hostname()
    assert [(r["method"], r["path"]) for r in server.requests] == [("PUT", TOKEN)]


@pytest.mark.parametrize("status", [400, 401])
def test_other_4xx_on_the_put_is_fatal(fake_server, status):
    server = server_for(fake_server, faults=[Fault(TOKEN, "status", status)])
    with pytest.raises(FetchError) as info:
        provider(server).hostname()
    assert info.value.status == status
    assert [r["method"] for r in server.requests] == ["PUT"]


def test_imdsv1_only_service_without_token_endpoint(fake_server, caplog):
    instance = dataclasses.replace(INSTANCE, platform_data={"aws": {"token-endpoint": False}})
    server = server_for(fake_server, instance=instance)
    assert provider(server).hostname() == EXPECTED["HOSTNAME"]
    put, get = server.requests
    assert (put["method"], put["status"]) == ("PUT", 404)
    assert TOKEN_HEADER not in get["headers"] and get["status"] == 200
    assert "no IMDSv2 token endpoint; using IMDSv1" in caplog.text


def test_put_405_also_falls_back(fake_server):
    instance = dataclasses.replace(INSTANCE, platform_data={"aws": {"imdsv1": True}})
    server = server_for(fake_server, instance=instance, faults=[Fault(TOKEN, "status", 405)])
    assert provider(server).attributes()["AWS_REGION"] == "eu-west-1"
    assert all(TOKEN_HEADER not in r["headers"] for r in of(server, "GET"))


def test_transient_put_failures_are_retried(fake_server):
    server = server_for(fake_server, faults=[Fault(TOKEN, "status", 503, count=1),
                                             Fault(TOKEN, "reset", count=1)])
    assert provider(server).hostname() == EXPECTED["HOSTNAME"]
    assert len(of(server, "PUT")) == 3
    assert of(server, "GET")[0]["headers"][TOKEN_HEADER]


def test_put_failing_until_the_deadline_never_downgrades(fake_server):
    server = server_for(fake_server, faults=[Fault(TOKEN, "status", 503)])
    with pytest.raises(FetchError, match="503"):
        provider(server, timeout=1.5).hostname()
    assert of(server, "GET") == []


@pytest.mark.parametrize("body", ["", "two words", "line\nbreak"])
def test_unusable_token_is_refused_without_echoing_it(fake_server, body):
    server = server_for(fake_server, faults=[Fault(TOKEN, "malformed", body)])
    with pytest.raises(InvalidMetadata) as info:
        provider(server).hostname()
    assert info.value.source == "PUT http://169.254.169.254/latest/api/token"
    assert body.strip() == "" or body not in str(info.value)
    assert of(server, "GET") == []


def test_401_with_a_cached_token_renews_it_once(fake_server):
    server = server_for(fake_server, faults=[Fault(META + "instance-id", "status", 401, count=1)])
    attributes = provider(server).attributes()
    assert attributes["AWS_INSTANCE_ID"] == EXPECTED["INSTANCE_ID"]
    assert len(of(server, "PUT")) == 2
    refused = [r for r in server.requests if r["status"] == 401]
    assert len(refused) == 1
    stale = refused[0]["headers"][TOKEN_HEADER]
    fresh = [r for r in of(server, "GET") if r["headers"][TOKEN_HEADER] != stale]
    assert sorted(r["path"] for r in fresh) == sorted(ATTRIBUTE_PATHS.values())
    assert {r["status"] for r in fresh} == {200}


def test_a_second_401_is_fatal(fake_server):
    server = server_for(fake_server, faults=[Fault(META + "hostname", "status", 401, count=2)])
    with pytest.raises(FetchError) as info:
        provider(server).hostname()
    assert info.value.status == 401 and "fresh IMDSv2 token" in info.value.cause
    assert len(of(server, "PUT")) == 2 and len(of(server, "GET")) == 2


def test_the_server_refuses_what_the_provider_never_sends(fake_server):
    server = server_for(fake_server)
    http = make_context(server, timeout=1).http
    with pytest.raises(FetchError) as info:
        http.get("http://169.254.169.254" + META + "instance-id")
    assert info.value.status == 401
    with pytest.raises(FetchError) as info:
        http.request("PUT", "http://169.254.169.254" + TOKEN)
    assert info.value.status == 400
    with pytest.raises(FetchError) as info:
        http.get("http://169.254.169.254" + META + "hostname", headers={TOKEN_HEADER: "forged"})
    assert info.value.status == 401


# -- the endpoint matrix -----------------------------------------------------------------------

def test_every_attribute_item_404_empty_and_transient(fake_server):
    # one server, answers queued per path: 404, then empty, then a 503 and a reset before the
    # value; the identity document skips "empty" (an empty document is malformed, see below)
    faults = []
    for name, path in ATTRIBUTE_PATHS.items():
        queue = [("status", 404), ("empty", None), ("status", 503), ("reset", None)]
        faults += [Fault(path, kind, arg, count=1) for kind, arg in queue
                   if not (name == "REGION" and kind == "empty")]
    server = server_for(fake_server, faults=faults)
    assert provider(server).attributes() == {}  # every item absent
    empty = provider(server).attributes()  # written as NAME= (Container Linux's EC2 rule)
    assert empty == {**{f"AWS_{n}": "" for n in EXPECTED}, "AWS_REGION": EXPECTED["REGION"]}
    assert provider(server).attributes() == {f"AWS_{n}": v for n, v in EXPECTED.items()}
    for path in ATTRIBUTE_PATHS.values():
        statuses = [r["status"] for r in server.requests if r["path"] == path]
        assert statuses == ([404, 503, None, 200, 200] if path == DOCUMENT
                            else [404, 200, 503, None, 200])


def test_empty_identity_document_is_malformed(fake_server):
    server = server_for(fake_server, faults=[Fault(DOCUMENT, "empty")])
    with pytest.raises(InvalidMetadata, match="invalid JSON"):
        provider(server).attributes()


@pytest.mark.parametrize("path, kind, arg", [(META + "local-ipv4", "status", 503),
                                             (DOCUMENT, "reset", None)])
def test_persistent_failure_fails_naming_the_url(fake_server, path, kind, arg):
    server = server_for(fake_server, faults=[Fault(path, kind, arg)])
    with pytest.raises(FetchError) as info:
        provider(server, timeout=1.5).attributes()
    assert info.value.source == f"GET http://169.254.169.254{path}"


def test_identity_document_of_the_wrong_shape(fake_server):
    server = server_for(fake_server, faults=[Fault(DOCUMENT, "malformed", '{"region": 7.5}')])
    with pytest.raises(InvalidMetadata) as info:
        provider(server).attributes()
    assert info.value.source == "GET http://169.254.169.254" + DOCUMENT
    assert "'region'" in info.value.cause and "7.5" not in str(info.value)


def test_hostname_matrix(fake_server):
    path = META + "hostname"
    assert provider(server_for(fake_server)).hostname() == EXPECTED["HOSTNAME"]
    for fault in (Fault(path, "status", 404), Fault(path, "empty")):
        assert provider(server_for(fake_server, faults=[fault])).hostname() is None
    with pytest.raises(FetchError):
        provider(server_for(fake_server, faults=[Fault(path, "status", 503)]),
                 timeout=1.5).hostname()


def test_ssh_keys_in_index_order(fake_server):
    server = server_for(fake_server, platform="ec2")
    assert provider(server, Ec2Provider).ssh_keys() == [ALICE, DEPLOY]
    assert sorted(r["path"] for r in of(server, "GET")) == [
        META + "public-keys", META + "public-keys/0/openssh-key",
        META + "public-keys/1/openssh-key"]


@pytest.mark.parametrize("fault", [Fault(META + "public-keys", "status", 404),
                                   Fault(META + "public-keys", "empty")])
def test_no_key_index_is_zero_keys(fake_server, fault):
    server = server_for(fake_server, faults=[fault])
    assert provider(server).ssh_keys() == []
    # key 0 is asked beside the index, not after it: it is requested (then ignored) even
    # when the index turns out to list no key
    assert sorted(r["path"] for r in of(server, "GET")) == [
        META + "public-keys", META + "public-keys/0/openssh-key"]


def test_the_default_concurrency_covers_the_widest_fan_out(fake_server):
    # a run with every output asks the attribute GETs and the key index with key 0 at once:
    # none of them should wait for a free worker
    from cl_metadata.context import DEFAULT_CONCURRENCY

    assert DEFAULT_CONCURRENCY >= len(ATTRIBUTE_PATHS) + 2


def test_one_key_costs_one_round_trip(fake_server):
    # the common instance: one key, fetched in the same get_many as the index, once
    one_key = dataclasses.replace(INSTANCE, ssh_keys=SAMPLE.ssh_keys[:1])
    server = server_for(fake_server, instance=one_key)
    aws = provider(server)
    rounds = []
    real_get_many = aws.context.http.get_many
    aws.context.http.get_many = lambda items: rounds.append(len(items)) or real_get_many(items)
    assert aws.ssh_keys() == [ALICE]
    assert rounds == [2]
    assert sorted(r["path"] for r in of(server, "GET")) == [
        META + "public-keys", META + "public-keys/0/openssh-key"]


@pytest.mark.parametrize("kind, arg", [("status", 404), ("empty", None)])
def test_an_absent_or_empty_key_is_skipped(fake_server, kind, arg):
    server = server_for(fake_server, faults=[Fault(META + "public-keys/0/openssh-key", kind, arg)])
    assert provider(server).ssh_keys() == [DEPLOY]


@pytest.mark.parametrize("path", [META + "public-keys", META + "public-keys/1/openssh-key"])
def test_key_fetch_failures_are_errors(fake_server, path):
    server = server_for(fake_server, faults=[Fault(path, "reset")])
    with pytest.raises(FetchError, match="connection"):
        provider(server, timeout=1.5).ssh_keys()


def test_key_index_line_without_one_equals_sign_is_fatal(fake_server):
    server = server_for(fake_server, faults=[Fault(META + "public-keys", "malformed", "0=a=b")])
    with pytest.raises(InvalidMetadata, match="line 1"):
        provider(server).ssh_keys()


def test_no_keys_on_the_instance(fake_server):
    server = server_for(fake_server, instance=dataclasses.replace(INSTANCE, ssh_keys=()))
    assert provider(server).ssh_keys() == []


# -- the real process --------------------------------------------------------------------------

def test_agent_writes_ec2_attributes_and_hostname(fake_server, agent_env, tmp_path):
    server = server_for(fake_server, platform="ec2")
    agent_env["CL_METADATA_ENDPOINT"] = server.url
    attributes, hostname = tmp_path / "attributes", tmp_path / "hostname"
    result = run_agent("--provider", "ec2", "--attributes", attributes, "--hostname", hostname,
                       env=agent_env)
    assert result.returncode == 0, result.stderr
    assert attributes.read_text() == "".join(
        f"COREOS_EC2_{suffix}={value}\n" for suffix, value in sorted(EXPECTED.items()))
    assert hostname.read_text() == EXPECTED["HOSTNAME"] + "\n"
    assert len(of(server, "PUT")) == 1


def test_agent_with_imds_disabled_exits_1_after_one_put(fake_server, agent_env, tmp_path):
    server = server_for(fake_server, faults=[Fault(TOKEN, "status", 403)])
    agent_env["CL_METADATA_ENDPOINT"] = server.url
    result = run_agent("--provider", "aws", "--attributes", tmp_path / "a", "--hostname",
                       tmp_path / "h", "--attributes-prefix", "AFTERBURN", env=agent_env)
    assert result.returncode == 1
    errors = [l for l in result.stderr.splitlines() if l.startswith("cl-metadata: error:")]
    assert len(errors) == 1 and "aws: PUT http" in errors[0] and "403" in errors[0]
    assert [r["method"] for r in server.requests] == ["PUT"]
    assert not os.path.exists(tmp_path / "a") and not os.path.exists(tmp_path / "h")


@needs_root
def test_agent_writes_aws_keys_for_a_user(fake_server, agent_env, throwaway_user):
    server = server_for(fake_server)
    agent_env["CL_METADATA_ENDPOINT"] = server.url
    result = run_agent("--provider", "aws", "--ssh-keys", throwaway_user.pw_name, env=agent_env)
    assert result.returncode == 0, result.stderr
    fragment = os.path.join(throwaway_user.pw_dir, ".ssh/authorized_keys.d/cl-metadata")
    with open(fragment) as f:
        assert f.read() == f"{ALICE}\n{DEPLOY}\n"


def test_fake_tokens_hold_across_server_processes(fake_server):
    # behind QEMU's guestfwd each connection meets a new server process
    import urllib.request
    first, second = fake_server("aws"), fake_server("aws")
    put = urllib.request.Request(first.url + "/latest/api/token", method="PUT",
                                 headers={"X-aws-ec2-metadata-token-ttl-seconds": "300"})
    token = urllib.request.urlopen(put, timeout=5).read().decode()

    def get(token_value):
        request = urllib.request.Request(second.url + "/2021-01-03/meta-data/instance-id",
                                         headers={"X-aws-ec2-metadata-token": token_value})
        try:
            return urllib.request.urlopen(request, timeout=5).status
        except urllib.error.HTTPError as err:
            return err.code

    assert get(token) == 200
    assert get(token.split(".")[0] + ".forged") == 401
