"""``cl-metadata watch``: key fragments that follow the platform while the machine runs.

Against the fake server on 127.0.0.1: keys added and removed on the platform reach the fragment
(exact bytes) with a fingerprint log line and never a key; an unchanged key set, an unreachable
platform, HTTP errors and invalid documents leave the fragment exactly as it was (same inode,
same mtime); GCE's long poll sees a change within seconds; the real process answers SIGHUP
with an immediate look, SIGTERM with exit status 0, and tells systemd READY=1 and WATCHDOG=1.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.request

import pytest

from cl_metadata.fakeserver.faults import FaultPlan, parse_fault
from cl_metadata.fakeserver.instance import SshKey as ServedKey
from cl_metadata.fakeserver.instance import load_instance
from cl_metadata.outputs import fingerprints
from cl_metadata.outputs.sshkeys import parse_key
from cl_metadata.watch import sources
from cl_metadata.watch.keeper import Keeper, Plan
from cl_metadata.watch.loop import Watcher

from conftest import make_context, run_agent

pytestmark = pytest.mark.root  # writes key fragments as a throwaway user

CHANGE_BOUND = 5.0  # seconds: a generous bound for "the change is seen within about a second"


def key_line(comment: str, key_type: str = "ssh-ed25519") -> str:
    name = key_type.encode()
    blob = base64.b64encode(struct.pack(">I", len(name)) + name + os.urandom(32)).decode()
    return f"{key_type} {blob} {comment}"


KEY_A, KEY_B, KEY_C = key_line("alice@laptop"), key_line("bob@desk"), key_line("carol@home")


def instance_with(*lines):
    return dataclasses.replace(load_instance(), ssh_keys=tuple(
        ServedKey(f"k{i}", line) for i, line in enumerate(lines)))


def fragment(user):
    return os.path.join(user.pw_dir, ".ssh", "authorized_keys.d", "cl-metadata")


def content(*lines) -> bytes:
    return "".join(line + "\n" for line in lines).encode()


def identity(path):
    st = os.stat(path)
    return st.st_ino, st.st_mtime_ns


def wait_for(predicate, bound=CHANGE_BOUND, step=0.02):
    end = time.monotonic() + bound
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


def read(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None


class Running:
    """A Watcher in a thread, stopped at the end."""

    def __init__(self, watcher):
        self.watcher = watcher
        self.thread = threading.Thread(target=watcher.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self.watcher

    def __exit__(self, *exc):
        self.watcher.request_stop()
        self.thread.join(10)
        assert not self.thread.is_alive()


def polling_watcher(server, user, interval=0.05, provider="openstack-metadata", timeout=2.0):
    keeper = Keeper(Plan(provider, (user,)), timeout=timeout, environ={},
                    context_factory=lambda deadline: make_context(server, timeout=deadline.total))
    # no jitter in the retry delays: the tests count looks
    return Watcher(keeper, sources.Polling(interval), retry_initial=0.05, retry_max=0.1,
                   rng=lambda: 0.5, notify=lambda message: True)


def gce_watcher(server, user, timeout=5.0):
    from cl_metadata.sources.http import HttpClient

    def client(deadline, read_timeout):
        return HttpClient(deadline=deadline, endpoint=server.url, read_timeout=read_timeout,
                          backoff_initial=0.01, backoff_max=0.05, max_workers=1)

    keeper = Keeper(Plan("gcp", (user,)), timeout=timeout, environ={},
                    context_factory=lambda deadline: make_context(server, timeout=deadline.total))
    follower = sources.GceLongPoll(client, hang=30, retry_initial=0.05, retry_max=0.2)
    return Watcher(keeper, follower, retry_initial=0.05, retry_max=0.1,
                   notify=lambda message: True)


# --- polling platforms -------------------------------------------------------------------------

def test_polling_adds_and_removes_keys_with_fingerprints_in_the_log_and_no_key_text(
        fake_server, throwaway_user, caplog):
    server = fake_server("openstack-metadata", instance=instance_with(KEY_A))
    path = fragment(throwaway_user)
    caplog.set_level(logging.DEBUG, logger="cl_metadata")
    with Running(polling_watcher(server, throwaway_user)) as watcher:
        assert wait_for(lambda: read(path) == content(KEY_A))
        server.dispatcher.set_instance(instance_with(KEY_A, KEY_B))
        assert wait_for(lambda: read(path) == content(KEY_A, KEY_B))
        server.dispatcher.set_instance(instance_with(KEY_B))
        assert wait_for(lambda: read(path) == content(KEY_B))
        assert wait_for(lambda: "ssh key removed" in caplog.text)
    st = os.stat(path)
    assert (st.st_uid, st.st_mode & 0o777) == (throwaway_user.pw_uid, 0o600)
    fp_a, fp_b = (fingerprints.fingerprint(parse_key(k)) for k in (KEY_A, KEY_B))
    user = throwaway_user.pw_name
    notices = [r.getMessage() for r in caplog.records if "ssh key " in r.getMessage()]
    assert notices == [f"ssh key added for {user}: ssh-ed25519 {fp_b}",
                       f"ssh key removed for {user}: ssh-ed25519 {fp_a}"]
    for key in (KEY_A, KEY_B):
        blob = key.split()[1]
        assert blob not in caplog.text and key.split()[2] not in caplog.text
    assert watcher.looks >= 3


def test_an_unchanged_key_set_is_not_rewritten(fake_server, throwaway_user):
    server = fake_server("openstack-metadata", instance=instance_with(KEY_A, KEY_B))
    path = fragment(throwaway_user)
    watcher = polling_watcher(server, throwaway_user)
    with Running(watcher):
        assert wait_for(lambda: read(path) == content(KEY_A, KEY_B))
        before, looks = identity(path), watcher.looks
        assert wait_for(lambda: watcher.looks >= looks + 5)
    assert identity(path) == before
    assert watcher.keeper.writes == 1


@pytest.mark.parametrize("failure", ["down", "status:500", "malformed", "reset"])
def test_an_unreachable_or_failing_platform_never_touches_the_keys(fake_server, throwaway_user,
                                                                   failure, caplog):
    server = fake_server("openstack-metadata", instance=instance_with(KEY_A, KEY_B))
    path = fragment(throwaway_user)
    # each failing look retries until its deadline: a short one, so the test sees several
    watcher = polling_watcher(server, throwaway_user, timeout=0.4)
    with Running(watcher):
        assert wait_for(lambda: read(path) == content(KEY_A, KEY_B))
        before = identity(path)
        looks = watcher.looks
        if failure == "down":
            server.stop()
        else:
            server.dispatcher.faults = FaultPlan([parse_fault(f"*={failure}")])
        # behind the failure, the platform would now serve fewer keys
        server.dispatcher.set_instance(instance_with(KEY_A))
        assert wait_for(lambda: watcher.looks >= looks + 4, bound=15)
        assert read(path) == content(KEY_A, KEY_B) and identity(path) == before
    assert "keys left as they are" in caplog.text
    assert KEY_A.split()[1] not in caplog.text


def test_a_valid_answer_with_no_keys_removes_the_fragment(fake_server, throwaway_user):
    server = fake_server("openstack-metadata", instance=instance_with(KEY_A))
    path = fragment(throwaway_user)
    with Running(polling_watcher(server, throwaway_user)):
        assert wait_for(lambda: read(path) == content(KEY_A))
        server.dispatcher.set_instance(instance_with())
        assert wait_for(lambda: read(path) is None)


# --- GCE long poll -----------------------------------------------------------------------------

def test_gce_long_poll_sees_a_change_within_seconds_without_polling(fake_server, throwaway_user):
    server = fake_server("gcp", instance=instance_with(KEY_A))
    path = fragment(throwaway_user)
    with Running(gce_watcher(server, throwaway_user)) as watcher:
        assert wait_for(lambda: read(path) == content(KEY_A))
        # both directories are being held by the server (recorded only once answered)
        assert wait_for(lambda: server.dispatcher.in_flight == 2)
        looks = watcher.looks
        changed_at = time.monotonic()
        server.dispatcher.set_instance(instance_with(KEY_A, KEY_C))
        assert wait_for(lambda: read(path) == content(KEY_A, KEY_C))
        assert time.monotonic() - changed_at < CHANGE_BOUND
        assert watcher.looks == looks + 1  # one look for one change: no polling meanwhile
    # the answered poll: the instance directory's (the project's is still held)
    polls = [r for r in server.requests if "wait_for_change=true" in r["query"]]
    assert [r["path"] for r in polls] == ["/computeMetadata/v1/instance/attributes/"]
    assert "last_etag=" in polls[0]["query"] and "recursive=true" in polls[0]["query"]


def test_gce_project_keys_and_the_block_flag_are_followed(fake_server, throwaway_user):
    base = instance_with(KEY_A)
    server = fake_server("gcp", instance=base)
    path = fragment(throwaway_user)
    with Running(gce_watcher(server, throwaway_user)):
        assert wait_for(lambda: read(path) == content(KEY_A))
        with_project = dataclasses.replace(base, platform_data={
            "gcp": {"project-ssh-keys": [f"core:{KEY_B}"]}})
        server.dispatcher.set_instance(with_project)
        assert wait_for(lambda: read(path) == content(KEY_A, KEY_B))
        blocked = dataclasses.replace(base, platform_data={
            "gcp": {"project-ssh-keys": [f"core:{KEY_B}"], "block-project-ssh-keys": "true"}})
        server.dispatcher.set_instance(blocked)
        assert wait_for(lambda: read(path) == content(KEY_A))


def test_gce_platform_down_leaves_keys_then_a_change_after_it_returns_is_seen(
        fake_server, throwaway_user):
    server = fake_server("gcp", instance=instance_with(KEY_A, KEY_B))
    path = fragment(throwaway_user)
    with Running(gce_watcher(server, throwaway_user, timeout=0.4)) as watcher:
        assert wait_for(lambda: read(path) == content(KEY_A, KEY_B))
        before = identity(path)
        server.dispatcher.faults = FaultPlan([parse_fault("*=status:503")])
        server.dispatcher.set_instance(instance_with())  # wakes the polls: into the fault
        looks = watcher.looks
        assert wait_for(lambda: watcher.looks >= looks + 3, bound=15)
        assert identity(path) == before and read(path) == content(KEY_A, KEY_B)
        server.dispatcher.faults = FaultPlan([])
        server.dispatcher.set_instance(instance_with(KEY_B))
        assert wait_for(lambda: read(path) == content(KEY_B))


# --- the fake server's long poll -----------------------------------------------------------------

def gce_get(server, path, timeout=10):
    request = urllib.request.Request(server.url + "/computeMetadata/v1/" + path,
                                     headers={"Metadata-Flavor": "Google"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return response.headers.get("ETag"), response.read()


def test_fake_gce_answers_etags_directories_and_holds_long_polls(fake_server):
    server = fake_server("gcp", instance=instance_with(KEY_A))
    tag, body = gce_get(server, "instance/attributes/?recursive=true")
    assert json.loads(body)["ssh-keys"] == f"k0:{KEY_A}\n" and len(tag) == 16
    assert "ssh-keys" in gce_get(server, "instance/attributes/")[1].decode().splitlines()
    assert gce_get(server, "instance/hostname")[0]  # every 200 has an ETag
    # another etag than the current one: answered at once
    started = time.monotonic()
    assert gce_get(server, "instance/attributes/?recursive=true&wait_for_change=true"
                           "&last_etag=0000&timeout_sec=30")[0] == tag
    assert time.monotonic() - started < 2
    # the current etag: held for timeout_sec, then the current value
    started = time.monotonic()
    assert gce_get(server, "instance/attributes/?recursive=true&wait_for_change=true"
                           f"&last_etag={tag}&timeout_sec=1")[0] == tag
    assert 0.9 < time.monotonic() - started < 5
    # held until the instance changes
    result = {}
    thread = threading.Thread(target=lambda: result.update(answer=gce_get(
        server, f"instance/attributes/?recursive=true&wait_for_change=true&last_etag={tag}"
                "&timeout_sec=30")))
    thread.start()
    time.sleep(0.3)
    assert thread.is_alive()
    server.dispatcher.set_instance(instance_with(KEY_B))
    thread.join(CHANGE_BOUND)
    new_tag, body = result["answer"]
    assert new_tag != tag and json.loads(body)["ssh-keys"] == f"k0:{KEY_B}\n"


# --- the real process --------------------------------------------------------------------------

@pytest.fixture
def notify_socket(tmp_path):
    path = str(tmp_path / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(0.2)
    yield path, sock
    sock.close()


def datagrams(sock, until, bound=CHANGE_BOUND):
    seen = []
    end = time.monotonic() + bound
    while time.monotonic() < end:
        try:
            seen.append(sock.recv(4096).decode())
        except socket.timeout:
            continue
        if until(seen):
            break
    return seen


def test_process_ready_watchdog_sighup_looks_now_and_sigterm_exits_0(
        fake_server, throwaway_user, agent_env, notify_socket):
    server = fake_server("openstack-metadata", instance=instance_with(KEY_A))
    path = fragment(throwaway_user)
    env = dict(agent_env, CL_METADATA_ENDPOINT=server.url, NOTIFY_SOCKET=notify_socket[0])
    process = subprocess.Popen(
        [sys.executable, "-m", "cl_metadata", "watch", "--provider", "openstack-metadata",
         "--ssh-keys", throwaway_user.pw_name, "--interval", "3600"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        seen = datagrams(notify_socket[1], lambda s: "READY=1" in s, bound=30)
        assert "READY=1" in seen and "WATCHDOG=1" in seen
        assert any(m.startswith("STATUS=") for m in seen)
        assert read(path) == content(KEY_A)
        asked = len(server.requests)
        server.dispatcher.set_instance(instance_with(KEY_A, KEY_C))
        time.sleep(0.5)
        assert len(server.requests) == asked  # a 3600 s interval: no look of its own
        process.send_signal(signal.SIGHUP)
        assert wait_for(lambda: read(path) == content(KEY_A, KEY_C))
        assert len(server.requests) > asked
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=CHANGE_BOUND)
        assert time.monotonic() - started < 2
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
    assert out == "" and KEY_C.split()[1] not in err


def test_lxd_is_followed_over_its_guest_socket(tmp_path, throwaway_user):
    """LXD's configuration changes while the instance runs (``lxc config set``): its keys are
    polled over the unix socket like an HTTP platform's."""
    from cl_metadata.fakeserver.server import UnixFakeServer

    server = UnixFakeServer("lxd", instance_with(KEY_A), socket_path=tmp_path / "lxd.sock")
    server.start()
    try:
        environ = {"CL_METADATA_LXD_SOCKET": str(server.socket_path)}
        from cl_metadata.watch import command

        args = command.build_parser().parse_args(["--provider", "lxd", "--ssh-keys",
                                                  throwaway_user.pw_name])
        found = command.plan_for(args, environ)  # not turned away as a drive would be
        assert found is not None and isinstance(found[1], sources.Polling)
        keeper = Keeper(Plan("lxd", (throwaway_user,)), timeout=2.0, environ=environ,
                        context_factory=lambda deadline: make_context(
                            None, timeout=deadline.total, environ=environ))
        watcher = Watcher(keeper, sources.Polling(0.05), retry_initial=0.05, retry_max=0.1,
                          rng=lambda: 0.5, notify=lambda message: True)
        path = fragment(throwaway_user)
        with Running(watcher):
            assert wait_for(lambda: read(path) == content(KEY_A))
            server.dispatcher.set_instance(instance_with(KEY_A, KEY_B))
            assert wait_for(lambda: read(path) == content(KEY_A, KEY_B))
    finally:
        server.stop()


