"""``--user-data FILE``: every platform that holds user-data, served by the fake server in the
platform's own encoding (raw bytes, base64, gzip-compressed as the user gave it), lands in FILE
byte for byte (a gzip stream inflated), mode 0600; none means no file; bad data fails the whole
run with one line and nothing written; no byte of it reaches a log line.
"""

from __future__ import annotations

import dataclasses
import gzip
import os
import re
import stat
import subprocess
import sys
import zlib
from contextlib import contextmanager
from pathlib import Path

import pytest

from cl_metadata import cli, registry
from cl_metadata.errors import InvalidMetadata
from cl_metadata.fakeserver.drive import write_tree
from cl_metadata.fakeserver.faults import Fault
from cl_metadata.fakeserver.instance import load_instance
from cl_metadata.fakeserver.render import renderer_for
from cl_metadata.fakeserver.server import FakeServer, UnixFakeServer
from cl_metadata.fakeserver.standins import write_vmware_rpctool
from cl_metadata.outputs import userdata
from cl_metadata.providers.base import USER_DATA
from cl_metadata.sources import dhcp

from conftest import run_agent

REPO = Path(__file__).resolve().parent.parent
PENDING = set()  # platforms whose user-data tests are still to come
PLATFORMS = sorted(pid for pid in registry.BUILTIN
                   if USER_DATA in registry.get(pid).provider.features and pid not in PENDING)
HTTP = [pid for pid in PLATFORMS if registry.get(pid).provider.source == "http"]

# an Ignition config: text that is not #cloud-config (NoCloud renderers keep that as given)
TEXT = '{"ignition": {"version": "3.4.0"}, "zqxuserdata": "zqxsecret"}\n'
BINARY = bytes(range(256)) * 3 + b"\x1f\x8bnot gzip after all"  # no gzip magic at the start
VARIANTS = {"text": (TEXT, False), "binary": (BINARY, False), "gzip": (TEXT, True),
            "gzip-binary": (BINARY, True)}


# the contract's machine: every platform finds every item its protocol requires
CONTRACT = load_instance(REPO / "tests/fixtures/contract-instance.yaml")


def machine(user_data=None, gzipped=False):
    return dataclasses.replace(CONTRACT, user_data=user_data, user_data_gzip=gzipped)


def expected_bytes(user_data):
    return user_data.encode("utf-8") if isinstance(user_data, str) else user_data


@contextmanager
def platform(pid, instance, tmp_path, monkeypatch, faults=()):
    """The environment of a run against ``instance`` on platform ``pid`` (fake server, drive
    directory, stand-in vmware-rpctool or DHCP lease, as the platform reads it); yields
    ``(environ, server or None)``."""
    env = {"CL_METADATA_TIMEOUT": "5"}
    renderer = renderer_for(pid)
    if registry.get(pid).provider.source == "http":
        leases = tmp_path / "root/run/systemd/netif/leases"  # cloudstack-metadata's server
        leases.mkdir(parents=True)
        (leases / "2").write_text("ADDRESS=10.20.30.40\nSERVER_ADDRESS=10.20.0.1\n")
        monkeypatch.setattr(dhcp, "ROOT", str(tmp_path / "root"))
        with FakeServer(pid, instance, faults=list(faults)) as server:
            env["CL_METADATA_ENDPOINT"] = server.url
            yield env, server
        return
    if registry.get(pid).provider.source == "local socket":  # the LXD/Incus guest API
        tmp_path.mkdir(parents=True, exist_ok=True)
        with UnixFakeServer(pid, instance, faults=list(faults),
                            socket_path=tmp_path / "guest-api.sock") as server:
            env["CL_METADATA_LXD_SOCKET"] = server.socket_path
            yield env, server
        return
    drive = tmp_path / "drive"
    write_tree(renderer.drive_files(instance), drive)
    if pid == "vmware":
        write_vmware_rpctool(tmp_path / "bin", drive)
        monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    else:
        env["CL_METADATA_CONFIG_DRIVE"] = str(drive)
    yield env, None


# --- every platform: the bytes the user gave, nothing else -----------------------------------

