"""sd_notify and journal output: the pure-Python fallback and the real systemd-python module.

A datagram socket in a temporary directory (or the abstract namespace) stands in for systemd's
notify socket; for the native journal a private mount namespace puts a test socket at journald's
fixed path, so the host's journal is never written.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import uuid
from typing import Dict

import pytest

from cl_metadata import journal, log

KEY_PATH = "/home/core/.ssh/authorized_keys.d/cl-metadata"


def native_available(name: str) -> bool:
    journal._native_modules.pop(name, None)
    return journal.load_native(name) is not None


@pytest.fixture(autouse=True)
def _isolated(monkeypatch):
    """No inherited systemd environment, fresh module cache, logger restored afterwards."""
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    monkeypatch.setattr(journal, "_native_modules", {})
    saved = (list(log.log.handlers), log.log.level, log.log.propagate)
    yield
    log.log.handlers[:], log.log.level, log.log.propagate = saved


@pytest.fixture
def fallback_only(monkeypatch):
    monkeypatch.setattr(journal, "load_native", lambda name: None)


@pytest.fixture
def native_only(monkeypatch):
    if not native_available("systemd.daemon"):
        pytest.skip("systemd-python is not importable (pip install systemd-python, "
                    "needs libsystemd-dev and pkg-config)")


class Receiver:
    """A bound AF_UNIX datagram socket standing in for systemd's $NOTIFY_SOCKET."""

    def __init__(self, address, env_value: str):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.sock.settimeout(5)
        self.env_value = env_value

    def receive(self) -> bytes:
        return self.sock.recv(65536)

    def assert_empty(self) -> None:
        self.sock.setblocking(False)
        with pytest.raises(BlockingIOError):
            self.sock.recv(65536)


@pytest.fixture(params=["path", "abstract"])
def receiver(request, monkeypatch):
    if request.param == "path":
        # short directory: socket paths are limited to 108 bytes
        directory = tempfile.mkdtemp(prefix="clm-notify-")
        request.addfinalizer(lambda: shutil.rmtree(directory, ignore_errors=True))
        path = os.path.join(directory, "notify")
        rec = Receiver(path, path)
    else:
        name = f"cl-metadata-test-{uuid.uuid4().hex}"
        rec = Receiver("\0" + name, "@" + name)
    request.addfinalizer(rec.sock.close)
    monkeypatch.setenv("NOTIFY_SOCKET", rec.env_value)
    return rec


# --- notify ------------------------------------------------------------------------------------

def test_fallback_status_is_one_exact_datagram(fallback_only, receiver):
    log.status("fetching attributes from openstack")
    assert receiver.receive() == b"STATUS=fetching attributes from openstack"
    assert journal.notify("READY=1") is True
    assert receiver.receive() == b"READY=1"
    receiver.assert_empty()


def test_status_text_cannot_inject_another_assignment(fallback_only, receiver):
    log.status("provider said\nREADY=1\r\nMAINPID=1")
    assert receiver.receive() == b"STATUS=provider said READY=1 MAINPID=1"


def test_without_notify_socket_nothing_is_sent(fallback_only, monkeypatch):
    def no_socket(*args, **kwargs):
        raise AssertionError("a socket was created without $NOTIFY_SOCKET")

    monkeypatch.setattr(socket, "socket", no_socket)
    log.status("fetching")  # no error
    assert journal.notify("READY=1") is False


@pytest.mark.parametrize("value", ["/nonexistent/cl-metadata/notify", "@cl-metadata-nobody-listens",
                                   "vsock:2:1234", "relative/notify"])
def test_unreachable_or_unsupported_socket_is_not_an_error(fallback_only, monkeypatch, value):
    monkeypatch.setenv("NOTIFY_SOCKET", value)
    log.status("fetching")
    assert journal.notify("READY=1") is False


def test_native_notify_sends_the_same_datagrams(native_only, receiver):
    # systemd.daemon.notify (libsystemd's sd_notify) reads $NOTIFY_SOCKET itself
    log.status("fetching attributes")
    assert receiver.receive() == b"STATUS=fetching attributes"
    assert "systemd.daemon" in sys.modules
    assert journal.notify("READY=1") is True
    assert receiver.receive() == b"READY=1"


