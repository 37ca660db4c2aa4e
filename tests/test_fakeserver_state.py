"""Fake server faults limited in time (``@Ss``) and shared between processes (``--state``):
what QEMU's guestfwd needs, where every guest connection starts a new ``--stdio`` server."""

from __future__ import annotations

import http.client
import json
import subprocess
import sys

import pytest

from cl_metadata.fakeserver import FakeServer, Fault, parse_fault
from cl_metadata.fakeserver.faults import FaultError, FaultPlan, SharedFaultState

REQUEST = b"GET /openstack HTTP/1.1\r\nHost: 169.254.169.254\r\n\r\n"


class Clock:
    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def kinds(plan: FaultPlan, path: str = "/x", n: int = 1):
    return [getattr(plan.select(path, "")[1], "kind", None) for _ in range(n)]


@pytest.mark.parametrize("spec, fault", [
    ("*=status:503@8s", Fault("*", "status", "503", seconds=8.0)),
    ("/x=reset@2.5s", Fault("/x", "reset", None, seconds=2.5)),
    ("/x=status:503:2@10s", Fault("/x", "status", "503:2", seconds=10.0)),
    ("/x=status:503@3", Fault("/x", "status", "503", 3)),  # counts unchanged
])
def test_parse_time_limited_faults(spec, fault):
    parsed = parse_fault(spec)
    assert parsed == fault
    assert (parsed.count, parsed.seconds) == (fault.count, fault.seconds)


@pytest.mark.parametrize("make, message", [
    (lambda: parse_fault("/x=empty@0s"), "positive"),
    (lambda: Fault("/x", "empty", count=1, seconds=2.0), "not both"),
    (lambda: Fault("/x", "empty", seconds=-1.0), "positive"),
])
def test_invalid_time_limits_are_usage_errors(make, message):
    with pytest.raises(FaultError, match=message) as err:
        make()
    assert err.value.exit_code == 2


def test_time_window_counts_from_the_first_request():
    clock = Clock(1000.0)
    plan = FaultPlan([parse_fault("/x=status:503@5s")], clock=clock)
    clock.now = 1000.0
    assert kinds(plan) == ["status"]  # the first request starts the window
    clock.now = 1004.9
    assert kinds(plan, n=3) == ["status"] * 3
    clock.now = 1005.0
    assert kinds(plan) == [None]
    clock.now = 1004.0  # (a clock going back stays inside the window)
    assert kinds(plan) == ["status"]


def test_time_window_ignores_requests_for_other_paths_when_it_starts():
    clock = Clock(1000.0)
    plan = FaultPlan([parse_fault("/x=status:503@5s")], clock=clock)
    assert kinds(plan, "/other") == [None]  # starts the clock all the same: the first request
    clock.now = 1006.0
    assert kinds(plan) == [None]


def test_shared_state_counts_across_plans(tmp_path):
    state = tmp_path / "state.json"
    faults = [parse_fault("/x=status:503@2"), parse_fault("/x=empty@1")]
    first = FaultPlan(faults, state=SharedFaultState(state))
    second = FaultPlan(faults, state=SharedFaultState(state))
    assert kinds(first) + kinds(second) + kinds(first) + kinds(second) == [
        "status", "status", "empty", None]
    saved = json.loads(state.read_text())
    assert saved["used"] == {"0 /x=status": 2, "1 /x=empty": 1}


def test_shared_state_shares_the_start_time(tmp_path):
    state = tmp_path / "state.json"
    faults = [parse_fault("*=status:503@10s")]
    early, late = Clock(500.0), Clock(509.0)
    assert kinds(FaultPlan(faults, state=SharedFaultState(state), clock=early)) == ["status"]
    assert kinds(FaultPlan(faults, state=SharedFaultState(state), clock=late)) == ["status"]
    late.now = 510.0
    assert kinds(FaultPlan(faults, state=SharedFaultState(state), clock=late)) == [None]
    assert json.loads(state.read_text())["start"] == 500.0


@pytest.mark.parametrize("content", [b"not json", b"[1, 2]", b'{"start": "x", "used": {}}'])
def test_unusable_state_file_is_refused_before_serving(tmp_path, content):
    state = tmp_path / "state.json"
    state.write_bytes(content)
    with pytest.raises(FaultError, match="not a fault state file"):
        FakeServer("openstack", fault_state=state)
    assert state.read_bytes() == content


def test_tcp_servers_sharing_a_state_file_count_together(tmp_path):
    state = tmp_path / "state.json"
    faults = [parse_fault("/openstack=status:503@1")]
    statuses = []
    for _ in range(2):
        with FakeServer("openstack", faults=faults, fault_state=state) as server:
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
            conn.request("GET", "/openstack")
            statuses.append(conn.getresponse().status)
            conn.close()
    assert statuses == [503, 200]


def stdio_server(tmp_path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cl_metadata.fakeserver", "--stdio", "--platform", "openstack",
         "--log", str(tmp_path / "requests.jsonl"), "--state", str(tmp_path / "state.json"),
         *args], input=REQUEST, capture_output=True, timeout=30)


def test_stdio_servers_count_faults_together(tmp_path):
    results = [stdio_server(tmp_path, "--fault", "/openstack=status:503@2") for _ in range(3)]
    assert [r.returncode for r in results] == [0, 0, 0]
    assert [r.stdout.split(b"\r\n", 1)[0] for r in results] == [
        b"HTTP/1.1 503 Service Unavailable", b"HTTP/1.1 503 Service Unavailable",
        b"HTTP/1.1 200 OK"]
    assert [r.stderr for r in results] == [b"", b"", b""]
    log = [json.loads(line) for line in (tmp_path / "requests.jsonl").read_text().splitlines()]
    assert [(e["path"], e["status"], e["fault"]) for e in log] == [
        ("/openstack", 503, "status"), ("/openstack", 503, "status"), ("/openstack", 200, None)]


def test_stdio_server_with_a_bad_state_file_answers_500_and_logs_why(tmp_path):
    (tmp_path / "state.json").write_text("garbage")
    result = stdio_server(tmp_path)
    assert result.returncode == 2
    assert result.stdout.startswith(b"HTTP/1.1 500 ")
    assert result.stderr == b""
    (entry,) = [json.loads(line) for line in (tmp_path / "requests.jsonl").read_text().splitlines()]
    assert "not a fault state file" in entry["error"]
