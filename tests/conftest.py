"""Fixtures shared by the suite: the fake metadata server, the real agent process, and a
throwaway user for the privilege-dropping SSH writer (root only)."""

from __future__ import annotations

import os
import pathlib
import pwd
import shutil
import subprocess
import sys
import tempfile
import uuid

import pytest

# Before anything else: this process and every Python it starts reach nothing beyond loopback
# (tests/network_guard/sitecustomize.py says how), whatever a test forgets to override.
_GUARD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "network_guard")
if _GUARD not in os.environ.get("PYTHONPATH", "").split(os.pathsep):
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (_GUARD, os.environ.get("PYTHONPATH", "")) if p)


def _install_network_guard() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "cl_metadata_test_network_guard", os.path.join(_GUARD, "sitecustomize.py"))
    spec.loader.exec_module(importlib.util.module_from_spec(spec))


_install_network_guard()

from cl_metadata import registry  # noqa: E402
from cl_metadata.context import Context  # noqa: E402
from cl_metadata.sources.deadline import Deadline  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IS_ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not IS_ROOT, reason="needs root (creates a throwaway user)")


@pytest.fixture
def fake_server():
    """Factory: ``fake_server("openstack", faults=[...], instance=...)`` → a started FakeServer."""
    from cl_metadata.fakeserver.server import FakeServer

    servers = []

    def start(platform="openstack", **kwargs):
        server = FakeServer(platform, **kwargs)
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def make_context(server=None, *, timeout=5.0, environ=None, **http):
    """A Context whose HTTP client talks to ``server`` and retries fast (tests only)."""
    env = dict(environ or {})
    if server is not None:
        env["CL_METADATA_ENDPOINT"] = server.url
    context = Context(deadline=Deadline(timeout), environ=env)
    if http or server is not None:
        from cl_metadata.sources.http import HttpClient

        options = {"backoff_initial": 0.01, "backoff_max": 0.05}
        options.update(http)
        context._http = HttpClient(deadline=context.deadline, endpoint=context.endpoint,
                                   **options)
    return context


@pytest.fixture
def agent_env(tmp_path):
    """Environment for the real agent process: no proxies, a kernel command line file that
    names no platform, no config drive unless a test sets one."""
    cmdline = tmp_path / "cmdline"
    cmdline.write_text("root=/dev/vda console=ttyS0\n")
    env = {key: value for key, value in os.environ.items()
           if not key.startswith("CL_METADATA_") and key not in ("NOTIFY_SOCKET", "JOURNAL_STREAM")}
    env["CL_METADATA_CMDLINE"] = str(cmdline)
    env["CL_METADATA_TIMEOUT"] = "10"
    return env


def run_agent(*args, env, timeout=60):
    """Run the real ``cl-metadata`` process (``python -m cl_metadata``)."""
    return subprocess.run([sys.executable, "-m", "cl_metadata", *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=timeout)


# Platforms whose provider reads a drive (qemu: its fw_cfg entry), for tests that set up every
# provider's source.
DRIVE_PLATFORMS = {pid for pid in registry.BUILTIN
                   if "config drive" in registry.get(pid).provider.source or pid == "qemu"}

# ``python -c AGENT_LAUNCHER ARGS…``: the agent with the three things a test machine lacks — a
# DHCP lease under $TEST_DHCP_ROOT (cloudstack-metadata), an eth1 (vagrant-virtualbox reads
# "lo"), and a journal socket that must not be used.
AGENT_LAUNCHER = (
    "import os, sys\n"
    "import cl_metadata.sources.dhcp as dhcp, cl_metadata.journal as journal\n"
    "import cl_metadata.providers.vagrant_virtualbox as vagrant\n"
    "dhcp.ROOT = os.environ['TEST_DHCP_ROOT']\n"
    "vagrant.INTERFACE = 'lo'\n"
    "journal.JOURNALD_SOCKET = '/nonexistent/journal/socket'\n"
    "from cl_metadata.cli import main\n"
    "sys.exit(main(sys.argv[1:]))\n")

NOBODY = 65534


@pytest.fixture(scope="session")
def nobody_can_run_the_agent():
    """Skip unless uid 65534 can start the agent from this checkout: a clone under a private
    directory (``mktemp -d`` makes it 0700) is out of reach for any other user."""
    if not IS_ROOT:
        pytest.skip("needs root (runs the agent as nobody)")
    try:
        result = subprocess.run([sys.executable, "-c", "import cl_metadata.cli"],
                                capture_output=True, text=True, timeout=60,
                                user=NOBODY, group=NOBODY, extra_groups=[])
    except PermissionError:  # the interpreter itself is out of reach: the exec failed
        result = None
    if result is None or result.returncode != 0:
        pytest.skip("uid 65534 cannot read this checkout or its interpreter "
                    f"({sys.executable}): a parent directory is private")


@pytest.fixture
def throwaway_user():
    """A real user with its own home (root only); removed afterwards."""
    if not IS_ROOT:
        pytest.skip("needs root to create a user")
    name = "clmt" + uuid.uuid4().hex[:8]
    # pytest's own temp tree is 0700 root: a home inside it could not be reached by the user
    base = pathlib.Path(tempfile.mkdtemp(prefix="cl-metadata-homes-", dir="/var/tmp"))
    os.chmod(base, 0o755)
    home = base / name
    subprocess.run(["useradd", "--no-create-home", "--home-dir", str(home), "--shell",
                    "/usr/sbin/nologin", "--user-group", name], check=True)
    entry = pwd.getpwnam(name)
    home.mkdir(mode=0o755)
    os.chown(home, entry.pw_uid, entry.pw_gid)
    yield entry
    subprocess.run(["userdel", name], check=False)
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(autouse=True)
def _reset_agent_logger():
    """cli.main() configures the agent's logger (own handler, no propagation); give every test
    the default again so caplog sees the records."""
    import logging

    yield
    logger = logging.getLogger("cl_metadata")
    logger.handlers[:] = []
    logger.propagate = True
    logger.setLevel(logging.NOTSET)
