"""The fake metadata server: OpenStack routes, request log, faults, --stdio, TCP, drives."""

from __future__ import annotations

import base64
import http.client
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys

import pytest

from cl_metadata.fakeserver import FakeServer, Fault, Instance, SshKey, load_instance, parse_fault
from cl_metadata.fakeserver.cli import main as cli_main
from cl_metadata.fakeserver.drive import DriveError, write_drive
from cl_metadata.fakeserver.faults import DEFAULT_MALFORMED, FaultError
from cl_metadata.fakeserver.instance import InstanceError
from cl_metadata.fakeserver.render import Response, Route
from cl_metadata.fakeserver.render import openstack

SAMPLE = load_instance()
KEY_ALICE = SAMPLE.ssh_keys[0].key
KEY_DEPLOY = SAMPLE.ssh_keys[1].key
MINIMAL = Instance(instance_id="i-min")

EXPECTED_META_DATA = {
    "uuid": "5d3f8c2a-9b14-4e6f-a0c7-2e81b4d9f063",
    "hostname": "demo-1.example.internal",
    "name": "demo-1",
    "availability_zone": "nova",
    "project_id": "8f1c2d4e6a7b4c3d9e0f1a2b3c4d5e6f",
    "launch_index": 0,
    "public_keys": {"alice": KEY_ALICE + "\n", "deploy": KEY_DEPLOY + "\n"},
    "keys": [
        {"name": "alice", "type": "ssh", "data": KEY_ALICE + "\n"},
        {"name": "deploy", "type": "ssh", "data": KEY_DEPLOY + "\n"},
    ],
    "meta": {},
}


def fetch(server, path, method="GET", headers=None, body=None):
    """(status, headers, body) of one request on a fresh connection."""
    host, port = server.url.rsplit("/", 1)[1].rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response, response.read()
    finally:
        conn.close()


def raw_exchange(server, request: bytes) -> bytes:
    """Send raw bytes, read until the server closes; a reset raises ConnectionResetError."""
    port = int(server.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request)
        received = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return received
            received += chunk


@pytest.fixture
def sample_server():
    with FakeServer("openstack") as server:
        yield server


# ---------------------------------------------------------------------------------------------
# Instance description


def test_sample_has_valid_looking_ssh_public_keys():
    assert [k.name for k in SAMPLE.ssh_keys] == ["alice", "deploy"]
    for key, key_type in ((KEY_ALICE, b"ssh-ed25519"), (KEY_DEPLOY, b"ssh-rsa")):
        fields = key.split()
        blob = base64.b64decode(fields[1], validate=True)
        assert fields[0] == key_type.decode()
        assert struct.unpack(">I", blob[:4])[0] == len(key_type)
        assert blob[4:4 + len(key_type)] == key_type
    assert SAMPLE.hostname == "demo-1.example.internal"


def test_instance_unknown_key_is_rejected_with_the_key_named(tmp_path):
    path = tmp_path / "instance.yaml"
    path.write_text("instance-id: i-1\nhost-name: typo\n")
    with pytest.raises(InstanceError, match=r"unknown key\(s\) host-name") as err:
        load_instance(path)
    assert str(path) in str(err.value)
    assert err.value.exit_code == 2


@pytest.mark.parametrize("text, message", [
    ("uuid: x\n", "instance-id is required"),
    ("instance-id: 12345\n", "instance-id must be a string"),
    ("instance-id: i-1\nlocal-ipv4: 10.0.0.300\n", "local-ipv4 is not a valid IPv4"),
    ("instance-id: i-1\nssh-keys:\n  - name: a\n    key: k1\n  - name: a\n    key: k2\n", "unique"),
    ("instance-id: i-1\nssh-keys:\n  - name: a\n    kee: k1\n", r"ssh-keys\[0\]: unknown key"),
    ("- just a list\n", "expected a mapping"),
])
def test_instance_invalid_values_are_rejected(tmp_path, text, message):
    path = tmp_path / "instance.yaml"
    path.write_text(text)
    with pytest.raises(InstanceError, match=message):
        load_instance(path)


