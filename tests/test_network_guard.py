"""The suite's network guard (tests/network_guard/sitecustomize.py) holds in this process and in
every Python the tests start: nothing beyond loopback, no name resolved but localhost."""

import errno
import socket
import subprocess
import sys

import pytest

from conftest import run_agent

PROBE = """\
import errno, socket
results = []
for family, address in ((socket.AF_INET, ("169.254.169.254", 80)),
                        (socket.AF_INET6, ("fd00:ec2::254", 80, 0, 0)),
                        (socket.AF_INET, ("10.0.0.1", 80))):
    s = socket.socket(family)
    results.append(s.connect_ex(address) == errno.ENETUNREACH)
    s.close()
try:
    socket.getaddrinfo("metadata.google.internal", 80)
    results.append(False)
except socket.gaierror:
    results.append(True)
print(all(results))
"""


@pytest.mark.parametrize("address", [("169.254.169.254", 80), ("100.100.100.200", 80),
                                     ("168.63.129.16", 80), ("192.0.2.1", 443)])
def test_this_process_cannot_connect_beyond_loopback(address):
    s = socket.socket()
    with pytest.raises(OSError) as raised:
        s.connect(address)
    s.close()
    assert raised.value.errno == errno.ENETUNREACH


def test_ipv6_and_udp_beyond_loopback_are_refused_too():
    s = socket.socket(socket.AF_INET6)
    assert s.connect_ex(("fe80::a9fe:a9fe", 80, 0, 2)) == errno.ENETUNREACH
    s.close()
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with pytest.raises(OSError):
        u.sendto(b"x", ("169.254.169.254", 53))
    u.close()


def test_loopback_still_works(fake_server):
    server = fake_server("openstack")
    s = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    s.close()
    assert socket.getaddrinfo("localhost", 80)


def test_every_python_the_tests_start_is_guarded():
    result = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                            timeout=60)
    assert (result.returncode, result.stdout, result.stderr) == (0, "True\n", "")


def test_an_agent_without_an_override_never_leaves_the_machine(agent_env, tmp_path):
    """The agent run as the tests run it, pointed at nothing: the guard answers for the real
    address, so the run fails fast on 'network is unreachable' instead of sending a packet."""
    result = run_agent("--provider", "aws", "--attributes", tmp_path / "coreos", "--timeout", "2",
                       env=agent_env)
    assert result.returncode == 1
    assert "unreachable" in result.stderr or "no connection" in result.stderr
    assert not (tmp_path / "coreos").exists()
