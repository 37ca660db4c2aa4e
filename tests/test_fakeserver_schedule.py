"""The fake server's schedule: a platform that changes while the guest runs, driven by files the
host touches (``--switch-file`` with ``--then-instance``, ``--outage-file``). What QEMU's
``guestfwd`` needs: one ``--stdio`` server per connection, so the files are the only thing they
share; a GCE long poll held in one of them must notice the switch (and the outage) while held.
"""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from cl_metadata.fakeserver import FakeServer, load_instance
from cl_metadata.fakeserver.schedule import Schedule

KEY_A = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAxYgbg7sT/3EjY7mw+pqeP/YuiykylRre135lEkf43f a@host"
KEY_B = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBmfUPDExp9Sla6a4SCahuCqkCXzJsMZT1qQ1dGmPiZy b@host"
KEYS_PATH = "/computeMetadata/v1/instance/attributes/ssh-keys"
DIRECTORY = "/computeMetadata/v1/instance/attributes/?recursive=true"
# a long poll must see a file the host touched within POLL_INTERVAL (0.2 s) plus a process
# start; generous, yet far below the poll's own timeout_sec
NOTICE_BOUND = 5.0
HOLD = 30


def instance_file(path: Path, key: str) -> Path:
    path.write_text(yaml.safe_dump({"instance-id": "i-0sched", "hostname": "sched-1.example",
                                    "ssh-keys": [{"name": "core", "key": key}]}))
    return path


@pytest.fixture
def files(tmp_path):
    first, then = instance_file(tmp_path / "a.yaml", KEY_A), instance_file(tmp_path / "b.yaml", KEY_B)
    switch, outage, log = tmp_path / "switch", tmp_path / "outage", tmp_path / "requests.jsonl"
    args = ["--platform", "gcp", "--instance", str(first), "--then-instance", str(then),
            "--switch-file", str(switch), "--outage-file", str(outage), "--log", str(log)]
    return {"args": args, "switch": switch, "outage": outage, "log": log}


def request(target: str) -> bytes:
    return (f"GET {target} HTTP/1.1\r\nHost: 169.254.169.254\r\nMetadata-Flavor: Google\r\n"
            "\r\n").encode()


def stdio(files, target: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cl_metadata.fakeserver", "--stdio", *files["args"]],
                          input=request(target), capture_output=True, timeout=30)