def test_cli_reports_bad_instance_with_exit_2(tmp_path, capsys):
    path = tmp_path / "instance.yaml"
    path.write_text("instance-id: i-1\nbogus: 1\n")
    assert cli_main(["--instance", str(path), "--write-drive", str(tmp_path / "d")]) == 2
    assert "unknown key(s) bogus" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()


# ---------------------------------------------------------------------------------------------
# OpenStack routes


@pytest.mark.parametrize("path, body", [
    ("/latest/meta-data/hostname", b"demo-1.example.internal"),
    ("/latest/meta-data/instance-id", b"i-0a1b2c3d4e5f60718"),
    ("/latest/meta-data/instance-type", b"m1.small"),
    ("/latest/meta-data/local-ipv4", b"10.0.1.15"),
    ("/latest/meta-data/public-ipv4", b"203.0.113.25"),
    ("/latest/meta-data/public-keys", b"0=alice\n1=deploy"),
    ("/latest/meta-data/public-keys/0/openssh-key", (KEY_ALICE + "\n").encode()),
    ("/latest/meta-data/public-keys/1/openssh-key", (KEY_DEPLOY + "\n").encode()),
    ("/openstack", b"2012-08-10\nlatest"),
    ("/openstack/latest/user_data", b"#cloud-config\nhostname: demo-1\n"),
])
def test_openstack_text_routes(sample_server, path, body):
    status, response, received = fetch(sample_server, path)
    assert (status, received) == (200, body)
    assert response.getheader("Content-Length") == str(len(body))


@pytest.mark.parametrize("version", ["2012-08-10", "latest"])
def test_openstack_meta_data_json(sample_server, version):
    status, response, body = fetch(sample_server, f"/openstack/{version}/meta_data.json")
    assert status == 200
    assert response.getheader("Content-Type") == "application/json"
    assert json.loads(body) == EXPECTED_META_DATA


@pytest.mark.parametrize("path", [
    "/latest/meta-data/public-ipv4",
    "/latest/meta-data/public-keys",
    "/latest/meta-data/public-keys/0/openssh-key",
    "/latest/meta-data/hostname",
    "/openstack/latest/user_data",
])
def test_absent_fields_answer_404(path):
    with FakeServer("openstack-metadata", MINIMAL) as server:
        assert fetch(server, path)[0] == 404
        status, _, body = fetch(server, "/openstack/latest/meta_data.json")
    assert status == 200
    assert json.loads(body) == {"launch_index": 0, "public_keys": {}, "keys": [], "meta": {}}


@pytest.mark.parametrize("path", ["/", "/latest/meta-data/", "/latest/meta-data/ami-id",
                                  "/openstack/2013-04-04/meta_data.json", "/openstack/"])
def test_unknown_paths_answer_404(sample_server, path):
    assert fetch(sample_server, path)[:1] == (404,)


def test_wrong_method_answers_405(sample_server):
    status, response, _ = fetch(sample_server, "/openstack", method="POST", body=b"x")
    assert status == 405
    assert response.getheader("Allow") == "GET"


def test_unknown_platform_and_listing(capsys):
    with pytest.raises(Exception, match="unknown platform 'nope'"):
        FakeServer("nope")
    assert cli_main(["--list-platforms"]) == 0
    listed = capsys.readouterr().out.split()
    from cl_metadata.fakeserver.render import platforms
    assert listed == sorted(platforms()) and {"openstack", "openstack-metadata"} <= set(listed)