# --- stderr lines --------------------------------------------------------------------------------

def journal_stream_value(f) -> str:
    st = os.fstat(f.fileno())
    return f"{st.st_dev}:{st.st_ino}"


def emit_sample(verbosity: int, stream, environ) -> None:
    log.setup(verbosity, stream=stream, environ=environ)
    log.log.debug("looking at the kernel command line")
    log.event("ssh-keys-written", "wrote SSH keys for core", user="core", path=KEY_PATH)
    log.log.warning("key 2 skipped: unknown type")
    log.log.error("GET /latest/meta-data: status 503")


def test_journal_stream_lines_carry_syslog_priority_prefixes(fallback_only, tmp_path):
    with open(tmp_path / "stderr", "w+") as f:
        emit_sample(1, f, {"JOURNAL_STREAM": journal_stream_value(f)})
        f.flush()
        assert (tmp_path / "stderr").read_text() == (
            "<7>looking at the kernel command line\n"
            "<6>wrote SSH keys for core\n"
            "<4>key 2 skipped: unknown type\n"
            "<3>GET /latest/meta-data: status 503\n")


@pytest.mark.parametrize("journal_stream", [None, "1:2", "garbage"])
def test_plain_lines_when_stderr_is_not_the_journal(fallback_only, tmp_path, journal_stream):
    environ = {} if journal_stream is None else {"JOURNAL_STREAM": journal_stream}
    with open(tmp_path / "stderr", "w+") as f:
        emit_sample(1, f, environ)  # -v: at default verbosity a terminal gets warnings only
    assert (tmp_path / "stderr").read_text() == (
        "cl-metadata: debug: looking at the kernel command line\n"
        "cl-metadata: wrote SSH keys for core\n"
        "cl-metadata: warning: key 2 skipped: unknown type\n"
        "cl-metadata: error: GET /latest/meta-data: status 503\n")


def test_systemd_python_is_not_imported_outside_systemd(tmp_path):
    code = ("import sys\nfrom cl_metadata import log\nlog.setup(1)\nlog.status('x')\n"
            "log.event('attributes-written', 'wrote attributes', path='/run/metadata/coreos')\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'systemd'))\n")
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "JOURNAL_STREAM")}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "[]\n"
    assert "wrote attributes" in result.stderr


# --- structured journal fields -------------------------------------------------------------------

def test_message_ids_are_stable():
    # journalctl filters and console hints match these: changing one is a breaking change
    assert journal.MESSAGE_IDS == {
        "attributes-written": "15ee4fb08adb4087abc53ef8c5f78735",
        "ssh-keys-written": "0f7d7a502f2d433caa1323440a6b4190",  # Afterburn's
        "ssh-keys-removed": "f8b91c53f5544868a3a10d0dcf68e9ea",  # Afterburn's
        "check-in-sent": "c10609fa69d34b3cb3f384ab520c2dbc",
    }


def test_event_fields_name_user_and_path():
    assert journal.event_fields("ssh-keys-removed", {"user": "core", "path": KEY_PATH}) == {
        "MESSAGE_ID": "f8b91c53f5544868a3a10d0dcf68e9ea",
        "CL_METADATA_EVENT": "ssh-keys-removed",
        "CL_METADATA_USER": "core",
        "CL_METADATA_PATH": KEY_PATH,
        # what Fedora CoreOS's console helper reads from Afterburn's entries
        "AFTERBURN_USER_NAME": "core",
        "AFTERBURN_PATH": KEY_PATH,
    }
    # other milestones carry no Afterburn fields
    assert "AFTERBURN_PATH" not in journal.event_fields("attributes-written",
                                                        {"path": "/run/metadata/coreos"})
    # unknown kinds get no MESSAGE_ID; malformed field names are dropped, not mangled
    assert journal.event_fields("other", {"Bad Name": "x", "_hidden": "y", "provider": "aws"}) == {
        "CL_METADATA_EVENT": "other", "CL_METADATA_PROVIDER": "aws"}


