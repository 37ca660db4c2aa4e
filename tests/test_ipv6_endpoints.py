"""IPv6 metadata addresses: an IPv6-only machine gets its metadata, a dual-stack one keeps IPv4.

The platforms that publish an IPv6 address for their metadata service (ec2/aws, akamai,
oraclecloud, scaleway, openstack-metadata) are run through the real agent with the two test
overrides: ``CL_METADATA_ENDPOINT`` stands for the IPv4 address and ``CL_METADATA_ENDPOINT6``
for the IPv6 one. "Refused" is a closed loopback port; a black hole is a loopback listener
whose accept queue is full (the kernel drops further SYNs). Nothing here leaves loopback, and
no test reaches a platform's real address: the default path is checked with the race itself
replaced.
"""

from __future__ import annotations

import errno
import ipaddress
import re
import socket

import pytest

from cl_metadata import registry
from cl_metadata.context import Context
from cl_metadata.errors import UsageError
from cl_metadata.sources import endpoints
from cl_metadata.sources.deadline import Deadline
from cl_metadata.sources.http import HttpClient

from conftest import run_agent

# provider id -> (fake server platform, the platform's IPv4 origin, its IPv6 origin)
PLATFORMS = {
    "ec2": ("aws", "http://169.254.169.254", "http://[fd00:ec2::254]"),
    "akamai": ("akamai", "http://169.254.169.254", "http://[fd00:a9fe:a9fe::1]"),
    "oraclecloud": ("oraclecloud", "http://169.254.169.254", "http://[fd00:c1::a9fe:a9fe]"),
    "scaleway": ("scaleway", "http://169.254.42.42", "http://[fd00:42::42]"),
    "openstack-metadata": ("openstack", "http://169.254.169.254", "http://[fe80::a9fe:a9fe]"),
}


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
        return True
    except OSError:
        return False


pytestmark = pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback (::1)")


def closed_port(host: str) -> int:
    """A loopback port nothing listens on: a connect is refused at once."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def refused(host: str = "127.0.0.1") -> str:
    port = closed_port(host)
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


@pytest.fixture
def black_hole():
    """``http://127.0.0.1:PORT`` where a connect neither succeeds nor fails: the listener's
    accept queue is full, so the kernel drops every new SYN (as a firewall would)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(4):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(("127.0.0.1", port))
        fillers.append(filler)
    yield f"http://127.0.0.1:{port}"
    for sock in fillers + [listener]:
        sock.close()


def run(provider, env, tmp_path, *extra):
    out = tmp_path / f"attributes-{len(list(tmp_path.iterdir()))}"
    result = run_agent("--provider", provider, "--attributes", out, "-v", *extra, env=env)
    return result, (out.read_text() if out.exists() else None)


def requests_of(server):
    return sorted((r["method"], r["path"]) for r in server.requests)


def baseline(provider, fake_server, agent_env, tmp_path):
    """What a run through IPv4 alone writes and asks, as every release did."""
    server = fake_server(PLATFORMS[provider][0])
    result, written = run(provider, dict(agent_env, CL_METADATA_ENDPOINT=server.url), tmp_path)
    assert result.returncode == 0, result.stderr
    assert written and "INSTANCE" in written
    return written, requests_of(server)


