"""--ssh-keys-per-user (and the settings file's ssh-keys-per-user): each GCE key only to the user
its ``user:`` prefix names, among the users asked for, never root; the others counted in one
notice that names no one. Without it, every user still gets every key (upstream's behaviour)."""

import base64
import dataclasses
import logging
import os
import pathlib
import pwd
import shutil
import struct
import subprocess
import tempfile
import uuid

import pytest

from cl_metadata.fakeserver.instance import load_instance
from cl_metadata.outputs import sshkeys_per_user
from cl_metadata.outputs.sshkeys import validate_keys

from conftest import IS_ROOT, run_agent

SAMPLE = load_instance(None)


def key(marker: bytes, comment: str) -> str:
    """A structurally valid ed25519 key line whose key bytes are ``marker`` (padded)."""
    raw = struct.pack(">I", 11) + b"ssh-ed25519" + struct.pack(">I", 32) + marker.ljust(32, b"-")
    return f"ssh-ed25519 {base64.b64encode(raw).decode()} {comment}"


ANN, BEN, BOTH, ROOT, STRANGER = (key(m, c) for m, c in (
    (b"ann", "ann@laptop"), (b"ben", "ben@laptop"), (b"both", "shared"), (b"root", "root@x"),
    (b"stranger", "eve@elsewhere")))


def passwd(name, uid):
    return pwd.struct_passwd((name, "x", uid, uid, "", f"/home/{name}", "/bin/sh"))


class FakeGcp:
    id = "gcp"

    def __init__(self, pairs):
        self.pairs = pairs

    def ssh_keys_by_user(self):
        return self.pairs


PAIRS = [("ann", ANN), ("ben", BEN), ("ann", BOTH), ("ben", BOTH), ("root", ROOT),
         ("eve", STRANGER), ("Ann", ANN)]


def validated(lines):
    keys, warnings = validate_keys(lines)
    assert warnings == []
    return keys


def lines(keys):
    return [k.line() for k in keys]


def test_each_user_gets_exactly_the_keys_that_name_them(caplog):
    caplog.set_level(logging.INFO, logger="cl_metadata")
    keys = validated([ANN, BEN, BOTH, ROOT, STRANGER])
    users = [passwd("ann", 1001), passwd("ben", 1002)]
    routed = sshkeys_per_user.route(FakeGcp(PAIRS), keys, users)
    assert {name: lines(k) for name, k in routed.items()} == {
        "ann": [ANN, BOTH], "ben": [BEN, BOTH]}
    # root's and eve's keys: two left out, counted once, nobody named
    notices = [r.getMessage() for r in caplog.records if "left out" in r.getMessage()]
    assert notices == ["gcp: 2 ssh keys left out: they name no user asked for, or root "
                       "(per-user keys)"]
    assert "eve" not in caplog.text and "root@x" not in caplog.text


def test_root_gets_nothing_even_when_asked_for(caplog):
    caplog.set_level(logging.INFO, logger="cl_metadata")
    keys = validated([ANN, ROOT])
    routed = sshkeys_per_user.route(FakeGcp([("ann", ANN), ("root", ROOT)]), keys,
                                    [passwd("root", 0), passwd("ann", 1001)])
    assert {name: lines(k) for name, k in routed.items()} == {"root": [], "ann": [ANN]}
    assert "1 ssh key left out: it names no user asked for, or root" in caplog.text


def test_every_key_placed_is_no_notice(caplog):
    caplog.set_level(logging.INFO, logger="cl_metadata")
    keys = validated([ANN])
    routed = sshkeys_per_user.route(FakeGcp([("ann", ANN)]), keys, [passwd("ann", 1001)])
    assert lines(routed["ann"]) == [ANN]
    assert "left out" not in caplog.text


def test_a_platform_whose_keys_name_no_user_keeps_the_default(caplog):
    caplog.set_level(logging.INFO, logger="cl_metadata")

    class Plain:
        id = "aws"

    assert sshkeys_per_user.route(Plain(), validated([ANN]), [passwd("ann", 1001)]) is None
    assert "aws: the platform's keys name no user; every user asked for gets every key" \
        in caplog.text