def test_routes_enforce_required_headers_and_methods():
    server = FakeServer("openstack", MINIMAL)
    server.dispatcher.routes[("GET", "/computeMetadata/v1/x")] = Route(
        "/computeMetadata/v1/x", Response(body=b"value"), required_headers={"Metadata-Flavor": "Google"})
    server.dispatcher.routes[("PUT", "/token")] = Route(
        "/token", lambda req: Response(body=b"tok-" + req.body), method="PUT",
        required_headers={"X-Ttl": None})
    with server:
        assert fetch(server, "/computeMetadata/v1/x")[0] == 403
        assert fetch(server, "/computeMetadata/v1/x", headers={"Metadata-Flavor": "Other"})[0] == 403
        status, _, body = fetch(server, "/computeMetadata/v1/x", headers={"metadata-flavor": "Google"})
        assert (status, body) == (200, b"value")
        assert fetch(server, "/token", method="PUT", body=b"a")[0] == 403
        status, _, body = fetch(server, "/token", method="PUT", headers={"X-Ttl": "60"}, body=b"a")
        assert (status, body) == (200, b"tok-a")
        assert fetch(server, "/token")[0] == 405


# ---------------------------------------------------------------------------------------------
# Request log


def test_request_log_in_memory_and_jsonl(tmp_path):
    log = tmp_path / "requests.jsonl"
    with FakeServer("openstack", log_path=log) as server:
        fetch(server, "/latest/meta-data/hostname?x=1", headers={"User-Agent": "probe/1"})
        fetch(server, "/missing", method="POST", body=b'{"state": "ready"}',
              headers={"Content-Type": "application/json"})
        recorded = server.requests
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert lines == recorded
    assert len(recorded) == 2
    first, second = recorded
    assert (first["method"], first["path"], first["query"], first["status"]) == \
        ("GET", "/latest/meta-data/hostname", "x=1", 200)
    assert first["headers"]["User-Agent"] == "probe/1"
    assert first["headers"]["Host"].startswith("127.0.0.1:")
    assert (second["method"], second["path"], second["status"]) == ("POST", "/missing", 404)
    assert second["body"] == '{"state": "ready"}'
    assert second["headers"]["Content-Type"] == "application/json"
    assert first["fault"] is None and isinstance(first["time"], float)


def test_request_log_keeps_only_the_first_64_kib_of_a_body():
    with FakeServer("openstack", MINIMAL) as server:
        fetch(server, "/upload", method="POST", body=b"a" * (70 * 1024))
        assert server.requests[0]["body"] == "a" * (64 * 1024)


def test_latency_is_added_before_each_response():
    slept = []
    with FakeServer("openstack", latency=0.02, sleep=slept.append,
                    faults=[Fault("/openstack", "delay", 0.5)]) as server:
        fetch(server, "/latest/meta-data/hostname")
        fetch(server, "/openstack")
    assert slept == [0.02, pytest.approx(0.52)]


# ---------------------------------------------------------------------------------------------
# Faults


@pytest.mark.parametrize("spec, expected", [
    ("/latest/meta-data/hostname=status:503@2", Fault("/latest/meta-data/hostname", "status", "503", 2)),
    ("*=delay:0.5", Fault("*", "delay", "0.5")),
    ("/openstack/latest/meta_data.json=malformed", Fault("/openstack/latest/meta_data.json", "malformed")),
    ("/x=redirect:http://user@127.0.0.2:8080/a?b=c@1", Fault("/x", "redirect", "http://user@127.0.0.2:8080/a?b=c", 1)),
    ("/machine/?comp=health=status:429:7", Fault("/machine/?comp=health", "status", "429:7")),
    ("/latest/*=reset@3", Fault("/latest/*", "reset", None, 3)),
])
def test_parse_fault(spec, expected):
    fault = parse_fault(spec)
    assert fault == expected
    assert "," not in spec


def test_parsed_fault_arguments():
    assert parse_fault("/a=status:429:7").value == (429, "7")
    assert parse_fault("/a=oversize").value == 1024 * 1024 + 1
    assert parse_fault("/a=drip").value == 0.05
    assert parse_fault("/a=malformed").value == DEFAULT_MALFORMED


