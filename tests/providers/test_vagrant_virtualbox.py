"""vagrant-virtualbox: the local hostname and an interface's first IPv4 address (``lo`` in
tests), the bounded wait (fake clock), no network and no ``requests``, the real process."""

import socket
import subprocess
import sys

import pytest

from cl_metadata.outputs import envfile
from cl_metadata.outputs import hostname as hostnames
from cl_metadata.context import Context
from cl_metadata.sources.deadline import Deadline
from cl_metadata.errors import MetadataError
from cl_metadata.providers import vagrant_virtualbox as vagrant
from cl_metadata.providers.vagrant_virtualbox import VagrantVirtualBoxProvider

ABSENT = "clm-absent0"  # no such interface
# The agent process with the interface (and wait) set by the test: a test-only prelude, the
# process is otherwise the real one.
PRELUDE = ("import os, cl_metadata.providers.vagrant_virtualbox as v; "
           "v.INTERFACE = os.environ['TEST_INTERFACE']; v.WAIT_LIMIT = 0.0; "
           "from cl_metadata.cli import run; run()")


class FakeTime:
    def __init__(self):
        self.now, self.sleeps = 50.0, []

    def clock(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


def provider():
    return VagrantVirtualBoxProvider(Context(deadline=Deadline(5), environ={}))


def test_attributes_both_prefixes(monkeypatch):
    monkeypatch.setattr(vagrant, "INTERFACE", "lo")
    attributes = provider().attributes()
    host = socket.gethostname()
    assert attributes == {"VAGRANT_VIRTUALBOX_HOSTNAME": host,
                          "VAGRANT_VIRTUALBOX_PRIVATE_IPV4": "127.0.0.1"}
    for prefix in ("COREOS", "AFTERBURN"):
        assert envfile.render(attributes, prefix)[0].decode() == (
            f"{prefix}_VAGRANT_VIRTUALBOX_HOSTNAME={envfile.quote(host)}\n"
            f"{prefix}_VAGRANT_VIRTUALBOX_PRIVATE_IPV4=127.0.0.1\n")


def test_hostname_is_the_local_one_and_needs_no_interface(monkeypatch):
    monkeypatch.setattr(vagrant, "INTERFACE", ABSENT)
    assert provider().hostname() == socket.gethostname()
    assert provider().features == {"attributes", "hostname"}


def test_interface_address():
    assert vagrant.interface_ipv4("lo") == "127.0.0.1"
    assert vagrant.interface_ipv4(ABSENT) is None


def test_absent_interface_is_polled_within_the_limit_then_fatal():
    fake = FakeTime()
    with pytest.raises(MetadataError, match=f"{ABSENT} was not found") as info:
        vagrant.wait_for_ipv4(ABSENT, deadline=Deadline(600, clock=fake.clock), limit=60,
                              interval=2, sleep=fake.sleep, clock=fake.clock)
    assert fake.sleeps == [2] * 30  # upstream's 30 tries 2 s apart, as a time bound
    assert info.value.source == f"interface {ABSENT}"


def test_the_deadline_shortens_the_wait():
    fake = FakeTime()
    with pytest.raises(MetadataError):
        vagrant.wait_for_ipv4(ABSENT, deadline=Deadline(5, clock=fake.clock), limit=60,
                              interval=2, sleep=fake.sleep, clock=fake.clock)
    assert fake.sleeps == [2, 2]


def test_an_address_that_appears_while_waiting_is_used(monkeypatch):
    answers = iter([None, None, "192.168.56.10"])
    monkeypatch.setattr(vagrant, "interface_ipv4", lambda name: next(answers))
    fake = FakeTime()
    assert vagrant.wait_for_ipv4("eth1", deadline=Deadline(60, clock=fake.clock), limit=60,
                                 interval=2, sleep=fake.sleep, clock=fake.clock) == "192.168.56.10"
    assert fake.sleeps == [2, 2]


def test_no_requests_import_and_no_http_client():
    code = ("import sys\n"
            "import cl_metadata.providers.vagrant_virtualbox as v\n"
            "from cl_metadata.context import Context\n"
            "from cl_metadata.sources.deadline import Deadline\n"
            "v.INTERFACE = 'lo'\n"
            "context = Context(deadline=Deadline(5), environ={})\n"
            "p = v.VagrantVirtualBoxProvider(context)\n"
            "print(p.attributes()['VAGRANT_VIRTUALBOX_PRIVATE_IPV4'], p.hostname() is not None)\n"
            "print('requests' in sys.modules, context._http)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60)
    assert result.stdout == "127.0.0.1 True\nFalse None\n", result.stderr


def run_agent_on(interface, *args, env):
    env = dict(env, TEST_INTERFACE=interface)
    return subprocess.run([sys.executable, "-c", PRELUDE, *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=60)


def test_real_process(agent_env, tmp_path):
    agent_env["CL_METADATA_ENDPOINT"] = "http://127.0.0.1:9"  # would fail loudly if used
    attributes, hostname = tmp_path / "attributes", tmp_path / "hostname"
    result = run_agent_on("lo", "--provider", "vagrant-virtualbox", "--attributes", attributes,
                          "--hostname", hostname, env=agent_env)
    assert result.returncode == 0, result.stderr
    host = socket.gethostname()
    assert attributes.read_text() == (
        f"COREOS_VAGRANT_VIRTUALBOX_HOSTNAME={envfile.quote(host)}\n"
        "COREOS_VAGRANT_VIRTUALBOX_PRIVATE_IPV4=127.0.0.1\n")
    assert hostname.read_text() == hostnames.normalize(host) + "\n"

    result = run_agent_on(ABSENT, "--provider", "vagrant-virtualbox", "--attributes",
                          tmp_path / "other", env=agent_env)
    assert result.returncode == 1
    assert f"vagrant-virtualbox: interface {ABSENT}: {ABSENT} was not found" in result.stderr
    assert not (tmp_path / "other").exists()
