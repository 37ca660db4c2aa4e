"""lxd, incus: the guest API on a unix socket, played by the fake server's ``UnixFakeServer``
at a path under tmp (``CL_METADATA_LXD_SOCKET``). The real /dev/lxd/sock and /dev/incus/sock
are never opened, nor looked at."""

from __future__ import annotations

import os
import socket
import time

import pytest

from cl_metadata.errors import FetchError
from cl_metadata.fakeserver.faults import parse_fault
from cl_metadata.fakeserver.instance import Instance, NetworkInterface, load_instance
from cl_metadata.fakeserver.server import UnixFakeServer, UnixSocketRefused
from cl_metadata.providers.lxd import IncusProvider, LxdProvider
from cl_metadata.sources.deadline import Deadline
from cl_metadata.sources.http import UnixSocketHttpClient

from conftest import run_agent

SAMPLE = load_instance()
KEYS = [key.key for key in SAMPLE.ssh_keys]
ID = SAMPLE.instance_id
MAC = "00:16:3e:4c:2d:7a"
MACHINE = Instance(
    instance_id=ID, hostname="c1", ssh_keys=SAMPLE.ssh_keys,
    network_interfaces=(NetworkInterface(mac=MAC, name="eth0", local_ipv4="10.158.27.15",
                                         ipv4_gateway="10.158.27.1"),),
    nameservers=("192.0.2.53",), user_data="#cloud-config\npackage_update: true\n",
    platform_data={"lxd": {"instance-type": "virtual-machine"}})
PREVIOUS = b"COREOS_LXD_INSTANCE_ID=from-an-earlier-boot\n"


@pytest.fixture
def guest_api(tmp_path):
    """Factory: ``guest_api(instance, faults=[...])`` → a started UnixFakeServer under tmp."""
    servers = []

    def start(instance=MACHINE, platform="lxd", **options):
        server = UnixFakeServer(platform, instance, socket_path=tmp_path / f"sock{len(servers)}",
                                **options)
        servers.append(server.start())
        return server

    yield start
    for server in servers:
        server.stop()


def agent(env, tmp_path, socket_path, *args, provider="lxd"):
    """Run the agent for every output into tmp_path/out; an attributes file is there already."""
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    (out / "attributes").write_bytes(PREVIOUS)
    env = dict(env, CL_METADATA_LXD_SOCKET=str(socket_path))
    return run_agent("--provider", provider, "--attributes", out / "attributes", "--hostname",
                     out / "hostname", "--network-units", out / "units", "--user-data",
                     out / "user-data", *args, env=env)


def assert_failed_cleanly(result, tmp_path, *, provider="lxd"):
    """Exit 1, one line naming the provider, nothing written, no traceback."""
    assert result.returncode == 1, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"cl-metadata: error: {provider}: "), lines
    assert "Traceback" not in result.stderr
    out = tmp_path / "out"
    assert (out / "attributes").read_bytes() == PREVIOUS
    assert sorted(p.name for p in out.iterdir()) == ["attributes"]
    return lines[0]


# --- what the platform says ---------------------------------------------------------------------