@pytest.mark.parametrize("spec", ["hostname=status:503", "/a=explode", "/a=status", "/a=status:99",
                                  "/a=delay", "/a=delay:-1", "/a=reset:1", "/a=redirect",
                                  "/a=status:503@0", "/a=oversize:big"])
def test_parse_fault_rejects_bad_specs(spec):
    with pytest.raises(FaultError):
        parse_fault(spec)


def test_status_fault_with_count_then_recovery():
    faults = [parse_fault("/latest/meta-data/hostname=status:503:2@2")]
    with FakeServer("openstack", faults=faults) as server:
        answers = [fetch(server, "/latest/meta-data/hostname") for _ in range(3)]
        other = fetch(server, "/latest/meta-data/instance-id")
        recorded = server.requests
    assert [a[0] for a in answers] == [503, 503, 200]
    assert answers[0][1].getheader("Retry-After") == "2"
    assert answers[2][2] == b"demo-1.example.internal"
    assert other[0] == 200
    assert [r["fault"] for r in recorded] == ["status", "status", None, None]


def test_faults_on_one_path_queue_in_order():
    faults = [Fault("/openstack", "status", 500, 1), Fault("/openstack", "empty", count=1),
              Fault("/openstack", "status", 404, 1)]
    with FakeServer("openstack", faults=faults) as server:
        answers = [fetch(server, "/openstack")[::2] for _ in range(4)]
    assert answers == [(500, b"Internal Server Error"), (200, b""), (404, b"Not Found"),
                       (200, b"2012-08-10\nlatest")]


def test_wildcard_and_prefix_fault_paths():
    faults = [Fault("/latest/*", "status", 418), Fault("*", "status", 502, 1)]
    with FakeServer("openstack", faults=faults) as server:
        assert fetch(server, "/latest/meta-data/hostname")[0] == 418
        assert fetch(server, "/openstack")[0] == 502
        assert fetch(server, "/openstack")[0] == 200


def test_reset_fault_aborts_the_connection():
    with FakeServer("openstack", faults=[Fault("/openstack", "reset", count=1)]) as server:
        with pytest.raises(ConnectionResetError):
            raw_exchange(server, b"GET /openstack HTTP/1.1\r\nHost: x\r\n\r\n")
        assert fetch(server, "/openstack")[0] == 200
        assert [(r["status"], r["fault"]) for r in server.requests] == [(None, "reset"), (200, None)]


def test_truncate_fault_declares_more_than_it_sends():
    with FakeServer("openstack", faults=[Fault("/latest/meta-data/hostname", "truncate", 5)]) as server:
        received = raw_exchange(server, b"GET /latest/meta-data/hostname HTTP/1.1\r\nHost: x\r\n\r\n")
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert b"\r\nContent-Length: 23\r\n" in head
    assert b"\r\nConnection: close" in head
    assert body == b"demo-"
    with FakeServer("openstack", faults=[Fault("*", "truncate")]) as server:
        with pytest.raises(http.client.IncompleteRead):
            fetch(server, "/openstack")


def test_redirect_fault_points_to_another_origin():
    target = "http://127.0.0.2:9/elsewhere"
    with FakeServer("openstack", faults=[parse_fault(f"/openstack=redirect:{target}")]) as server:
        status, response, body = fetch(server, "/openstack")
    assert (status, response.getheader("Location"), body) == (302, target, b"")


def test_malformed_fault_replaces_the_body():
    faults = [parse_fault("/openstack/latest/meta_data.json=malformed"),
              parse_fault("/openstack=malformed:<html>oops")]
    with FakeServer("openstack", faults=faults) as server:
        status, response, body = fetch(server, "/openstack/latest/meta_data.json")
        assert (status, body) == (200, DEFAULT_MALFORMED)
        assert response.getheader("Content-Type") == "application/json"
        assert fetch(server, "/openstack")[::2] == (200, b"<html>oops")
    with pytest.raises(ValueError):
        json.loads(DEFAULT_MALFORMED)


