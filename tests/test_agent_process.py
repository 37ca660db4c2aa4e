"""The real ``cl-metadata`` process against the fake server on loopback and a drive directory:
exact files, modes, owners, exit codes and what the server saw."""

import os
import shutil
import signal
import stat
import subprocess
import sys
import time

import pytest

from cl_metadata.fakeserver.drive import write_tree
from cl_metadata.fakeserver.faults import Fault
from cl_metadata.fakeserver.instance import load_instance
from cl_metadata.fakeserver.render import renderer_for

from conftest import needs_root, run_agent

SAMPLE = load_instance(None)
ALICE, DEPLOY = (key.key for key in SAMPLE.ssh_keys)

EXPECTED_ATTRIBUTES = (
    "COREOS_OPENSTACK_HOSTNAME=demo-1.example.internal\n"
    "COREOS_OPENSTACK_INSTANCE_ID=i-0a1b2c3d4e5f60718\n"
    "COREOS_OPENSTACK_INSTANCE_TYPE=m1.small\n"
    "COREOS_OPENSTACK_INSTANCE_UUID=5d3f8c2a-9b14-4e6f-a0c7-2e81b4d9f063\n"
    "COREOS_OPENSTACK_IPV4_LOCAL=10.0.1.15\n"
    "COREOS_OPENSTACK_IPV4_PUBLIC=203.0.113.25\n"
)


def mode(path):
    return stat.S_IMODE(os.lstat(path).st_mode)


@needs_root
def test_openstack_metadata_writes_attributes_keys_and_hostname(fake_server, agent_env, tmp_path,
                                                                 throwaway_user):
    server = fake_server("openstack-metadata")
    attributes, hostname = tmp_path / "run/metadata/coreos", tmp_path / "hostname"
    attributes.parent.mkdir(parents=True)  # outside /run, parents are never created
    agent_env["CL_METADATA_ENDPOINT"] = server.url
    result = run_agent("--provider", "openstack-metadata", "--attributes", attributes,
                       "--ssh-keys", throwaway_user.pw_name, "--hostname", hostname,
                       env=agent_env)
    assert result.returncode == 0, result.stderr

    assert attributes.read_text() == EXPECTED_ATTRIBUTES
    assert mode(attributes) == 0o644 and os.stat(attributes).st_uid == 0
    assert hostname.read_text() == "demo-1.example.internal\n"
    assert mode(hostname) == 0o644

    fragment = os.path.join(throwaway_user.pw_dir, ".ssh/authorized_keys.d/cl-metadata")
    with open(fragment) as f:
        assert f.read() == f"{ALICE}\n{DEPLOY}\n"
    st = os.stat(fragment)
    assert (st.st_uid, st.st_gid, mode(fragment)) == (throwaway_user.pw_uid,
                                                     throwaway_user.pw_gid, 0o600)
    for directory in (".ssh", ".ssh/authorized_keys.d"):
        path = os.path.join(throwaway_user.pw_dir, directory)
        assert os.stat(path).st_uid == throwaway_user.pw_uid and mode(path) == 0o700

    # only the items the three outputs need, nothing else (no user-data, no directory crawl)
    # (hostname serves two outputs and is still asked once)
    seen = sorted(r["path"] for r in server.requests)
    assert seen == sorted(["/latest/meta-data/" + p for p in (
        "hostname", "instance-id", "instance-type", "local-ipv4", "public-ipv4", "public-keys",
        "public-keys/0/openssh-key", "public-keys/1/openssh-key")] + [
        "/openstack/2012-08-10/meta_data.json"])
    assert all(r["headers"].get("User-Agent", "").startswith("cl-metadata/")
               for r in server.requests)
    # logs name steps and paths, never values
    assert ALICE.split()[1] not in result.stderr and "i-0a1b2c3d4e5f60718" not in result.stderr


def test_afterburn_prefix(fake_server, agent_env, tmp_path):
    server = fake_server("openstack-metadata")
    agent_env["CL_METADATA_ENDPOINT"] = server.url
    out = tmp_path / "attrs"
    result = run_agent("-provider=openstack-metadata", "-attributes=" + str(out),
                       "--attributes-prefix", "AFTERBURN", env=agent_env)
    assert result.returncode == 0, result.stderr
    assert out.read_text() == EXPECTED_ATTRIBUTES.replace("COREOS_", "AFTERBURN_")