def test_every_output_from_the_guest_api(agent_env, tmp_path, guest_api):
    server = guest_api()
    result = agent(agent_env, tmp_path, server.socket_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    out = tmp_path / "out"
    assert (out / "attributes").read_text() == (
        f"COREOS_LXD_HOSTNAME=c1\nCOREOS_LXD_INSTANCE_ID={ID}\n"
        "COREOS_LXD_INSTANCE_TYPE=virtual-machine\n")
    assert (out / "hostname").read_text() == "c1\n"
    unit = (out / "units" / f"10-{MAC}.network").read_text()
    assert f"MACAddress={MAC}" in unit and "Address=10.158.27.15/24" in unit
    assert "Gateway=10.158.27.1" in unit and "DNS=192.0.2.53" in unit
    assert os.listdir(out / "units") == [f"10-{MAC}.network"]
    user_data = (out / "user-data").read_bytes()
    assert user_data.startswith(b"#cloud-config\n") and b"package_update: true" in user_data
    assert os.stat(out / "user-data").st_mode & 0o777 == 0o600
    # the paths asked: each once, none beyond the guest API's
    paths = sorted(r["path"] for r in server.requests)
    assert paths == ["/1.0", "/1.0/config/cloud-init.network-config",
                     "/1.0/config/cloud-init.user-data", "/1.0/meta-data"]


def test_keys_are_the_cloud_config_s_top_level_ones(guest_api):
    server = guest_api()
    provider = open_lxd(server)
    assert provider.ssh_keys() == KEYS
    # users[].ssh_authorized_keys belong to users cloud-init would create: not read
    other = guest_api(Instance(instance_id=ID, user_data=(
        "#cloud-config\nusers:\n- name: bob\n  ssh_authorized_keys: ['" + KEYS[0] + "']\n")))
    assert open_lxd(other).ssh_keys() == []


def open_lxd(server, cls=LxdProvider):
    from conftest import make_context

    context = make_context(environ={"CL_METADATA_LXD_SOCKET": server.socket_path})
    context._socket_http = UnixSocketHttpClient(server.socket_path, deadline=context.deadline,
                                                backoff_initial=0.01, backoff_max=0.05)
    return cls(context)


def test_older_user_keys_are_read_when_the_cloud_init_ones_are_unset(guest_api):
    server = guest_api(Instance(
        instance_id=ID, ssh_keys=SAMPLE.ssh_keys, network_interfaces=MACHINE.network_interfaces,
        platform_data={"lxd": {"user-data-key": "user.user-data",
                               "network-config-key": "user.network-config",
                               "network-config-version": 1}}))
    provider = open_lxd(server)
    assert provider.ssh_keys() == KEYS
    assert provider.user_data().startswith(b"#cloud-config\n")
    interfaces, _ = provider.network()
    assert [(i.mac, i.addresses) for i in interfaces] == [(MAC, ("10.158.27.15/24",))]
    # the newer key first (unset: LXD's 404), then the older one
    assert [(r["path"], r["status"]) for r in server.requests if "user-data" in r["path"]] == \
        [("/1.0/config/cloud-init.user-data", 404), ("/1.0/config/user.user-data", 200)]


def test_cloud_init_keys_win_over_user_keys(guest_api):
    server = guest_api(Instance(instance_id=ID, user_data="#cloud-config\n{}\n", platform_data={
        "lxd": {"config": {"user.user-data": "#cloud-config\nssh_authorized_keys: ['"
                                             + KEYS[1] + "']\n"}}}))
    provider = open_lxd(server)
    assert provider.ssh_keys() == []
    assert provider.user_data() == b"#cloud-config\n{}\n"


def test_no_user_data_no_network_no_instance_type(guest_api, agent_env, tmp_path):
    """An instance with only meta-data (LXD before VMs had no instance_type): the id and the
    hostname, no units, no user-data file (one from an earlier boot is removed)."""
    server = guest_api(Instance(instance_id=ID, hostname="c1"))
    (tmp_path / "out").mkdir()
    (tmp_path / "out/user-data").write_text("stale")
    result = agent(agent_env, tmp_path, server.socket_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out/attributes").read_text() == (
        f"COREOS_LXD_HOSTNAME=c1\nCOREOS_LXD_INSTANCE_ID={ID}\nCOREOS_LXD_INSTANCE_TYPE=container\n")
    assert not (tmp_path / "out/user-data").exists()
    assert not (tmp_path / "out/units").exists() or os.listdir(tmp_path / "out/units") == []


def test_incus_names_and_socket(guest_api, agent_env, tmp_path):
    assert IncusProvider.socket_path == "/dev/incus/sock"  # checked, never opened
    assert LxdProvider.socket_path == "/dev/lxd/sock"
    server = guest_api(platform="incus")
    result = agent(agent_env, tmp_path, server.socket_path, "--attributes-prefix", "AFTERBURN",
                   provider="incus")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out/attributes").read_text() == (
        f"AFTERBURN_INCUS_HOSTNAME=c1\nAFTERBURN_INCUS_INSTANCE_ID={ID}\n"
        "AFTERBURN_INCUS_INSTANCE_TYPE=virtual-machine\n")