def test_drive_platforms_are_not_watched(agent_env, tmp_path, throwaway_user):
    result = run_agent("watch", "--provider", "nocloud", "--ssh-keys", throwaway_user.pw_name,
                       env=agent_env)
    assert result.returncode == 0
    assert result.stderr == ("cl-metadata: notice: nocloud: reads config drive, which does "
                             "not change while the machine runs; nothing to watch\n")
    assert not os.path.exists(os.path.dirname(fragment(throwaway_user)))


@pytest.mark.parametrize("args, message", [
    (["--provider", "aws"], "nothing to keep in step"),
    (["--provider", "aws", "--ssh-keys", "core", "--interval", "0.1"], "--interval must be"),
    (["--provider", "aws", "--ssh-keys", "a", "--ssh-keys", "b", "--interval", "5",
      "--interval", "6"], "given more than once"),
])
def test_watch_usage_errors(agent_env, args, message):
    result = run_agent("watch", *args, env=agent_env)
    assert result.returncode == 2 and message in result.stderr
    assert len(result.stderr.splitlines()) == 1


# --- first-boot-only keys ----------------------------------------------------------------------

def test_ssh_keys_once_takes_keys_on_the_first_run_and_leaves_them_after(
        fake_server, throwaway_user, agent_env):
    server = fake_server("openstack-metadata", instance=instance_with(KEY_A))
    path = fragment(throwaway_user)
    env = dict(agent_env, CL_METADATA_ENDPOINT=server.url)
    once = ("--provider", "openstack-metadata", "--ssh-keys", throwaway_user.pw_name,
            "--ssh-keys-once")
    first = run_agent(*once, env=env)
    assert (first.returncode, first.stderr) == (0, "")
    assert read(path) == content(KEY_A)
    before, asked = identity(path), len(server.requests)
    # later boots: the platform now serves other keys, then none at all
    for served in (instance_with(KEY_B), instance_with()):
        server.dispatcher.set_instance(served)
        later = run_agent(*once, env=env)
        assert (later.returncode, later.stderr) == (0, "")
        assert read(path) == content(KEY_A) and identity(path) == before
    assert len(server.requests) == asked  # the platform is not even asked
    # with another output the run still happens, the fragment still stays
    attributes = os.path.join(os.path.dirname(throwaway_user.pw_dir), "attributes")
    with_attributes = run_agent(*once, "--attributes", attributes, env=env)
    assert with_attributes.returncode == 0, with_attributes.stderr
    assert os.path.exists(attributes) and read(path) == content(KEY_A)
    # without the flag (every boot, the default) the platform wins
    every_boot = run_agent(*once[:-1], env=env)
    assert every_boot.returncode == 0 and read(path) is None
    # the user deleted it: the next --ssh-keys-once run takes the keys again
    server.dispatcher.set_instance(instance_with(KEY_C))
    assert run_agent(*once, env=env).returncode == 0 and read(path) == content(KEY_C)