def test_cmdline_openstack_reads_the_drive_and_makes_no_request(fake_server, agent_env,
                                                                tmp_path):
    server = fake_server("openstack")
    drive = tmp_path / "drive"
    write_tree(renderer_for("openstack").drive_files(SAMPLE), drive)
    (tmp_path / "cmdline").write_text("root=/dev/vda coreos.oem.id=openstack quiet\n")
    agent_env.update(CL_METADATA_ENDPOINT=server.url, CL_METADATA_CONFIG_DRIVE=str(drive))
    out = tmp_path / "attrs"
    result = run_agent("--cmdline", "--attributes", out, "-v", env=agent_env)
    assert result.returncode == 0, result.stderr
    assert out.read_text() == EXPECTED_ATTRIBUTES
    assert server.requests == []
    assert "platform openstack from the kernel command line (coreos.oem.id)" in result.stderr


def test_rackspace_oem_id_is_an_alias(agent_env, tmp_path):
    drive = tmp_path / "drive"
    write_tree(renderer_for("openstack").drive_files(SAMPLE), drive)
    (tmp_path / "cmdline").write_text("coreos.oem.id=rackspace\n")
    agent_env["CL_METADATA_CONFIG_DRIVE"] = str(drive)
    result = run_agent("--cmdline", "--hostname", tmp_path / "h", env=agent_env)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "h").read_text() == "demo-1.example.internal\n"


def assert_untouched(path, before):
    assert path.read_bytes() == before
    leftovers = [n for n in os.listdir(path.parent) if n != path.name and n.startswith(".")]
    assert leftovers == []


@pytest.mark.parametrize("fault, cause", [
    (Fault("/latest/meta-data/instance-id", "status", 503), "503"),
    (Fault("/openstack/2012-08-10/meta_data.json", "malformed", "{"), "invalid JSON"),
    (Fault("/latest/meta-data/hostname", "oversize", 2 << 20), "exceeds 1048576 bytes"),
    (Fault("/latest/meta-data/local-ipv4", "redirect", "http://127.0.0.2:9/x"), "another origin"),
    (Fault("/latest/meta-data/local-ipv4", "status", 403), "HTTP 403"),
])
def test_failures_leave_the_old_file_and_say_one_line(fake_server, agent_env, tmp_path, fault,
                                                      cause):
    server = fake_server("openstack-metadata", faults=[fault])
    agent_env.update(CL_METADATA_ENDPOINT=server.url, CL_METADATA_TIMEOUT="3")
    out = tmp_path / "attrs"
    out.write_bytes(b"COREOS_OPENSTACK_IPV4_LOCAL=10.9.9.9\n")
    result = run_agent("--provider", "openstack-metadata", "--attributes", out, env=agent_env)
    assert result.returncode == 1
    errors = [l for l in result.stderr.splitlines() if l.startswith("cl-metadata: error:")]
    assert len(errors) == 1
    assert errors[0].startswith("cl-metadata: error: openstack-metadata: GET http")
    assert fault.path in errors[0] and cause in errors[0]
    assert_untouched(out, b"COREOS_OPENSTACK_IPV4_LOCAL=10.9.9.9\n")


def test_hostile_value_is_left_out_with_a_warning_naming_the_attribute(fake_server, agent_env,
                                                                        tmp_path):
    import dataclasses
    server = fake_server("openstack-metadata", instance=dataclasses.replace(
        SAMPLE, instance_type="m1.small\nCOREOS_EVIL=1"))
    agent_env["CL_METADATA_ENDPOINT"] = server.url
    out = tmp_path / "attrs"
    result = run_agent("--provider", "openstack-metadata", "--attributes", out, env=agent_env)
    assert result.returncode == 0, result.stderr
    text = out.read_text()
    assert "EVIL" not in text and "INSTANCE_TYPE" not in text
    assert "COREOS_OPENSTACK_INSTANCE_TYPE" in result.stderr and "EVIL" not in result.stderr