class FakeJournalModule:
    def __init__(self, error: Exception = None):
        self.sent = []
        self.error = error

    def send(self, MESSAGE, **fields):  # noqa: N803 (systemd.journal.send's signature)
        if self.error:
            raise self.error
        assert isinstance(fields["CODE_LINE"], int)  # systemd-python formats it with {:d}
        self.sent.append(dict(fields, MESSAGE=MESSAGE))


def test_journal_handler_sends_structured_entries(tmp_path):
    fake = FakeJournalModule()
    with open(tmp_path / "stderr", "w+") as f:
        stream_handler = logging.StreamHandler(f)
        log.setup(0, stream=f, environ={"JOURNAL_STREAM": journal_stream_value(f)})
        log.log.handlers[:] = [journal.JournalHandler(fake, fallback=stream_handler)]
        log.event("check-in-sent", "reported the boot to azure", provider="azure")
        log.log.warning("slow metadata service")
    assert (tmp_path / "stderr").read_text() == ""
    first, second = fake.sent
    assert {k: v for k, v in first.items() if not k.startswith("CODE_")} == {
        "MESSAGE": "reported the boot to azure", "PRIORITY": "6",
        "SYSLOG_IDENTIFIER": "cl-metadata", "MESSAGE_ID": "c10609fa69d34b3cb3f384ab520c2dbc",
        "CL_METADATA_EVENT": "check-in-sent", "CL_METADATA_PROVIDER": "azure"}
    assert first["CODE_FILE"] == __file__ and first["CODE_FUNC"] == (
        "test_journal_handler_sends_structured_entries")
    assert second["PRIORITY"] == "4" and "MESSAGE_ID" not in second


def test_journal_handler_falls_back_to_prefixed_lines(fallback_only, tmp_path):
    fake = FakeJournalModule(error=OSError(2, "No such file or directory"))
    with open(tmp_path / "stderr", "w+") as f:
        environ = {"JOURNAL_STREAM": journal_stream_value(f)}
        log.setup(0, stream=f, environ=environ)
        log.log.handlers[:] = [journal.JournalHandler(fake, fallback=log.log.handlers[0])]
        log.event("attributes-written", "wrote /run/metadata/coreos", path="/run/metadata/coreos")
    assert (tmp_path / "stderr").read_text() == "<6>wrote /run/metadata/coreos\n"


# --- the real systemd.journal, in a private mount namespace -------------------------------------

CHILD = r"""
import json, os, socket, subprocess, sys
from cl_metadata import log
subprocess.run(["mount", "-t", "tmpfs", "tmpfs", "/run"], check=True)
stream = open(sys.argv[1], "w")
st = os.fstat(stream.fileno())
os.environ["JOURNAL_STREAM"] = "%d:%d" % (st.st_dev, st.st_ino)
# journald absent: libsystemd would drop entries silently, so the prefixed lines are used
log.setup(0, stream=stream)
handlers = [type(log.log.handlers[0]).__name__]
log.event("ssh-keys-removed", "removed SSH keys for core", user="core", path=sys.argv[2])
stream.flush()
os.makedirs("/run/systemd/journal")
sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
sock.bind("/run/systemd/journal/socket")
sock.settimeout(5)
log.setup(0, stream=stream)
handlers.append(type(log.log.handlers[0]).__name__)
log.event("ssh-keys-written", "wrote SSH keys for core", user="core", path=sys.argv[2])
datagram = sock.recv(1 << 20)
print(json.dumps({"handlers": handlers, "datagram": datagram.hex()}))
"""


def parse_native_datagram(data: bytes) -> Dict[str, str]:
    """journald's native protocol: KEY=value lines, or KEY\\n + 64-bit LE length + data + \\n."""
    fields: Dict[str, str] = {}
    while data:
        line, _, rest = data.partition(b"\n")
        if b"=" in line:
            key, _, value = line.partition(b"=")
            data = rest
        else:
            key = line
            (size,) = struct.unpack("<Q", rest[:8])
            value, data = rest[8:8 + size], rest[9 + size:]
        fields[key.decode()] = value.decode()
    return fields