def test_oversize_fault_sends_that_many_bytes():
    with FakeServer("openstack", faults=[parse_fault("*=oversize:200000@1")]) as server:
        status, response, body = fetch(server, "/latest/meta-data/hostname")
        assert (status, response.getheader("Content-Length"), len(body)) == (200, "200000", 200000)
        assert fetch(server, "/latest/meta-data/hostname")[2] == b"demo-1.example.internal"


def test_empty_fault_answers_200_without_body():
    with FakeServer("openstack", faults=[parse_fault("/latest/meta-data/public-keys=empty")]) as server:
        status, response, body = fetch(server, "/latest/meta-data/public-keys")
    assert (status, response.getheader("Content-Length"), body) == (200, "0", b"")


def test_delay_and_drip_use_the_sleep_function():
    slept = []
    faults = [parse_fault("/openstack=delay:0.25@1"), parse_fault("/openstack=drip:0.01@1")]
    with FakeServer("openstack", faults=faults, sleep=slept.append) as server:
        assert fetch(server, "/openstack")[::2] == (200, b"2012-08-10\nlatest")
        assert fetch(server, "/openstack")[0] == 200
    assert slept == [0.25] + [0.01] * len(b"2012-08-10\nlatest")


# ---------------------------------------------------------------------------------------------
# Processes: --stdio and TCP


def run_module(*args, stdin=b""):
    return subprocess.run([sys.executable, "-m", "cl_metadata.fakeserver", *args], input=stdin,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=20)


def test_stdio_mode_serves_one_request_and_logs_it(tmp_path):
    log = tmp_path / "requests.jsonl"
    request = (b"GET /latest/meta-data/instance-id HTTP/1.1\r\nHost: 169.254.169.254\r\n"
               b"User-Agent: cl-metadata/0\r\nConnection: keep-alive\r\n\r\n"
               b"GET /openstack HTTP/1.1\r\nHost: 169.254.169.254\r\n\r\n")
    done = run_module("--stdio", "--log", str(log), stdin=request)
    assert done.returncode == 0
    assert done.stderr == b""
    head, _, body = done.stdout.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"HTTP/1.1 200 OK"
    assert b"Connection: close" in lines and b"Content-Length: 19" in lines
    assert body == b"i-0a1b2c3d4e5f60718"  # exactly one answer, the second request ignored
    (entry,) = [json.loads(line) for line in log.read_text().splitlines()]
    assert (entry["method"], entry["path"], entry["status"]) == ("GET", "/latest/meta-data/instance-id", 200)
    assert entry["headers"]["Host"] == "169.254.169.254"
    assert entry["headers"]["User-Agent"] == "cl-metadata/0"


def test_stdio_mode_fault_and_http10(tmp_path):
    log = tmp_path / "requests.jsonl"
    done = run_module("--stdio", "--log", str(log), "--fault", "/latest/meta-data/hostname=status:503:7@1",
                      stdin=b"GET /latest/meta-data/hostname HTTP/1.0\r\n\r\n")
    assert (done.returncode, done.stderr) == (0, b"")
    assert done.stdout.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
    assert b"\r\nRetry-After: 7\r\n" in done.stdout
    assert json.loads(log.read_text())["fault"] == "status"


def test_stdio_mode_misconfigured_still_silent_on_stderr(tmp_path):
    done = run_module("--stdio", "--instance", str(tmp_path / "missing.yaml"),
                      stdin=b"GET / HTTP/1.0\r\n\r\n")
    assert done.returncode == 2
    assert done.stderr == b""
    assert done.stdout.startswith(b"HTTP/1.1 500 ")
    done = run_module("--stdio", "--no-such-flag", stdin=b"GET / HTTP/1.0\r\n\r\n")
    assert (done.returncode, done.stderr) == (2, b"")