def test_local_only_reads_the_socket(guest_api, agent_env, tmp_path):
    """The socket is on the machine: the network unit's --local-only run writes the units."""
    server = guest_api()
    result = run_agent("--provider", "lxd", "--local-only", "--network-units",
                       tmp_path / "units",
                       env=dict(agent_env, CL_METADATA_LXD_SOCKET=server.socket_path))
    assert result.returncode == 0, result.stderr
    assert os.listdir(tmp_path / "units") == [f"10-{MAC}.network"]


# --- no socket, or something else where it should be -------------------------------------------


def test_a_missing_socket_is_a_notice_and_nothing_done(agent_env, tmp_path):
    result = agent(agent_env, tmp_path, tmp_path / "no-such-sock")
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [
        f"cl-metadata: notice: lxd: no guest API socket {tmp_path / 'no-such-sock'} (the guest "
        "API is off, or the VM agent is not running); nothing to do"]
    assert (tmp_path / "out/attributes").read_bytes() == PREVIOUS
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["attributes"]


def test_a_regular_file_is_refused(agent_env, tmp_path):
    fake = tmp_path / "sock"
    fake.write_text("HTTP/1.1 200 OK\r\n\r\n")
    line = assert_failed_cleanly(agent(agent_env, tmp_path, fake), tmp_path)
    assert line == f"cl-metadata: error: lxd: {fake}: is not a socket; refused"


def test_a_symlink_is_refused_even_to_a_real_socket(agent_env, tmp_path, guest_api):
    server = guest_api()
    link = tmp_path / "link"
    link.symlink_to(server.socket_path)
    line = assert_failed_cleanly(agent(agent_env, tmp_path, link), tmp_path)
    assert line == f"cl-metadata: error: lxd: {link}: is a symlink, not the guest API socket; refused"
    assert server.requests == []


# --- hostile guest API ----------------------------------------------------------------------------


def test_a_dripping_socket_ends_at_the_deadline(agent_env, tmp_path, guest_api):
    """One byte every 0.2 s keeps every read inside its timeout: only the run's deadline
    watchdog, which shuts down the unix socket too, ends it."""
    server = guest_api(faults=[parse_fault("/1.0/meta-data=drip:0.2")])
    started = time.monotonic()
    result = agent(agent_env, tmp_path, server.socket_path, "--timeout", "2")
    elapsed = time.monotonic() - started
    line = assert_failed_cleanly(result, tmp_path)
    assert line == (f"cl-metadata: error: lxd: GET /1.0/meta-data on {server.socket_path}: "
                    "deadline of 2 s exceeded (attempt 1)")
    assert elapsed < 6, elapsed  # the body alone would take ~20 s to drip


def test_an_oversized_answer_is_refused(agent_env, tmp_path, guest_api):
    server = guest_api(faults=[parse_fault("/1.0/meta-data=oversize:2000000")])
    line = assert_failed_cleanly(agent(agent_env, tmp_path, server.socket_path), tmp_path)
    assert line == (f"cl-metadata: error: lxd: GET /1.0/meta-data on {server.socket_path}: "
                    "response exceeds 1048576 bytes")


def test_bad_network_config_yaml_fails_naming_the_key_never_its_value(agent_env, tmp_path,
                                                                        guest_api):
    key = "cloud-init.network-config"
    server = guest_api(Instance(instance_id=ID, platform_data={"lxd": {"config": {
        key: "network: {version: 2, zqxsecret: [unclosed\n"}}}))
    line = assert_failed_cleanly(agent(agent_env, tmp_path, server.socket_path), tmp_path)
    assert line.startswith(f"cl-metadata: error: lxd: /1.0/config/{key} on "
                           f"{server.socket_path}: invalid YAML at line "), line
    assert "zqx" not in line