@pytest.mark.parametrize("provider", sorted(PLATFORMS))
def test_an_ipv6_only_machine_reads_its_platform_over_ipv6(provider, fake_server, agent_env,
                                                           tmp_path):
    expected, asked = baseline(provider, fake_server, agent_env, tmp_path)
    v6 = fake_server(PLATFORMS[provider][0], bind="::1")
    env = dict(agent_env, CL_METADATA_ENDPOINT=refused(), CL_METADATA_ENDPOINT6=v6.url)
    result, written = run(provider, env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert written == expected
    assert requests_of(v6) == asked  # every request of the run went to the IPv6 server
    platform, ipv4, ipv6 = PLATFORMS[provider]
    assert (f"cl-metadata: {ipv4}: no IPv4 connection (connection refused); using {ipv6}\n"
            in result.stderr)
    # the log names the platform's URLs and never a value that was written
    for line in expected.splitlines():
        value = line.split("=", 1)[1]
        assert len(value) < 4 or value not in result.stderr, line.split("=", 1)[0]


@pytest.mark.parametrize("provider", sorted(PLATFORMS))
def test_a_machine_without_ipv6_reads_over_ipv4_as_before(provider, fake_server, agent_env,
                                                          tmp_path):
    expected, asked = baseline(provider, fake_server, agent_env, tmp_path)
    v4 = fake_server(PLATFORMS[provider][0])
    env = dict(agent_env, CL_METADATA_ENDPOINT=v4.url, CL_METADATA_ENDPOINT6=refused("::1"))
    result, written = run(provider, env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert written == expected
    assert requests_of(v4) == asked


def test_a_dual_stack_machine_uses_ipv4_for_the_whole_run(fake_server, agent_env, tmp_path):
    """IPv4 connects within its head start, so IPv6 is never even tried: the path every image
    used so far, at the cost of one connect."""
    expected, asked = baseline("ec2", fake_server, agent_env, tmp_path)
    v4, v6 = fake_server("aws"), fake_server("aws", bind="::1")
    env = dict(agent_env, CL_METADATA_ENDPOINT=v4.url, CL_METADATA_ENDPOINT6=v6.url)
    result, written = run("ec2", env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert written == expected
    assert requests_of(v4) == asked
    assert v6.requests == []


def test_ipv6_wins_when_ipv4_is_a_black_hole(black_hole, fake_server, agent_env, tmp_path):
    """A dropped IPv4 SYN costs the head start, not the 2 s connect timeout of every retry."""
    expected, asked = baseline("scaleway", fake_server, agent_env, tmp_path)
    v6 = fake_server("scaleway", bind="::1")
    env = dict(agent_env, CL_METADATA_ENDPOINT=black_hole, CL_METADATA_ENDPOINT6=v6.url)
    result, written = run("scaleway", env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert written == expected
    assert requests_of(v6) == asked
    assert ("http://169.254.42.42: no IPv4 connection (slower than IPv6); using "
            "http://[fd00:42::42]") in result.stderr


def test_when_neither_family_connects_the_error_names_both_addresses(agent_env, tmp_path):
    env = dict(agent_env, CL_METADATA_ENDPOINT=refused(), CL_METADATA_ENDPOINT6=refused("::1"),
               CL_METADATA_TIMEOUT="2")
    result = run_agent("--provider", "scaleway", "--attributes", tmp_path / "a", env=env)
    assert result.returncode == 1
    assert re.fullmatch(
        r"cl-metadata: error: scaleway: GET http://169\.254\.42\.42/conf\?format=json: no "
        r"connection \(http://169\.254\.42\.42: connection refused, http://\[fd00:42::42\]: "
        r"connection refused\) after \d+ attempts\n", result.stderr), result.stderr
    assert not (tmp_path / "a").exists()


def test_endpoint6_alone_is_a_usage_error(agent_env, tmp_path):
    """Without CL_METADATA_ENDPOINT the IPv4 requests would go to the real platform."""
    env = dict(agent_env, CL_METADATA_ENDPOINT6=refused("::1"))
    result = run_agent("--provider", "scaleway", "--attributes", tmp_path / "a", env=env)
    assert result.returncode == 2
    assert result.stderr.endswith(
        "CL_METADATA_ENDPOINT6 needs CL_METADATA_ENDPOINT as well\n"), result.stderr
    assert result.stderr.count("\n") == 1


def test_a_bad_endpoint6_is_a_usage_error_naming_it(agent_env, tmp_path):
    env = dict(agent_env, CL_METADATA_ENDPOINT=refused(),
               CL_METADATA_ENDPOINT6="http://[::1]:80/path")
    result = run_agent("--provider", "scaleway", "--attributes", tmp_path / "a", env=env)
    assert result.returncode == 2
    assert "CL_METADATA_ENDPOINT6: no path, query or fragment allowed" in result.stderr


# --- in-process: which addresses are tried ---------------------------------------------------


@pytest.fixture(autouse=True)
def connects(monkeypatch):
    """Every address a socket of this process connects to, in order; one that is not loopback
    is refused here, before any packet, and fails the test (a regression must not reach a
    platform's real address)."""
    seen, strays = [], []

    def loopback(address) -> bool:
        if not isinstance(address, tuple):
            return True  # a unix socket path
        try:
            return ipaddress.ip_address(address[0].split("%", 1)[0]).is_loopback
        except ValueError:
            return False

    for name in ("connect", "connect_ex"):
        original = getattr(socket.socket, name)

        def spy(sock, address, _original=original, _name=name):
            seen.append((sock.family, address[0] if isinstance(address, tuple) else address))
            if not loopback(address):
                strays.append(address[0])
                if _name == "connect_ex":
                    return errno.ECONNREFUSED
                raise ConnectionRefusedError(errno.ECONNREFUSED, "not loopback: refused here")
            return _original(sock, address)

        monkeypatch.setattr(socket.socket, name, spy)
    yield seen
    assert strays == [], "a connect to a non-loopback address was attempted"


def read_attributes(provider_id, environ):
    context = Context(deadline=Deadline(5.0), environ=environ)
    try:
        with registry.get(provider_id).provider(context) as provider:
            return provider.attributes()
    finally:
        context.close()


@pytest.mark.parametrize("provider", sorted(PLATFORMS))
def test_endpoint_alone_never_connects_over_ipv6(provider, fake_server, connects):
    """Every existing test, demo and e2e run sets CL_METADATA_ENDPOINT only: as before, that
    one address carries everything and no IPv6 connect is even attempted."""
    server = fake_server(PLATFORMS[provider][0])
    attributes = read_attributes(provider, {"CL_METADATA_ENDPOINT": server.url})
    assert attributes
    assert connects and all(family == socket.AF_INET and host == "127.0.0.1"
                            for family, host in connects)


def test_concurrent_first_requests_share_one_race(fake_server, monkeypatch):
    races = []
    real_race = endpoints.race
    monkeypatch.setattr(endpoints, "race", lambda *a, **k: races.append(a) or real_race(*a, **k))
    v6 = fake_server("aws", bind="::1")
    attributes = read_attributes("aws", {"CL_METADATA_ENDPOINT": refused(),
                                         "CL_METADATA_ENDPOINT6": v6.url})
    assert attributes["AWS_INSTANCE_ID"]
    assert len(races) == 1
    assert len(v6.requests) == 11  # the token and ten attribute GETs, all over IPv6


@pytest.mark.parametrize("provider", sorted(PLATFORMS))
def test_without_overrides_the_race_is_between_the_platforms_own_addresses(provider,
                                                                          monkeypatch):
    """The production path, with the race replaced so that nothing is sent anywhere."""
    raced = []

    def no_connection(origins, **kwargs):
        raced.append(list(origins))
        return endpoints.RaceResult(None, ["network unreachable"] * len(origins))

    monkeypatch.setattr(endpoints, "race", no_connection)
    monkeypatch.setattr(endpoints, "link_local_interfaces", lambda path=None: ["eth0", "ens3"])
    context = Context(deadline=Deadline(0.5), environ={})
    context._http = HttpClient(deadline=context.deadline, backoff_initial=0.01,
                               backoff_max=0.02)
    try:
        with registry.get(provider).provider(context) as instance:
            with pytest.raises(Exception) as failure:
                instance.attributes()
    finally:
        context.close()
    _, ipv4, ipv6 = PLATFORMS[provider]
    if provider == "openstack-metadata":  # link-local: once per interface that has IPv6
        expected = [ipv4, "http://[fe80::a9fe:a9fe%25eth0]", "http://[fe80::a9fe:a9fe%25ens3]"]
    else:
        expected = [ipv4, ipv6]
    assert raced and all(origins == expected for origins in raced)
    assert f"{ipv4}: network unreachable" in str(failure.value)


def test_endpoint6_needs_endpoint():
    with pytest.raises(UsageError, match="CL_METADATA_ENDPOINT6 needs CL_METADATA_ENDPOINT"):
        Context(deadline=Deadline(1.0), environ={"CL_METADATA_ENDPOINT6": "http://[::1]:1"})


# --- the link-local scope and the race itself -----------------------------------------------

IF_INET6 = """\
00000000000000000000000000000001 01 80 10 80       lo
fe800000000000000000000000000001 01 40 20 80       lo
fd000000000000000000000000000002 02 40 00 80     eth0
fe8000000000000000fc00fffe000001 02 40 20 80     eth0
fe8000000000000000fc00fffe000002 03 40 20 c0     eth1
fe8000000000000000fc00fffe000003 04 40 20 88     eth2
fe8000000000000000fc00fffe000004 05 40 20 80  enP1s0
"""


def test_link_local_interfaces_are_those_with_a_usable_link_local_address(tmp_path):
    table = tmp_path / "if_inet6"
    table.write_text(IF_INET6)
    # lo never; eth1 tentative (DAD running) and eth2 failed DAD: the kernel cannot use them
    assert endpoints.link_local_interfaces(str(table)) == ["eth0", "enP1s0"]
    assert endpoints.link_local_interfaces(str(tmp_path / "absent")) == []  # IPv6 off


def test_a_link_local_address_is_tried_once_per_interface(tmp_path):
    table = tmp_path / "if_inet6"
    table.write_text(IF_INET6)
    assert [c.sent for c in endpoints.candidates(
        "http://169.254.169.254", ["http://[fe80::a9fe:a9fe]"], interfaces_path=str(table))] \
        == ["http://169.254.169.254", "http://[fe80::a9fe:a9fe%25eth0]",
            "http://[fe80::a9fe:a9fe%25enP1s0]"]


def test_a_zoned_url_reaches_the_socket_layer_with_its_interface(monkeypatch):
    """requests and urllib3 hand ``fe80::…%eth0`` to the connect: stopped before any packet."""
    import urllib3.util.connection

    hosts = []

    def refuse(address, *args, **kwargs):
        hosts.append(address[0])
        raise ConnectionRefusedError(111, "refused here")

    monkeypatch.setattr(urllib3.util.connection, "create_connection", refuse)
    client = HttpClient(deadline=Deadline(0.3), backoff_initial=0.01, backoff_max=0.01)
    with pytest.raises(Exception):
        client.get("http://[fe80::a9fe:a9fe%25eth0]/latest/meta-data/")
    client.close()
    assert hosts and set(hosts) == {"fe80::a9fe:a9fe%eth0"}


def test_the_race_gives_ipv4_its_head_start(fake_server):
    v4, v6 = fake_server("scaleway"), fake_server("scaleway", bind="::1")
    assert endpoints.race([v4.url, v6.url], timeout=2.0).winner == 0
    assert endpoints.race([refused(), v6.url], timeout=2.0) == endpoints.RaceResult(
        1, ["connection refused", None])
    assert endpoints.race([refused(), refused("::1")], timeout=2.0) == endpoints.RaceResult(
        None, ["connection refused", "connection refused"])