def test_unknown_user_fails_before_any_request(fake_server, agent_env, tmp_path):
    server = fake_server("openstack-metadata")
    agent_env["CL_METADATA_ENDPOINT"] = server.url
    result = run_agent("--provider", "openstack-metadata", "--ssh-keys", "no-such-user-xyz",
                       env=agent_env)
    assert result.returncode == 1
    assert "no-such-user-xyz" in result.stderr
    assert server.requests == []


def test_dead_endpoint_fails_within_the_deadline(agent_env, tmp_path):
    # a loopback port nobody listens on: connection refused, retried until the deadline
    agent_env.update(CL_METADATA_ENDPOINT="http://127.0.0.1:9", CL_METADATA_TIMEOUT="2")
    result = run_agent("--provider", "openstack-metadata", "--attributes", tmp_path / "a",
                       env=agent_env, timeout=30)
    assert result.returncode == 1
    assert "connection refused" in result.stderr
    assert not (tmp_path / "a").exists()


def test_sigterm_mid_run_leaves_outputs_alone(fake_server, agent_env, tmp_path):
    server = fake_server("openstack-metadata", faults=[Fault("*", "delay", 20)])
    agent_env["CL_METADATA_ENDPOINT"] = server.url
    out = tmp_path / "attrs"
    out.write_bytes(b"OLD=1\n")
    proc = subprocess.Popen([sys.executable, "-m", "cl_metadata", "--provider",
                             "openstack-metadata", "--attributes", str(out), "-v"], env=agent_env,
                            stderr=subprocess.PIPE, text=True)
    lines = []
    for line in proc.stderr:  # until the agent is waiting on the (delayed) platform
        lines.append(line)
        if "fetching attributes" in line:
            break
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=10)  # exits at once, not after the 20 s delay
    stderr = "".join(lines) + stderr
    assert proc.returncode == 1
    assert "terminated by SIGTERM" in stderr
    assert_untouched(out, b"OLD=1\n")


def test_python_dash_m_and_console_script_agree():
    version = subprocess.run([sys.executable, "-m", "cl_metadata", "--version"],
                             capture_output=True, text=True)
    script = os.path.join(os.path.dirname(sys.executable), "cl-metadata")
    assert version.returncode == 0 and version.stdout.startswith("cl-metadata ")
    assert subprocess.run([script, "--version"], capture_output=True,
                          text=True).stdout == version.stdout


# --- what reaches stderr ------------------------------------------------------------------------

@pytest.mark.parametrize("kind, cause", [
    ("dead endpoint", "connection refused"), ("HTTP 404", "HTTP 404"),
    ("invalid JSON", "invalid JSON"), ("unknown provider", "unknown provider 'no-such-cloud'"),
    ("bad flag", "unrecognized arguments: --bogus"),
    ("repeated flag", "argument --timeout: given more than once"),
])
def test_a_failure_is_exactly_one_line(fake_server, agent_env, tmp_path, kind, cause):
    # digitalocean's one document is required (every openstack-metadata item is optional)
    provider = {"unknown provider": "no-such-cloud", "HTTP 404": "digitalocean"}.get(
        kind, "openstack-metadata")
    faults = {"HTTP 404": [Fault("/metadata/v1.json", "status", 404)],
              "invalid JSON": [Fault("/openstack/2012-08-10/meta_data.json", "malformed", "{")]}
    server = fake_server("digitalocean" if kind == "HTTP 404" else "openstack-metadata",
                         faults=faults.get(kind, []))
    agent_env["CL_METADATA_ENDPOINT"] = ("http://127.0.0.1:9" if kind == "dead endpoint"
                                         else server.url)
    extra = {"bad flag": ["--bogus"], "repeated flag": ["--timeout", "3"]}.get(kind, [])
    out = tmp_path / "attrs"
    result = run_agent("--provider", provider, "--attributes", out, "--timeout", "1", *extra,
                       env=agent_env)
    assert result.returncode == (1 if kind in ("dead endpoint", "HTTP 404", "invalid JSON")
                                 else 2)
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith("cl-metadata: error: ") and cause in result.stderr
    assert not out.exists()