@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("pid", PLATFORMS)
def test_the_file_holds_the_users_bytes(pid, variant, tmp_path, monkeypatch):
    original, gzipped = VARIANTS[variant]
    target = tmp_path / "out/user-data"
    target.parent.mkdir()
    target.write_bytes(b"an earlier boot's")
    os.chmod(target, 0o644)
    with platform(pid, machine(original, gzipped), tmp_path, monkeypatch) as (env, server):
        assert cli.main(["--provider", pid, "--user-data", str(target)], environ=env) == 0
    assert target.read_bytes() == expected_bytes(original)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert target.stat().st_uid == os.geteuid()
    if server is not None:  # the platform's one user-data item, once
        gets = [r["path"] for r in server.requests if "user" in r["path"].lower()]
        assert len(gets) == 1, gets


# Proxmox VE always writes a user-data file: its own #cloud-config when the user gave none
@pytest.mark.parametrize("pid", [pid for pid in PLATFORMS if pid != "proxmoxve"])
def test_no_user_data_removes_an_earlier_boots_file(pid, tmp_path, monkeypatch):
    target = tmp_path / "user-data"
    target.write_bytes(b"stale")
    keyless = dataclasses.replace(machine(), ssh_keys=())  # NoCloud seeds put keys in user-data
    with platform(pid, keyless, tmp_path, monkeypatch) as (env, _):
        assert cli.main(["--provider", pid, "--user-data", str(target)], environ=env) == 0
    assert not target.exists()
    with platform(pid, keyless, tmp_path / "again", monkeypatch) as (env, _):  # and stays so
        assert cli.main(["--provider", pid, "--user-data", str(target)], environ=env) == 0
    assert not target.exists()


@pytest.mark.parametrize("pid", [pid for pid in HTTP
                                 if "attributes" in registry.get(pid).provider.features])
def test_user_data_is_asked_for_only_with_the_flag(pid, tmp_path, monkeypatch):
    instance = machine(TEXT)
    runs = {}
    for name, extra in (("without", []), ("with", ["--user-data", str(tmp_path / "ud")])):
        (tmp_path / name).mkdir()
        with platform(pid, instance, tmp_path / name, monkeypatch) as (env, server):
            args = ["--provider", pid, "--attributes", str(tmp_path / name / "attributes")]
            assert cli.main(args + extra, environ=env) == 0
            runs[name] = {(r["method"], r["path"]) for r in server.requests}
    added = runs["with"] - runs["without"]
    assert runs["without"] <= runs["with"]
    assert len(added) == 1 and "user" in next(iter(added))[1].lower(), added
    assert not user_data_requests_of(runs["without"])


def user_data_requests_of(requests):
    return {r for r in requests if "user" in r[1].lower()}


def test_a_platform_without_user_data_says_so_and_touches_nothing(tmp_path, monkeypatch,
                                                                  capsys):
    target = tmp_path / "user-data"
    target.write_bytes(b"someone else's")
    with platform("azurestack", machine(TEXT), tmp_path, monkeypatch) as (env, server):
        assert cli.main(["--provider", "azurestack", "--user-data", str(target), "-v"],
                        environ=env) == 0
        assert server.requests == []
    assert target.read_bytes() == b"someone else's"
    assert (f"azurestack: this platform has no user-data; nothing written to {target}\n"
            in capsys.readouterr().err)


