"""The login sequence of the end-to-end driver (``e2e_boot.run_steps``) and the runner's spec
for it, without booting anything: steps run in order with each one's outcome and times
recorded, a login is polled until it has the expected outcome, "refused" means sshd refused the
key (not a dead connection), a failed step leaves only the clean-up and the final login to run,
and the fake server is told which files switch its instance and end the platform."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

import e2e_boot
import e2e_runner
from e2e_boot import LOGIN_COMMAND, PROBE_COMMAND, login_outcome, run_steps
from e2e_catalog import by_name


class Running:
    """A stand-in for the QEMU process: still running."""

    def poll(self):
        return None


def done(rc: int, stderr: str = "", stdout: str = "") -> subprocess.CompletedProcess:
    return subprocess.CompletedProcess([], rc, stdout, stderr)


REFUSED = done(255, "core@127.0.0.1: Permission denied (publickey).\n")


@pytest.fixture
def logins(monkeypatch):
    """Scripted ssh outcomes per key; every attempt is recorded as (key, command)."""
    script = {"a": [], "b": []}
    seen = []

    def attempt(login, key, command):
        seen.append((key, command))
        return script[key].pop(0) if len(script[key]) > 1 else script[key][0]

    monkeypatch.setattr(e2e_boot, "attempt_login", attempt)
    monkeypatch.setattr(e2e_boot, "RETRY_PAUSE", 0.0)
    return SimpleNamespace(script=script, seen=seen)


def login_spec(tmp_path, steps):
    return {"user": "core", "keys": {"a": "/k/a", "b": "/k/b"}, "steps": steps,
            "files": {"switch": str(tmp_path / "switch"), "outage": str(tmp_path / "outage")},
            "requests": str(tmp_path / "requests.jsonl")}


def test_login_outcomes_tell_a_refused_key_from_a_dead_connection():
    assert login_outcome(done(0)) == "ok"
    assert login_outcome(REFUSED) == "refused"
    assert login_outcome(done(255, "ssh: connect to host 127.0.0.1 port 2222: Connection "
                                   "refused\n")) == "failed"
    assert login_outcome(done(1)) == "failed"  # logged in, the command failed


def test_steps_run_in_order_and_a_login_is_polled_until_it_works(tmp_path, logins):
    logins.script["a"] += [done(0)]
    logins.script["b"] += [REFUSED, REFUSED, done(0)]  # B arrives on the third try
    steps = [{"step": "login", "key": "a"},
             {"step": "touch", "file": "switch"},
             {"step": "login", "key": "b", "within": 30},
             {"step": "touch", "file": "outage"},
             {"step": "sleep", "seconds": 0},
             {"step": "remove", "file": "outage"},
             {"step": "finish", "key": "b"}]
    result = run_steps(login_spec(tmp_path, steps), Running())
    assert result["ok"] is True
    records = result["steps"]
    assert [r["ok"] for r in records] == [True] * 7
    assert records[2]["attempts"] == 3 and records[2]["outcome"] == "ok"
    assert (tmp_path / "switch").exists() and not (tmp_path / "outage").exists()
    # probes do not end the guest's wait; only the final login runs the command that does
    assert logins.seen == [("a", PROBE_COMMAND), ("b", PROBE_COMMAND), ("b", PROBE_COMMAND),
                           ("b", PROBE_COMMAND), ("b", LOGIN_COMMAND)]
    times = [(r["started"], r["ended"]) for r in records]
    assert all(0 <= start <= end for start, end in times)
    assert [start for start, _ in times] == sorted(start for start, _ in times)


def test_a_refusal_is_expected_until_it_happens_within_the_bound(tmp_path, logins):
    logins.script["a"] += [done(0)]  # A keeps working: the expected refusal never comes
    steps = [{"step": "login", "key": "a", "expect": "refused", "within": 0.3}]
    (record,) = run_steps(login_spec(tmp_path, steps), Running())["steps"]
    assert (record["ok"], record["outcome"]) == (False, "ok")
    assert record["attempts"] >= 2


def test_after_a_failed_step_only_clean_up_and_the_final_login_run(tmp_path, logins):
    logins.script["a"] += [done(0)]
    logins.script["b"] += [REFUSED]
    steps = [{"step": "touch", "file": "outage"},
             {"step": "login", "key": "b", "within": 0},
             {"step": "touch", "file": "switch"},
             {"step": "login", "key": "a"},
             {"step": "remove", "file": "outage"},
             {"step": "finish", "key": "a"}]
    result = run_steps(login_spec(tmp_path, steps), Running())
    assert result["ok"] is False
    assert [(r["step"], r["ok"], r.get("skipped", False)) for r in result["steps"]] == [
        ("touch", True, False), ("login", False, False), ("touch", False, True),
        ("login", False, True), ("remove", True, False), ("finish", True, False)]
    assert not (tmp_path / "switch").exists() and not (tmp_path / "outage").exists()
    assert logins.seen == [("b", PROBE_COMMAND), ("a", LOGIN_COMMAND)]


def test_without_steps_the_login_is_the_one_session_it_always_was(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(e2e_boot, "wait_for_line", lambda *args: True)
    monkeypatch.setattr(e2e_boot.subprocess, "run",
                        lambda command, **kw: calls.append(command) or done(0, stdout="core\n"))
    result = e2e_boot.log_in({"run_dir": str(tmp_path), "bound": 10,
                              "login": {"key": "/k/a", "user": "core"}}, Running())
    assert (result["rc"], result["attempts"], "steps" in result) == (0, 1, False)
    (command,) = calls
    assert command[-2:] == ["core@127.0.0.1", LOGIN_COMMAND]
    assert command[command.index("-i") + 1] == "/k/a"


def test_the_runner_gives_the_fake_server_the_schedule_and_the_driver_the_steps(tmp_path,
                                                                                 monkeypatch):
    monkeypatch.setattr(e2e_runner, "tool", lambda name: f"/usr/bin/{name}")
    image = SimpleNamespace(kernel=Path("/k"), initrd=Path("/i"), rootfs=Path("/r.img"))
    keys = {"private": "/run/login_key", "public": "ssh-ed25519 AAAAA a",
            "second_private": "/run/login_key_b", "second_public": "ssh-ed25519 BBBBB b"}
    scenario = by_name()["gcp-watch-long-poll"]
    spec = json.loads(e2e_runner.prepare(scenario, image, tmp_path, keys, "tcg").read_text())
    run_dir = tmp_path / scenario.name
    server = spec["fake_server"]
    assert server[server.index("--switch-file") + 1] == str(run_dir / "switch")
    assert server[server.index("--outage-file") + 1] == str(run_dir / "outage")
    then = Path(server[server.index("--then-instance") + 1])
    served = [k["key"] for k in __import__("yaml").safe_load(then.read_text())["ssh-keys"]]
    assert keys["second_public"] in served and keys["public"] not in served
    login = spec["login"]
    assert login["keys"] == {"a": "/run/login_key", "b": "/run/login_key_b"}
    assert login["files"] == {"switch": str(run_dir / "switch"), "outage": str(run_dir / "outage")}
    assert login["steps"] == scenario.login_steps and login["steps"][-1]["step"] == "finish"
    assert "clmtest.hold=420" in spec["append"].split()
    # an ordinary login scenario gets neither
    plain = json.loads(e2e_runner.prepare(by_name()["ssh-login"], image, tmp_path, keys,
                                          "tcg").read_text())
    assert "--switch-file" not in plain["fake_server"] and "--outage-file" not in plain["fake_server"]
    assert plain["login"] == {"key": "/run/login_key", "user": "core"}