@needs_root
def test_a_success_prints_nothing_on_a_terminal_and_every_step_with_v(fake_server, agent_env,
                                                                      tmp_path, throwaway_user):
    server = fake_server("openstack-metadata")
    agent_env["CL_METADATA_ENDPOINT"] = server.url
    outputs = ["--attributes", tmp_path / "attrs", "--hostname", tmp_path / "hostname",
               "--ssh-keys", throwaway_user.pw_name]
    quiet = run_agent("--provider", "openstack-metadata", *outputs, env=agent_env)
    assert (quiet.returncode, quiet.stderr) == (0, "")
    verbose = run_agent("--provider", "openstack-metadata", *outputs, "-v", env=agent_env)
    assert verbose.returncode == 0, verbose.stderr
    lines = verbose.stderr.splitlines()
    assert "cl-metadata: debug: openstack-metadata: fetching attributes, ssh keys, hostname" \
        in lines
    assert f"cl-metadata: wrote 6 attributes to {tmp_path / 'attrs'}" in lines
    assert ALICE.split()[1] not in verbose.stderr and "10.0.1.15" not in verbose.stderr


def test_on_the_journal_the_milestones_are_logged_but_not_the_steps(fake_server, agent_env,
                                                                    tmp_path):
    # A stand-in systemd package keeps systemd-python away: the <N>-prefixed stderr lines are
    # what journald would read, and the host's journal is never written.
    stub = tmp_path / "stub" / "systemd"
    stub.mkdir(parents=True)
    (stub / "__init__.py").write_text("raise ImportError('hidden by the test')\n")
    agent_env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(stub.parent), agent_env.get("PYTHONPATH")) if p)
    server = fake_server("openstack-metadata")
    agent_env["CL_METADATA_ENDPOINT"] = server.url
    out, stderr = tmp_path / "attrs", tmp_path / "stderr"
    with open(stderr, "w") as f:
        st = os.fstat(f.fileno())
        agent_env["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
        result = subprocess.run([sys.executable, "-m", "cl_metadata", "--provider",
                                 "openstack-metadata", "--attributes", str(out)], env=agent_env,
                                stderr=f, timeout=60)
    assert result.returncode == 0, stderr.read_text()
    lines = stderr.read_text().splitlines()
    assert f"<6>wrote 6 attributes to {out}" in lines
    assert [line for line in lines if not line.startswith("<6>")] == []  # no debug, no warning
    assert not any("fetching" in line for line in lines)


# --- SSH keys for another user need root ----------------------------------------------------------

@pytest.mark.usefixtures("nobody_can_run_the_agent")
def test_ssh_keys_for_another_user_without_root_fail_before_any_request(fake_server, agent_env,
                                                                        throwaway_user):
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is not installed")
    server = fake_server("openstack-metadata")
    agent_env["CL_METADATA_ENDPOINT"] = server.url
    result = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-m",
         "cl_metadata", "--provider", "openstack-metadata", "--ssh-keys",
         throwaway_user.pw_name], env=agent_env, capture_output=True, text=True, timeout=60)
    assert server.requests == []  # refused before the platform was asked
    assert result.returncode == 1
    assert result.stderr == (
        f"cl-metadata: error: ssh keys for {throwaway_user.pw_name}: must run as root to write "
        "keys for another user (running as uid 65534)\n")
    assert os.listdir(throwaway_user.pw_dir) == []


@needs_root
def test_a_root_owned_ssh_dir_is_named_with_its_owner(fake_server, agent_env, throwaway_user):
    ssh = os.path.join(throwaway_user.pw_dir, ".ssh")
    os.mkdir(ssh, 0o700)  # root's: the dropped writer gets a bare EACCES opening it
    server = fake_server("openstack-metadata")
    agent_env["CL_METADATA_ENDPOINT"] = server.url
    result = run_agent("--provider", "openstack-metadata", "--ssh-keys", throwaway_user.pw_name,
                       env=agent_env)
    assert result.returncode == 1
    assert result.stderr == (
        f"cl-metadata: error: ssh keys for {throwaway_user.pw_name}: {ssh} is owned by uid 0, "
        f"not by the user (uid {throwaway_user.pw_uid})\n")
    assert os.listdir(ssh) == []