def test_tcp_mode_prints_loopback_url_and_stops_on_sigterm(tmp_path):
    log = tmp_path / "requests.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "cl_metadata.fakeserver", "--log", str(log)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        url = proc.stdout.readline().decode().strip()
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", url)
        port = int(url.rsplit(":", 1)[1])
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", "/latest/meta-data/local-ipv4")
        response = conn.getresponse()
        assert (response.status, response.read()) == (200, b"10.0.1.15")
        conn.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert json.loads(log.read_text())["path"] == "/latest/meta-data/local-ipv4"


@pytest.mark.parametrize("bind", ["0.0.0.0", "::", "192.0.2.1", "127.0.0.2", ""])
def test_binding_anything_but_loopback_is_refused(bind, capsys):
    with pytest.raises(ValueError, match="refusing to bind"):
        FakeServer("openstack", bind=bind)
    assert cli_main(["--bind", bind]) == 2
    assert "refusing to bind" in capsys.readouterr().err


def test_ipv6_loopback_bind():
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        server = FakeServer("openstack", bind="::1").start()
    except OSError:
        pytest.skip("::1 not available")
    with server:
        assert server.url.startswith("http://[::1]:")
        conn = http.client.HTTPConnection("::1", server.port, timeout=5)
        conn.request("GET", "/openstack")
        assert conn.getresponse().status == 200
        conn.close()


# ---------------------------------------------------------------------------------------------
# Config drives


def test_write_drive_directory_tree_and_contents(tmp_path):
    dest = tmp_path / "drive"
    assert cli_main(["--write-drive", str(dest)]) == 0
    files = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())
    assert files == ["ec2/latest/meta-data.json", "openstack/latest/meta_data.json",
                     "openstack/latest/network_data.json", "openstack/latest/user_data"]
    assert json.loads((dest / "openstack/latest/meta_data.json").read_text()) == EXPECTED_META_DATA
    assert json.loads((dest / "ec2/latest/meta-data.json").read_text()) == {
        "instance-id": "i-0a1b2c3d4e5f60718",
        "instance-type": "m1.small",
        "local-ipv4": "10.0.1.15",
        "public-ipv4": "203.0.113.25",
        "hostname": "demo-1.example.internal",
        "placement": {"availability-zone": "nova"},
    }
    assert (dest / "openstack/latest/user_data").read_bytes() == b"#cloud-config\nhostname: demo-1\n"


def test_drive_without_floating_ip_or_user_data(tmp_path):
    instance = Instance(instance_id="i-2", uuid="u-2", local_ipv4="10.0.0.2",
                        ssh_keys=(SshKey("k", "ssh-ed25519 AAAA k"),))
    files = openstack.drive_files(instance)
    assert sorted(files) == ["ec2/latest/meta-data.json", "openstack/latest/meta_data.json"]
    assert json.loads(files["ec2/latest/meta-data.json"]) == {
        "instance-id": "i-2", "local-ipv4": "10.0.0.2", "public-ipv4": ""}
    assert json.loads(files["openstack/latest/meta_data.json"])["public_keys"] == {"k": "ssh-ed25519 AAAA k\n"}


def test_write_drive_refuses_a_non_empty_directory(tmp_path):
    (tmp_path / "stale").write_text("x")
    with pytest.raises(DriveError, match="not an empty directory"):
        write_drive({"a": b""}, tmp_path, "dir", "config-2")


def test_missing_tool_names_the_debian_package(tmp_path):
    empty_path = str(tmp_path)
    for fmt, tool, package in (("vfat", "mkfs.vfat", "dosfstools"), ("iso", "xorriso", "xorriso"),
                               ("ext4", "mkfs.ext4", "e2fsprogs")):
        with pytest.raises(DriveError, match=f"{re.escape(tool)} not found.*{package}") as err:
            write_drive({"a": b"1"}, tmp_path / f"img.{fmt}", fmt, "config-2", search_path=empty_path)
        assert err.value.exit_code == 1
        assert not (tmp_path / f"img.{fmt}").exists()


