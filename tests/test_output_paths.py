"""Output paths are checked before the platform is asked: the real agent process refuses a
symlink, FIFO, device or directory at an output path, a missing directory outside /run and a
directory it cannot write, with one line, exit 1, zero requests and every file as it was;
``-`` (and ``/dev/stdout``, ``/proc/self/fd/1``) prints to standard output."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
import uuid

import pytest

from cl_metadata.fakeserver.faults import Fault
from conftest import IS_ROOT, run_agent

PROVIDER = "openstack-metadata"
NOBODY = 65534
OLD = b"COREOS_OLD=1\n"


@pytest.fixture
def server(fake_server, agent_env):
    server = fake_server(PROVIDER)
    agent_env["CL_METADATA_ENDPOINT"] = server.url
    return server


def refused(result, server, message: str) -> None:
    """Exit 1, exactly one line on stderr ending in ``message``, nothing on stdout, and the
    platform never asked."""
    assert result.returncode == 1, result.stderr
    assert result.stderr.splitlines() == [f"cl-metadata: error: {message}"]
    assert result.stdout == ""
    assert server.requests == []


def snapshot(directory) -> dict:
    """name → (kind, content or link target) for everything in ``directory``."""
    found = {}
    for name in sorted(os.listdir(directory)):
        path = os.path.join(directory, name)
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode):
            found[name] = ("link", os.readlink(path))
        elif stat.S_ISREG(st.st_mode):
            with open(path, "rb") as f:
                found[name] = ("file", f.read(), stat.S_IMODE(st.st_mode))
        else:
            found[name] = (stat.S_IFMT(st.st_mode), None)
    return found


# --- what is at the output path ---------------------------------------------------------------

def test_a_symlink_at_the_attributes_path_is_refused_before_any_request(server, agent_env,
                                                                        tmp_path):
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    (elsewhere / "target").write_bytes(b"precious\n")
    (out / "coreos").symlink_to(elsewhere / "target")
    (out / "hostname").write_bytes(b"old-name\n")  # a file the run would also write
    before = snapshot(out), snapshot(elsewhere)

    result = run_agent("--provider", PROVIDER, "--attributes", out / "coreos",
                       "--hostname", out / "hostname", env=agent_env)

    refused(result, server, f"{out}/coreos: is a symbolic link; refusing to replace it")
    assert (snapshot(out), snapshot(elsewhere)) == before


def test_a_symlink_at_the_hostname_path_is_refused_and_the_attributes_stay(server, agent_env,
                                                                          tmp_path):
    (tmp_path / "coreos").write_bytes(OLD)
    (tmp_path / "elsewhere").write_bytes(b"precious\n")
    (tmp_path / "hostname").symlink_to(tmp_path / "elsewhere")
    before = snapshot(tmp_path)
    result = run_agent("--provider", PROVIDER, "--attributes", tmp_path / "coreos",
                       "--hostname", tmp_path / "hostname", env=agent_env)
    refused(result, server, f"{tmp_path}/hostname: is a symbolic link; refusing to replace it")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("kind, cause", [
    ("fifo", "is a FIFO, not a regular file"),
    ("directory", "is a directory"),
    ("device", "is a character device, not a regular file"),
    ("socket", "is a socket, not a regular file"),
])
def test_anything_but_a_regular_file_is_refused_and_left_alone(server, agent_env, tmp_path,
                                                               kind, cause):
    path = tmp_path / "coreos"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "directory":
        path.mkdir()
        (path / "inside").write_bytes(b"keep\n")
    elif kind == "device":
        if not IS_ROOT:
            pytest.skip("mknod needs root")
        os.mknod(path, 0o600 | stat.S_IFCHR, os.makedev(1, 3))  # what /dev/null is
    else:
        import socket
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(path))
        sock.close()
    inode = os.lstat(path).st_ino
    before = snapshot(tmp_path)
    result = run_agent("--provider", PROVIDER, "--attributes", path, env=agent_env, timeout=30)
    refused(result, server, f"{path}: {cause}")
    assert snapshot(tmp_path) == before and os.lstat(path).st_ino == inode
    if kind == "directory":
        assert (path / "inside").read_bytes() == b"keep\n"


# The host's own /dev/null, /dev/stdout, /dev/stderr are named literally only inside a private
# mount namespace with a scratch /dev: a regression must not replace the real ones.
PRIVATE_DEV = (
    'mount -t tmpfs -o mode=0755 tmpfs /dev && mknod -m 666 /dev/null c 1 3 && '
    'ln -s /proc/self/fd/1 /dev/stdout && ln -s /proc/self/fd/2 /dev/stderr || exit 99; '
    '"$@"; status=$?; '
    '[ -c /dev/null ] || echo "/dev/null was replaced" >&2; '
    'for name in stdout stderr; do [ -L /dev/$name ] || echo "/dev/$name was replaced" >&2; done; '
    'exit $status')


def run_with_private_dev(cwd, *args, env):
    if not IS_ROOT or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare for a private /dev")
    return subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                           PRIVATE_DEV, "sh", sys.executable, "-m", "cl_metadata",
                           *map(str, args)], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=60)


def test_dev_null_is_refused_not_replaced(server, agent_env, tmp_path):
    result = run_with_private_dev(tmp_path, "--provider", PROVIDER, "--attributes", "/dev/null",
                                  env=agent_env)
    refused(result, server, "/dev/null: is a character device, not a regular file")


def test_dev_stderr_is_a_symlink_and_is_refused(server, agent_env, tmp_path):
    result = run_with_private_dev(tmp_path, "--provider", PROVIDER, "--hostname", "/dev/stderr",
                                  env=agent_env)
    refused(result, server, "/dev/stderr: is a symbolic link; refusing to replace it")


# --- standard output ----------------------------------------------------------------------------

def run_in(cwd, *args, env):
    """The agent run from ``cwd``, so a file named ``-`` would show up there."""
    return subprocess.run([sys.executable, "-m", "cl_metadata", *map(str, args)], env=env,
                          cwd=cwd, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("spelling", ["-", "/dev/stdout", "/proc/self/fd/1"])
def test_attributes_to_standard_output_are_exactly_the_file_bytes(server, agent_env, tmp_path,
                                                                 spelling):
    as_file = run_agent("--provider", PROVIDER, "--attributes", tmp_path / "coreos",
                        env=agent_env)
    assert as_file.returncode == 0, as_file.stderr
    runner = run_with_private_dev if spelling == "/dev/stdout" else run_in

    result = runner(tmp_path, "--provider", PROVIDER, "--attributes", spelling, env=agent_env)

    assert result.returncode == 0, result.stderr
    assert "was replaced" not in result.stderr  # the private /dev/stdout is still a symlink
    assert result.stdout.encode() == (tmp_path / "coreos").read_bytes()
    assert result.stdout.startswith("COREOS_OPENSTACK_HOSTNAME=demo-1.example.internal\n")
    assert sorted(os.listdir(tmp_path)) == ["cmdline", "coreos"]


def test_hostname_to_standard_output(server, agent_env, tmp_path):
    result = run_in(tmp_path, "--provider", PROVIDER, "--hostname", "-", env=agent_env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "demo-1.example.internal\n"
    assert os.listdir(tmp_path) == ["cmdline"]


def test_both_to_standard_output_in_the_written_order(server, agent_env, tmp_path):
    (tmp_path / "n").mkdir()
    attributes = run_agent("--provider", PROVIDER, "--attributes", tmp_path / "n" / "a",
                           env=agent_env)
    assert attributes.returncode == 0
    result = run_in(tmp_path, "--provider", PROVIDER, "--attributes", "-", "--hostname", "-",
                    env=agent_env)
    assert result.returncode == 0, result.stderr
    assert sorted(os.listdir(tmp_path)) == ["cmdline", "n"]
    assert result.stdout.encode() == ((tmp_path / "n" / "a").read_bytes()
                                      + b"demo-1.example.internal\n")


def test_network_units_cannot_go_to_standard_output(server, agent_env, tmp_path):
    result = run_in(tmp_path, "--provider", PROVIDER, "--network-units", "-", env=agent_env)
    refused(result, server, "-: a directory is needed, not standard output")
    assert os.listdir(tmp_path) == ["cmdline"]


# --- directories ------------------------------------------------------------------------------

def test_a_missing_directory_outside_run_is_an_error_and_is_not_created(server, agent_env,
                                                                        tmp_path):
    target = tmp_path / "nonexistent" / "dir" / "file"
    result = run_agent("--provider", PROVIDER, "--attributes", target, env=agent_env)
    refused(result, server, f"{target}: directory {tmp_path}/nonexistent/dir does not exist "
                            "(only directories below /run are created)")
    assert not (tmp_path / "nonexistent").exists()


def test_a_parent_that_is_a_file_is_an_error(server, agent_env, tmp_path):
    (tmp_path / "file").write_bytes(OLD)
    result = run_agent("--provider", PROVIDER, "--attributes", tmp_path / "file" / "coreos",
                       env=agent_env)
    refused(result, server, f"{tmp_path}/file/coreos: Not a directory")
    assert (tmp_path / "file").read_bytes() == OLD


@pytest.fixture
def run_dir():
    """A unique directory name under the real /run (removed afterwards)."""
    if not os.access("/run", os.W_OK):
        pytest.skip("/run is not writable here")
    path = f"/run/cl-metadata-test-{uuid.uuid4().hex[:12]}"
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_missing_directories_under_run_are_created(server, agent_env, run_dir):
    target = f"{run_dir}/metadata/coreos"
    saved = os.umask(0o077)
    try:
        result = run_agent("--provider", PROVIDER, "--attributes", target, env=agent_env)
    finally:
        os.umask(saved)
    assert result.returncode == 0, result.stderr
    with open(target, "rb") as f:
        assert f.read().startswith(b"COREOS_OPENSTACK_HOSTNAME=")
    for directory in (run_dir, f"{run_dir}/metadata"):
        assert stat.S_IMODE(os.stat(directory).st_mode) == 0o755


def test_a_symlinked_network_units_directory_is_refused(server, agent_env, tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "units").symlink_to(tmp_path / "real")
    result = run_agent("--provider", PROVIDER, "--network-units", tmp_path / "units",
                       env=agent_env)
    refused(result, server, f"{tmp_path}/units: is a symbolic link; refusing to follow it")
    assert os.listdir(tmp_path / "real") == []


def test_a_network_units_directory_needs_an_existing_parent_outside_run(server, agent_env,
                                                                        tmp_path):
    units = tmp_path / "etc" / "systemd" / "network"
    result = run_agent("--provider", PROVIDER, "--network-units", units, env=agent_env)
    refused(result, server, f"{units}: directory {tmp_path}/etc/systemd does not exist "
                            "(only directories below /run are created)")
    assert not (tmp_path / "etc").exists()


def test_a_missing_network_units_directory_is_accepted_and_not_created_early(fake_server,
                                                                             agent_env, tmp_path):
    # a service without network_data.json describes no interfaces: nothing to write, and
    # nothing created
    server = fake_server(PROVIDER, faults=[Fault("/openstack/latest/network_data.json",
                                                 "status", 404)])
    agent_env["CL_METADATA_ENDPOINT"] = server.url
    result = run_agent("--provider", PROVIDER, "--network-units", tmp_path / "units",
                       env=agent_env)
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "units").exists()


# --- who runs it ------------------------------------------------------------------------------

@pytest.fixture
def shared_tree():
    """A directory every user can reach (pytest's tmp_path is under a 0700 directory)."""
    path = tempfile.mkdtemp(prefix="clm-outputs-", dir="/tmp")
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path)