def test_native_journal_entry_through_systemd_python(tmp_path):
    if not native_available("systemd.journal"):
        pytest.skip("systemd-python is not importable")
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare for a private mount namespace")
    stderr_file = tmp_path / "stderr"
    result = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", sys.executable, "-c", CHILD,
         str(stderr_file), KEY_PATH], capture_output=True, text=True, timeout=60)
    if result.returncode != 0 and "unshare failed" in result.stderr:
        pytest.skip(f"no mount namespace here: {result.stderr.strip()}")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["handlers"] == ["StreamHandler", "JournalHandler"]
    fields = parse_native_datagram(bytes.fromhex(report["datagram"]))
    assert {k: v for k, v in fields.items() if not k.startswith("CODE_")} == {
        "MESSAGE": "wrote SSH keys for core", "PRIORITY": "6",
        "SYSLOG_IDENTIFIER": "cl-metadata", "MESSAGE_ID": "0f7d7a502f2d433caa1323440a6b4190",
        "CL_METADATA_EVENT": "ssh-keys-written", "CL_METADATA_USER": "core",
        "CL_METADATA_PATH": KEY_PATH, "AFTERBURN_USER_NAME": "core", "AFTERBURN_PATH": KEY_PATH}
    assert fields["CODE_FILE"] == "<string>"  # the caller of log.event, not our handler
    assert stderr_file.read_text() == "<6>removed SSH keys for core\n"


# --- the pure-Python native protocol (no systemd-python) ----------------------------------------

@pytest.fixture
def journald_socket(monkeypatch):
    """A datagram socket standing in for journald's, at a path of our own."""
    directory = tempfile.mkdtemp(prefix="clm-journal-")
    path = os.path.join(directory, "socket")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(5)
    monkeypatch.setattr(journal, "JOURNALD_SOCKET", path)
    yield sock
    sock.close()
    shutil.rmtree(directory, ignore_errors=True)


def test_without_systemd_python_ssh_key_entries_still_carry_afterburn_fields(
        fallback_only, journald_socket, tmp_path):
    with open(tmp_path / "stderr", "w+") as f:
        log.setup(0, stream=f, environ={"JOURNAL_STREAM": journal_stream_value(f)})
        assert isinstance(log.log.handlers[0], journal.JournalHandler)
        log.event("ssh-keys-written", "wrote 1 ssh keys for core", user="core", path=KEY_PATH)
    fields = parse_native_datagram(journald_socket.recv(1 << 20))
    assert {k: v for k, v in fields.items() if not k.startswith("CODE_")} == {
        "MESSAGE": "wrote 1 ssh keys for core", "PRIORITY": "6",
        "SYSLOG_IDENTIFIER": "cl-metadata", "MESSAGE_ID": "0f7d7a502f2d433caa1323440a6b4190",
        "CL_METADATA_EVENT": "ssh-keys-written", "CL_METADATA_USER": "core",
        "CL_METADATA_PATH": KEY_PATH, "AFTERBURN_USER_NAME": "core", "AFTERBURN_PATH": KEY_PATH}
    assert fields["CODE_FUNC"] == (
        "test_without_systemd_python_ssh_key_entries_still_carry_afterburn_fields")
    assert (tmp_path / "stderr").read_text() == ""  # the entry went to journald, not stderr


def test_native_datagram_frames_a_value_with_a_newline():
    data = journal.encode_entry({"MESSAGE": "two\nlines", "PRIORITY": "5"})
    assert data == b"MESSAGE\n" + struct.pack("<Q", 9) + b"two\nlines\nPRIORITY=5\n"
    assert parse_native_datagram(data) == {"MESSAGE": "two\nlines", "PRIORITY": "5"}


def test_unreachable_journald_socket_falls_back_to_prefixed_lines(fallback_only, monkeypatch,
                                                                 tmp_path):
    stale = tmp_path / "socket"
    stale.write_text("")  # exists, but nobody listens: the send fails
    monkeypatch.setattr(journal, "JOURNALD_SOCKET", str(stale))
    with open(tmp_path / "stderr", "w+") as f:
        log.setup(0, stream=f, environ={"JOURNAL_STREAM": journal_stream_value(f)})
        log.event("ssh-keys-removed", "removed the key fragment of core", user="core",
                  path=KEY_PATH)
        log.notice("no platform; nothing to do")
    assert (tmp_path / "stderr").read_text() == (
        "<6>removed the key fragment of core\n<5>no platform; nothing to do\n")