def held(files, target: str) -> subprocess.Popen:
    """A --stdio server answering ``target`` (a long poll), still running."""
    proc = subprocess.Popen([sys.executable, "-m", "cl_metadata.fakeserver", "--stdio",
                             *files["args"]], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdin.write(request(target))
    proc.stdin.flush()
    return proc


def split(raw: bytes):
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    return lines[0], headers, body


def log_entries(files):
    return [json.loads(line) for line in files["log"].read_text().splitlines()]


def current_etag(files) -> str:
    status, headers, _ = split(stdio(files, DIRECTORY).stdout)
    assert status == "HTTP/1.1 200 OK"
    return headers["ETag"]


def test_the_switch_file_chooses_the_instance_every_stdio_server_serves(files):
    assert split(stdio(files, KEYS_PATH).stdout)[2] == f"core:{KEY_A}\n".encode()
    files["switch"].touch()
    assert split(stdio(files, KEYS_PATH).stdout)[2] == f"core:{KEY_B}\n".encode()
    files["switch"].unlink()  # removed: the first instance again
    done = stdio(files, KEYS_PATH)
    assert (done.returncode, done.stderr) == (0, b"")
    assert split(done.stdout)[2] == f"core:{KEY_A}\n".encode()


def test_a_held_long_poll_answers_when_the_host_touches_the_switch_file(files):
    etag = current_etag(files)
    proc = held(files, f"{DIRECTORY}&wait_for_change=true&last_etag={etag}&timeout_sec={HOLD}")
    try:
        time.sleep(1.0)
        assert proc.poll() is None  # held: nothing changed yet
        touched = time.monotonic()
        files["switch"].touch()
        out, err = proc.communicate(timeout=HOLD)
        waited = time.monotonic() - touched
    finally:
        proc.kill()
        proc.wait()
    status, headers, body = split(out)
    assert (status, err) == ("HTTP/1.1 200 OK", b"")
    assert json.loads(body)["ssh-keys"] == f"core:{KEY_B}\n"
    assert headers["ETag"] != etag
    assert waited < NOTICE_BOUND, f"the held poll answered {waited:.1f} s after the switch"


def test_while_the_outage_file_exists_every_request_is_dropped_unanswered(files):
    files["outage"].touch()
    done = stdio(files, KEYS_PATH)
    assert (done.returncode, done.stdout, done.stderr) == (0, b"", b"")
    (entry,) = log_entries(files)
    assert (entry["path"], entry["status"], entry["fault"]) == (KEYS_PATH, None, "outage")
    files["outage"].unlink()  # the platform is back
    assert split(stdio(files, KEYS_PATH).stdout)[0] == "HTTP/1.1 200 OK"


def test_an_outage_drops_a_long_poll_held_when_it_begins(files):
    etag = current_etag(files)
    proc = held(files, f"{DIRECTORY}&wait_for_change=true&last_etag={etag}&timeout_sec={HOLD}")
    try:
        time.sleep(1.0)
        assert proc.poll() is None
        began = time.monotonic()
        files["outage"].touch()
        out, err = proc.communicate(timeout=HOLD)
        waited = time.monotonic() - began
    finally:
        proc.kill()
        proc.wait()
    assert (out, err, proc.returncode) == (b"", b"", 0)
    assert waited < NOTICE_BOUND
    assert [e["fault"] for e in log_entries(files)] == [None, "outage"]


def test_a_switch_file_without_the_instance_it_switches_to_is_a_usage_error(tmp_path, files):
    done = subprocess.run([sys.executable, "-m", "cl_metadata.fakeserver", "--platform", "gcp",
                           "--switch-file", str(tmp_path / "switch")],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert "--switch-file with --then-instance" in done.stderr
    # --stdio: the same refusal, answered 500 and never on stderr (the guest's connection)
    done = subprocess.run([sys.executable, "-m", "cl_metadata.fakeserver", "--stdio",
                           "--then-instance", str(tmp_path / "b.yaml")],
                          input=request(KEYS_PATH), capture_output=True, timeout=30)
    assert (done.returncode, done.stderr) == (2, b"")
    assert done.stdout.startswith(b"HTTP/1.1 500 ")


def test_in_process_set_instance_still_wakes_a_long_poll_with_a_schedule(tmp_path):
    schedule = Schedule(outage_file=tmp_path / "outage")
    with FakeServer("gcp", load_instance(instance_file(tmp_path / "a.yaml", KEY_A)),
                    schedule=schedule) as server:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        conn.request("GET", DIRECTORY, headers={"Metadata-Flavor": "Google"})
        answer = conn.getresponse()
        etag = answer.getheader("ETag")
        answer.read()
        later = load_instance(instance_file(tmp_path / "b.yaml", KEY_B))
        timer = threading.Timer(0.5, server.dispatcher.set_instance, args=(later,))
        timer.start()
        conn.request("GET", f"{DIRECTORY}&wait_for_change=true&last_etag={etag}&timeout_sec={HOLD}",
                     headers={"Metadata-Flavor": "Google"})
        answer = conn.getresponse()
        assert json.loads(answer.read())["ssh-keys"] == f"core:{KEY_B}\n"
        timer.join()
        conn.close()
        # TCP: the outage resets the connection without a byte of answer
        (tmp_path / "outage").touch()
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        conn.request("GET", KEYS_PATH, headers={"Metadata-Flavor": "Google"})
        with pytest.raises((ConnectionError, http.client.RemoteDisconnected)):
            conn.getresponse()
        conn.close()
    assert [r["fault"] for r in server.requests] == [None, None, "outage"]


def test_the_switched_instance_is_checked_like_the_first(tmp_path, files):
    bad = tmp_path / "bad.yaml"
    bad.write_text("ssh-keys: [1]\n")
    args = list(files["args"])
    args[args.index("--then-instance") + 1] = str(bad)
    done = subprocess.run([sys.executable, "-m", "cl_metadata.fakeserver", "--stdio", *args],
                          input=request(KEYS_PATH), capture_output=True, timeout=30)
    assert (done.returncode, done.stderr) == (2, b"")
    assert done.stdout.startswith(b"HTTP/1.1 500 ")
    assert str(bad) in log_entries(files)[0]["error"]