def run_as_nobody(*args, env):
    return subprocess.run([sys.executable, "-m", "cl_metadata", *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=60,
                          user=NOBODY, group=NOBODY, extra_groups=[])


@pytest.mark.usefixtures("nobody_can_run_the_agent")
def test_a_directory_the_user_cannot_write_fails_before_any_request(server, agent_env,
                                                                    shared_tree):
    target = os.path.join(shared_tree, "coreos")  # root's 0755 directory
    with open(target, "wb") as f:
        f.write(OLD)
    os.chmod(target, 0o666)  # even a writable file: replacing it needs the directory
    env = dict(agent_env, CL_METADATA_CMDLINE="/dev/null")
    result = run_as_nobody("--provider", PROVIDER, "--attributes", target, env=env)
    refused(result, server, f"{target}: cannot create files in {shared_tree}: permission "
                            f"denied for uid {NOBODY}")
    assert snapshot(shared_tree) == {"coreos": ("file", OLD, 0o666)}


@pytest.mark.usefixtures("nobody_can_run_the_agent")
def test_a_directory_the_user_owns_is_written(server, agent_env, shared_tree):
    os.chown(shared_tree, NOBODY, NOBODY)
    target = os.path.join(shared_tree, "coreos")
    env = dict(agent_env, CL_METADATA_CMDLINE="/dev/null")
    result = run_as_nobody("--provider", PROVIDER, "--attributes", target, env=env)
    assert result.returncode == 0, result.stderr
    st = os.stat(target)
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (NOBODY, 0o644)
    assert len(server.requests) > 0