def test_standard_output_gets_the_bytes_and_nothing_else(tmp_path, agent_env):
    with FakeServer("aws", machine(BINARY, gzipped=True)) as server:
        env = dict(agent_env, CL_METADATA_ENDPOINT=server.url)
        done = subprocess.run([sys.executable, "-m", "cl_metadata", "--provider", "aws",
                               "--user-data", "-", "-v"], env=env, capture_output=True,
                              timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == BINARY


# --- bad user-data: one line, exit 1, nothing written anywhere -------------------------------

def bomb():
    """A 21 KiB gzip stream inflating to 20 MiB."""
    return gzip.compress(b"\0" * (20 << 20), mtime=0)


@pytest.mark.parametrize("pid, instance, faults, cause", [
    ("aws", machine(bomb()), (), "gzip-compressed user-data inflates to more than 16777216 bytes"),
    ("oraclecloud", machine(TEXT), [Fault("/opc/v2/instance/metadata/user_data", "malformed")],
     "user-data is not valid base64"),
    ("akamai", machine(TEXT), [Fault("/v1/user-data", "malformed")],
     "user-data is not valid base64"),
    ("gcp", machine(gzip.compress(TEXT.encode())[:-12]), (),
     "gzip-compressed user-data is truncated"),
])
def test_bad_user_data_fails_the_run_and_writes_nothing(pid, instance, faults, cause,
                                                        tmp_path, agent_env):
    out = tmp_path / "out"
    out.mkdir()
    before = {"attributes": b"PREVIOUS=1\n", "user-data": b"previous user-data\n"}
    for name, content in before.items():
        (out / name).write_bytes(content)
    with FakeServer(pid, instance, faults=list(faults)) as server:
        env = dict(agent_env, CL_METADATA_ENDPOINT=server.url)
        done = run_agent("--provider", pid, "--attributes", out / "attributes",
                         "--user-data", out / "user-data", "-v", env=env)
    assert done.returncode == 1
    errors = [line for line in done.stderr.splitlines() if "error" in line]
    source = registry.get(pid).provider.user_data_source
    assert errors == [f"cl-metadata: error: {pid}: {source}: {cause}"], done.stderr
    assert sorted(os.listdir(out)) == sorted(before)  # no temp file left either
    for name, content in before.items():
        assert (out / name).read_bytes() == content
    assert "zqx" not in done.stderr + done.stdout


def test_a_drive_file_too_big_fails_only_a_run_that_asks_for_it(tmp_path, monkeypatch):
    files = renderer_for("openstack").drive_files(machine(TEXT))
    files["openstack/latest/user_data"] = b"x" * ((1 << 20) + 1)
    write_tree(files, tmp_path / "drive")
    env = {"CL_METADATA_CONFIG_DRIVE": str(tmp_path / "drive"), "CL_METADATA_TIMEOUT": "5"}
    attributes = tmp_path / "attributes"
    assert cli.main(["--provider", "openstack", "--attributes", str(attributes)],
                    environ=env) == 0
    assert cli.main(["--provider", "openstack", "--attributes", str(tmp_path / "other"),
                     "--user-data", str(tmp_path / "ud")], environ=env) == 1
    assert not (tmp_path / "ud").exists() and not (tmp_path / "other").exists()


# --- the inflater --------------------------------------------------------------------------

def test_plain_bytes_are_kept_as_they_are():
    assert userdata.inflate(BINARY, "s") is BINARY
    assert userdata.prepare(b"", "s") is None and userdata.prepare(None, "s") is None


def test_concatenated_members_inflate_to_the_concatenation_as_gunzip_does():
    data = gzip.compress(b"first,") + gzip.compress(b"second")
    assert userdata.inflate(data, "s") == b"first,second"


def test_the_limit_is_exact():
    data = gzip.compress(b"a" * 1000)
    assert userdata.inflate(data, "s", limit=1000) == b"a" * 1000
    with pytest.raises(InvalidMetadata, match="more than 999 bytes"):
        userdata.inflate(data, "s", limit=999)


def test_a_bomb_is_refused_without_inflating_it(monkeypatch):
    produced = []
    real = zlib.decompressobj

    class Counting:
        def __init__(self, *args, **kwargs):
            self._inner = real(*args, **kwargs)

        def decompress(self, data, max_length=0):
            chunk = self._inner.decompress(data, max_length)
            produced.append(len(chunk))
            return chunk

        def __getattr__(self, name):
            return getattr(self._inner, name)

    monkeypatch.setattr(zlib, "decompressobj", Counting)
    with pytest.raises(InvalidMetadata, match="inflates to more than"):
        userdata.inflate(bomb(), "GET x")
    assert sum(produced) <= userdata.MAX_INFLATED + 1  # 20 MiB were never held


@pytest.mark.parametrize("data, cause", [
    (gzip.compress(b"hello")[:-3], "truncated"),
    (b"\x1f\x8b\x08\x00" + b"\xff" * 40, "corrupt"),
])
def test_a_broken_stream_is_an_error_that_names_no_byte(data, cause):
    with pytest.raises(InvalidMetadata) as info:
        userdata.inflate(data, "GET http://169.254.169.254/2021-01-03/user-data")
    assert str(info.value) == ("GET http://169.254.169.254/2021-01-03/user-data: "
                               f"gzip-compressed user-data is {cause}")


# --- the README's table is the providers' ----------------------------------------------------

def readme_rows():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## User-data\n", 1)[1].split("\n## ", 1)[0]
    return {m.group(1): (m.group(2), m.group(3))
            for m in re.finditer(r"^\| `([a-z0-9-]+)` \| (.+?) \| (.+?) \|$", section, re.M)}


def test_the_readme_lists_each_platforms_source_and_encoding():
    expected = {pid: (f"`{registry.get(pid).provider.user_data_source}`",
                      registry.get(pid).provider.user_data_encoding) for pid in PLATFORMS}
    assert readme_rows() == expected