def test_bad_user_data_yaml_fails_the_keys_naming_the_key_never_its_value(agent_env, guest_api):
    """``query`` asks for the keys as a run with ``--ssh-keys`` does, and writes nothing."""
    key = "cloud-init.user-data"
    server = guest_api(Instance(instance_id=ID, platform_data={"lxd": {"config": {
        key: "#cloud-config\nzqxsecret: [unclosed\n"}}}))
    result = run_agent("query", "--provider", "lxd",
                       env=dict(agent_env, CL_METADATA_LXD_SOCKET=server.socket_path))
    assert result.returncode == 1 and result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        f"cl-metadata: error: lxd: /1.0/config/{key} on {server.socket_path}: invalid YAML at "
        "line "), lines
    assert "zqx" not in result.stderr


def test_a_5xx_is_retried_over_the_socket(guest_api):
    server = guest_api(faults=[parse_fault("/1.0/meta-data=status:503@2")])
    assert open_lxd(server).hostname() == "c1"
    assert [r["status"] for r in server.requests if r["path"] == "/1.0/meta-data"] == \
        [503, 503, 200]


# --- the transport ----------------------------------------------------------------------------


def test_the_socket_client_never_leaves_the_socket(guest_api):
    """Whatever host a URL names, the request reaches the socket (here a loopback address is
    named, so a broken client would only ever reach this machine); https is refused."""
    server = guest_api()
    client = UnixSocketHttpClient(server.socket_path, deadline=Deadline(5))
    try:
        assert client.get("http://127.0.0.1:9/1.0/meta-data").startswith(b"#cloud-config\n")
        with pytest.raises(FetchError, match=r"invalid request"):
            client.get("https://127.0.0.1:9/1.0")
    finally:
        client.close()
    assert [r["path"] for r in server.requests] == ["/1.0/meta-data"]


def test_a_socket_nobody_listens_on_is_retried_until_the_deadline(tmp_path):
    path = tmp_path / "dead.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.close()  # the file stays; connecting to it is refused
    client = UnixSocketHttpClient(str(path), deadline=Deadline(0.6), backoff_initial=0.01,
                                  backoff_max=0.05, final_attempt_lead=0.1)
    try:
        with pytest.raises(FetchError) as err:
            client.get("http://guest-api/1.0")
    finally:
        client.close()
    assert str(err.value).startswith(f"GET /1.0 on {path}: connection refused after ")


def test_a_vanished_socket_is_retried_and_named(tmp_path):
    client = UnixSocketHttpClient(str(tmp_path / "gone.sock"), deadline=Deadline(0.6),
                                  backoff_initial=0.01, backoff_max=0.05,
                                  final_attempt_lead=0.1)
    try:
        with pytest.raises(FetchError) as err:
            client.get("http://guest-api/1.0/meta-data")
    finally:
        client.close()
    assert str(err.value).startswith(
        f"GET /1.0/meta-data on {tmp_path / 'gone.sock'}: no such socket after ")
    assert "attempt 1)" not in str(err.value)  # retried, not given up at once


def test_a_socket_the_run_may_not_open_fails_at_once(tmp_path, monkeypatch):
    """Retrying cannot change a file's mode: the first EACCES is the answer (root passes any
    mode, so the refusal is played by the connection)."""
    from cl_metadata.sources import http

    def refuse(self):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(http._UnixSocketConnection, "connect", refuse)
    client = UnixSocketHttpClient(str(tmp_path / "sock"), deadline=Deadline(5))
    started = time.monotonic()
    try:
        with pytest.raises(FetchError) as err:
            client.get("http://guest-api/1.0")
    finally:
        client.close()
    assert str(err.value) == f"GET /1.0 on {tmp_path / 'sock'}: permission denied"
    assert time.monotonic() - started < 2


def test_the_fake_server_never_creates_its_socket_under_dev_or_over_a_file(tmp_path):
    with pytest.raises(UnixSocketRefused):
        UnixFakeServer("lxd", socket_path="/dev/lxd/sock")
    (tmp_path / "taken").write_text("")
    with pytest.raises(UnixSocketRefused):
        UnixFakeServer("lxd", socket_path=tmp_path / "taken")