def test_the_gcp_provider_gives_each_key_with_its_user(fake_server):
    from cl_metadata.providers.gcp import GcpProvider

    from conftest import make_context

    instance = dataclasses.replace(SAMPLE, platform_data={"gcp": {
        "instance-ssh-keys": [f"ann:{ANN}", f"ben:{BOTH}"],
        "project-ssh-keys": [f"ann:{BOTH}", f"ann:{ANN}"]}})  # ann's ANN once
    provider = GcpProvider(make_context(fake_server("gcp", instance=instance)))
    assert provider.ssh_keys_by_user() == [("ann", ANN), ("ben", BOTH), ("ann", BOTH)]
    assert provider.ssh_keys() == [ANN, BOTH]  # the default: each key once, users dropped


# --- the real process, with real users -----------------------------------------------------------

@pytest.fixture
def two_users():
    """Two real users with their own homes (root only); removed afterwards."""
    if not IS_ROOT:
        pytest.skip("needs root to create users")
    base = pathlib.Path(tempfile.mkdtemp(prefix="cl-metadata-homes-", dir="/var/tmp"))
    os.chmod(base, 0o755)
    entries = []
    try:
        for _ in range(2):
            name = "clmt" + uuid.uuid4().hex[:8]
            home = base / name
            subprocess.run(["useradd", "--no-create-home", "--home-dir", str(home), "--shell",
                            "/usr/sbin/nologin", "--user-group", name], check=True)
            entry = pwd.getpwnam(name)
            home.mkdir(mode=0o755)
            os.chown(home, entry.pw_uid, entry.pw_gid)
            entries.append(entry)
        yield entries
    finally:
        for entry in entries:
            subprocess.run(["userdel", entry.pw_name], check=False)
        shutil.rmtree(base, ignore_errors=True)


def fragment(user):
    path = os.path.join(user.pw_dir, ".ssh/authorized_keys.d/cl-metadata")
    with open(path) as f:
        return f.read()


def gcp_run(fake_server, agent_env, users, *extra):
    first, second = users
    instance = dataclasses.replace(SAMPLE, platform_data={"gcp": {
        "instance-ssh-keys": [f"{first.pw_name}:{ANN}", f"{second.pw_name}:{BEN}",
                              f"root:{ROOT}"],
        "project-ssh-keys": [f"{first.pw_name}:{BOTH}", f"{second.pw_name}:{BOTH}",
                             f"eve:{STRANGER}"]}})
    server = fake_server("gcp", instance=instance)
    agent_env["CL_METADATA_ENDPOINT"] = server.url
    return run_agent("--provider", "gcp", "--ssh-keys", first.pw_name, "--ssh-keys",
                     second.pw_name, *extra, env=agent_env)


def test_real_process_per_user(fake_server, agent_env, two_users):
    result = gcp_run(fake_server, agent_env, two_users, "--ssh-keys-per-user")
    assert result.returncode == 0, result.stderr
    first, second = two_users
    assert fragment(first) == f"{ANN}\n{BOTH}\n"
    assert fragment(second) == f"{BEN}\n{BOTH}\n"
    assert result.stderr == ("cl-metadata: notice: gcp: 2 ssh keys left out: they name no user "
                             "asked for, or root (per-user keys)\n")


def test_real_process_per_user_from_the_settings_file(fake_server, agent_env, two_users,
                                                      tmp_path):
    settings = tmp_path / "cl-metadata.conf"
    settings.write_text("ssh-keys-per-user = yes\n")
    result = gcp_run(fake_server, agent_env, two_users, "--settings", settings)
    assert result.returncode == 0, result.stderr
    assert fragment(two_users[0]) == f"{ANN}\n{BOTH}\n"


def test_real_process_default_unchanged(fake_server, agent_env, two_users):
    result = gcp_run(fake_server, agent_env, two_users)
    assert result.returncode == 0, result.stderr
    everything = f"{ANN}\n{BEN}\n{ROOT}\n{BOTH}\n{STRANGER}\n"
    assert fragment(two_users[0]) == everything and fragment(two_users[1]) == everything
    assert result.stderr == ""