def _tool(name):
    return shutil.which(name, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")


def _read_image_file(fmt, image, relpath, tmp_path):
    if fmt == "ext4":
        out = subprocess.run([_tool("debugfs"), "-R", f"cat /{relpath}", str(image)],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, check=True)
        return out.stdout
    if fmt == "vfat":
        out = subprocess.run([_tool("mtype"), "-i", str(image), f"::/{relpath}"],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, check=True)
        return out.stdout
    target = tmp_path / ("extracted-" + relpath.replace("/", "_"))
    subprocess.run([_tool("xorriso"), "-osirrox", "on", "-indev", str(image), "-extract",
                    f"/{relpath}", str(target)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   check=True)
    return target.read_bytes()


@pytest.mark.parametrize("fmt, tools", [("ext4", ("mkfs.ext4", "debugfs")),
                                        ("vfat", ("mkfs.vfat", "mcopy", "mtype")),
                                        ("iso", ("xorriso",))])
def test_write_drive_image(tmp_path, fmt, tools):
    missing = [t for t in tools if _tool(t) is None]
    if missing:
        pytest.skip(f"missing {', '.join(missing)}")
    image = tmp_path / f"config-2.{fmt}"
    assert cli_main(["--write-drive", str(image), "--drive-format", fmt]) == 0
    blkid = _tool("blkid")
    if blkid:
        label = subprocess.run([blkid, "-o", "value", "-s", "LABEL", str(image)],
                               stdout=subprocess.PIPE, check=False).stdout.strip()
        assert label == b"config-2"
    assert sorted(p.name for p in tmp_path.iterdir()) == [image.name]  # no staging left behind
    meta = _read_image_file(fmt, image, "openstack/latest/meta_data.json", tmp_path)
    assert json.loads(meta) == EXPECTED_META_DATA
    user_data = _read_image_file(fmt, image, "openstack/latest/user_data", tmp_path)
    assert user_data == b"#cloud-config\nhostname: demo-1\n"


# --- `-- COMMAND`: serve while a command runs ------------------------------------------------

def test_command_mode_serves_while_the_command_runs_and_passes_its_status(tmp_path):
    log = tmp_path / "requests.jsonl"
    probe = ("import os, sys, urllib.request; url = os.environ['CL_METADATA_ENDPOINT']; "
             "assert url.startswith('http://127.0.0.1:'), url; "
             "body = urllib.request.urlopen(url + '/latest/meta-data/instance-id').read(); "
             "sys.exit(7 if body == b'i-0a1b2c3d4e5f60718' else 1)")
    result = subprocess.run([sys.executable, "-m", "cl_metadata.fakeserver", "--platform",
                             "openstack-metadata", "--log", str(log), "--",
                             sys.executable, "-c", probe], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 7, result.stderr  # the command's own status
    assert [json.loads(line)["path"] for line in log.read_text().splitlines()] == [
        "/latest/meta-data/instance-id"]


@pytest.mark.parametrize("command, status", [(["/nonexistent/cmd"], 127),
                                             (["sh", "-c", "kill -9 $$"], 137)])
def test_command_mode_reports_a_command_that_did_not_run_or_was_killed(command, status):
    result = subprocess.run([sys.executable, "-m", "cl_metadata.fakeserver", "--", *command],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == status, result.stderr


def test_command_mode_is_refused_with_the_other_modes():
    for mode in (["--stdio"], ["--list-platforms"]):
        result = subprocess.run([sys.executable, "-m", "cl_metadata.fakeserver", *mode, "--",
                                 "true"], capture_output=True, text=True, timeout=60)
        assert result.returncode == 2, mode
        if mode != ["--stdio"]:  # --stdio never writes to stderr (QEMU's guestfwd reads it)
            assert "-- COMMAND serves on TCP" in result.stderr
