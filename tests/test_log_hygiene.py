"""No metadata value ever reaches a log line: every provider, through the real process, with a
marker in every field the platform's format lets carry one.

One machine (below) has distinctive markers in its ids, names, addresses, keys and user-data,
and is hostile where warnings fire: a host name too long (truncation), attribute values over
the cap and with control characters (dropped attributes), invalid SSH keys (dropped keys),
GCE key lines without ``user:`` and with an unreadable expiry. Each provider runs with every
output requested, ``--check-in`` and ``-v``, twice: stderr on a pipe, and stderr as the journal
(``$JOURNAL_STREAM``, the ``<N>`` fallback, plus the ``$NOTIFY_SOCKET`` datagrams). Nothing any
run prints, to stdout, stderr or the notify socket, may contain a marker.
"""

from __future__ import annotations

import base64
import os
import socket
import struct
import subprocess
import sys

import pytest

from cl_metadata import registry
from cl_metadata.fakeserver.drive import write_tree
from cl_metadata.fakeserver.instance import Instance, NetworkInterface, SshKey
from cl_metadata.fakeserver.render import platforms as renderer_platforms, renderer_for
from cl_metadata.fakeserver.server import FakeServer, UnixFakeServer
from cl_metadata.fakeserver.standins import write_vmware_rpctool
from cl_metadata.outputs.sshkeys import validate_keys

from conftest import AGENT_LAUNCHER, DRIVE_PLATFORMS, run_agent



def ed25519_blob(marker: bytes) -> str:
    """A structurally valid ed25519 key blob whose 32 key bytes are ``marker`` (padded)."""
    raw = struct.pack(">I", 11) + b"ssh-ed25519" + struct.pack(">I", 32) + marker.ljust(32, b"-")
    return base64.b64encode(raw).decode()


def ed25519_line(marker: bytes, comment: str) -> str:
    return f"ssh-ed25519 {ed25519_blob(marker)} {comment}"


KEY_BYTES = [b"zqxgoodkeybytes", b"zqxoptionkey", b"zqxcontrolkey", b"zqxmismatch",
             b"zqxexpiredkey"]


# an RSA key that openssl accepts (azurestack certifies it), its comment a marker
RSA_BLOB = ("AAAAB3NzaC1yc2EAAAADAQABAAABAQCUxOZjt+p2KtqAfwmxmd1RWdhYCbbZ3pAtfE837ZX/mCNi8K0kezK2"
            "YhpBJnfOCf9Gb43VCmcauaWG5VEw6TTc4FBzsD8GXz7UQU0BMwTyV5HXcwAUIJ0t4zyyxhA+vLDpb3nta8SO"
            "pNjzvuQAxI3zv7nRdhnY2WY3rPBzHvLtHZjfLAuKc4M31jBZ3YEu/zU8vS7wYC/smg/PAtrw0p8rz5mh/YxS"
            "qBPhWRLqqzfLSW6SxceNCrB9XeYy9sSEdbXD3UtKKiSN6fkC+2AJwwhRGvlQJK/Iv7hyr5z3h3dhDvSmcIhD"
            "yXBAKzcWAzvRuqfYCBgnsu68a+wLuP2eQQ1L")
GOOD_ED25519 = ed25519_line(b"zqxgoodkeybytes", "zqxkeycommentone")
GOOD_RSA = f"ssh-rsa {RSA_BLOB} zqxkeycommenttwo"
BAD_KEYS = [
    f'command="zqxkeyoption" {ed25519_line(b"zqxoptionkey", "zqxkeycommentthree")}',
    "ssh-ed25519 zqxnotbase64!! zqxkeycommentfour",
    "zqxunknowntype AAAAC3NzaC1lZDI1NTE5 zqxkeycommentfive",
    ed25519_line(b"zqxcontrolkey", "zqxkeycommentsix\x1b[31m"),
    "ssh-dss " + ed25519_line(b"zqxmismatch", "zqxkeycommentseven").split()[1],
    "ssh-ed25519 AAAAzqxtruncated zqxkeycommenteight",
    "ssh-ed25519 " + "A" * 17000 + "zqxtoolong",
]
OVER_THE_CAP = "t" * 5000  # attribute values over the 4096-byte cap

MACHINE = Instance(
    instance_id="zqxinstanceid",
    uuid="5eedd00d-feed-4bad-8bad-c0ffee5eed91",
    hostname="zqxhostlabel.zqxhostdomain-" + "d" * 60 + ".example.net",  # > 64: truncated
    local_ipv4="10.213.47.91",
    public_ipv4="198.51.100.213",
    ipv6="2001:db8:5eed:d00d::91",
    mac="02:5e:ed:d0:0d:91",
    region="zqxregion",
    availability_zone="zqxzone" + OVER_THE_CAP,
    project_id="zqxproject\x1b[2J",
    instance_type="zqxinstancetype" + OVER_THE_CAP,
    image_id="zqximage\x07bell",
    user_data="#cloud-config\nzqxuserdata: zqxsecretpassword\n",
    ssh_keys=tuple(SshKey(name=f"zqxkeyname{i}", key=key)
                   for i, key in enumerate([GOOD_ED25519, GOOD_RSA, *BAD_KEYS])),
    network_interfaces=(
        NetworkInterface(mac="02:5e:ed:d0:0d:91", name="eth0", public=True,
                         public_ipv4="198.51.100.213", ipv4_prefix=24,
                         ipv4_gateway="198.51.100.1", ipv6="2001:db8:5eed:d00d::91",
                         ipv6_gateway="2001:db8:5eed:d00d::1"),
        NetworkInterface(mac="02:5e:ed:d0:0d:92", name="eth1", local_ipv4="10.213.47.91",
                         ipv4_prefix=16, ipv4_gateway="10.213.0.1"),
    ),
    nameservers=("198.18.213.53",),
    platform_data={"gcp": {"project-ssh-keys": [
        "zqxnouserline",
        f"zqxgcpuser:{ed25519_line(b'zqxexpiredkey', 'google-ssh [[[zqxexpiry')}",
    ] + [f"zqxmissinguser{i}" for i in range(8)]}},
)

MARKERS = sorted({
    "zqx",  # every text marker above starts with it
    "10.213.47.91", "198.51.100.213", "5eed:d00d", "5eedd00d", "5e:ed:d0:0d",
    "198.18.213.53", "\x1b", "\x07",
    RSA_BLOB[40:80], *(ed25519_blob(marker)[28:] for marker in KEY_BYTES),  # key data
})

# what no output may hold, not even query's, whose purpose is to print the machine's values
NEVER_PRINTED = ["zqxkeycomment", "zqxuserdata", "zqxsecretpassword", RSA_BLOB[40:80],
                 *(ed25519_blob(marker)[28:] for marker in KEY_BYTES)]



def test_the_machine_makes_every_warning_fire():
    _, warnings = validate_keys([key.key for key in MACHINE.ssh_keys])
    assert len(BAD_KEYS) == 7 and warnings[-1] == "... and 2 more ssh keys dropped"
    assert len(MACHINE.hostname) > 64
    # every marker is something the machine carries, so finding none means something
    described = str(MACHINE) + MACHINE.project_id + MACHINE.image_id
    assert [marker for marker in MARKERS if marker not in described] == []


@pytest.fixture
def ssh_user(request):
    """A throwaway user to write keys for (root only; without root, no --ssh-keys)."""
    try:
        return request.getfixturevalue("throwaway_user").pw_name
    except pytest.skip.Exception:
        return None


class NotifySocket:
    def __init__(self, path):
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.setblocking(False)

    def received(self) -> str:
        messages = []
        while True:
            try:
                messages.append(self.sock.recv(1 << 16).decode("utf-8", "replace"))
            except BlockingIOError:
                return "\n".join(messages)


def run(provider_id, env, tmp_path, ssh_user, *, journal: bool):
    out = tmp_path / ("journal" if journal else "pipe")
    out.mkdir()
    (out / "units").mkdir()
    args = ["--provider", provider_id, "--attributes", out / "attributes", "--hostname",
            out / "hostname", "--network-units", out / "units", "--check-in", "-v",
            "--user-data", out / "user-data"]
    if ssh_user:
        args += ["--ssh-keys", ssh_user]
    env = dict(env)
    notify = None
    stderr = open(out / "stderr", "w+b")
    if journal:
        st = os.fstat(stderr.fileno())
        env["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
        notify = NotifySocket(out / "notify")
        env["NOTIFY_SOCKET"] = notify.path
    with stderr:
        result = subprocess.run([sys.executable, "-c", AGENT_LAUNCHER, *map(str, args)], env=env,
                                stdout=subprocess.PIPE, stderr=stderr, timeout=120)
        stderr.seek(0)
        text = stderr.read().decode("utf-8", "replace")
    printed = result.stdout.decode("utf-8", "replace") + text
    if notify is not None:
        printed += notify.received()
    return result.returncode, printed


@pytest.mark.parametrize("provider_id", sorted(registry.BUILTIN))
def test_no_metadata_value_reaches_any_output(provider_id, agent_env, tmp_path, ssh_user):
    leases = tmp_path / "root/run/systemd/netif/leases"
    leases.mkdir(parents=True)
    (leases / "2").write_text("ADDRESS=10.20.30.40\nSERVER_ADDRESS=10.20.0.1\n")
    agent_env["TEST_DHCP_ROOT"] = str(tmp_path / "root")
    server = None
    if provider_id != "vagrant-virtualbox" and provider_id not in renderer_platforms():
        pytest.fail(f"the fake server cannot render {provider_id}: add its renderer, so that "
                    "its logs are checked here")
    if provider_id == "vmware":
        guestinfo = tmp_path / "guestinfo"
        write_tree(renderer_for(provider_id).drive_files(MACHINE), guestinfo)
        write_vmware_rpctool(tmp_path / "bin", guestinfo)
        agent_env["PATH"] = f"{tmp_path / 'bin'}:{agent_env.get('PATH', os.defpath)}"
    elif provider_id in DRIVE_PLATFORMS:
        write_tree(renderer_for(provider_id).drive_files(MACHINE), tmp_path / "drive")
        agent_env["CL_METADATA_CONFIG_DRIVE"] = str(tmp_path / "drive")
    elif registry.get(provider_id).provider.source == "local socket":  # LXD/Incus guest API
        server = UnixFakeServer(provider_id, MACHINE, socket_path=tmp_path / "guest-api.sock")
        server.start()
        agent_env["CL_METADATA_LXD_SOCKET"] = server.socket_path
    elif provider_id != "vagrant-virtualbox":
        server = FakeServer(provider_id, MACHINE)
        server.start()
        agent_env["CL_METADATA_ENDPOINT"] = server.url
    try:
        outcomes = [run(provider_id, agent_env, tmp_path, ssh_user, journal=journal)
                    for journal in (False, True)]
        queried = subprocess.run([sys.executable, "-c", AGENT_LAUNCHER, "query", "--provider",
                                  provider_id, "--json", "-v"], env=agent_env,
                                 capture_output=True, timeout=120)
    finally:
        if server is not None:
            server.stop()
    # query prints the machine's values (its purpose), but logs none, and never prints a key,
    # a key's comment or user-data
    assert queried.returncode == 0, queried.stderr[-3000:]
    assert [m for m in MARKERS if m in queried.stderr.decode("utf-8", "replace")] == []
    assert [m for m in NEVER_PRINTED if m in queried.stdout.decode("utf-8", "replace")] == []
    for status, printed in outcomes:
        assert status == 0, printed[-3000:]
        # as written: the markers are lower case, and a case-blind "zqx" also turns up in
        # random base64 now and then
        leaked = [marker for marker in MARKERS if marker in printed]
        assert leaked == [], printed[-3000:]
    # both runs got as far as the warnings (the same ones, the journal's at priority 4)
    pipe, journal = (printed.splitlines() for _, printed in outcomes)
    warnings = [line[22:] for line in pipe if line.startswith("cl-metadata: warning: ")]
    assert warnings == [line[3:] for line in journal if line.startswith("<4>")]
    if "ssh-keys" in registry.get(provider_id).provider.features and ssh_user \
            and provider_id != "azurestack":  # azurestack serves only the RSA key
        assert "... and 2 more ssh keys dropped" in warnings


# --- per-item warnings: the platform decides how many items there are -------------------------

def test_200000_invalid_keys_make_six_warnings():
    keys, warnings = validate_keys(["zqxnotakey"] * 200000)
    assert keys == []
    assert warnings == [f"ssh key #{n} dropped: unknown key type" for n in range(1, 6)] + [
        "... and 199995 more ssh keys dropped"]


def test_gce_key_lines_without_a_user_are_summarised(caplog):
    from cl_metadata.providers import gcp

    lines = "\n".join(["zqxnouser"] * 1000 + [f"core:{GOOD_ED25519}"])
    assert gcp.parse_ssh_keys({gcp.INSTANCE_KEYS: lines}, None) == [GOOD_ED25519]
    assert [r.getMessage() for r in caplog.records] == [
        f"{gcp.BASE}{gcp.INSTANCE_KEYS} line {n} dropped: not 'user:key'" for n in range(1, 6)
    ] + ["... and 995 more ssh key lines dropped"]


def test_the_process_prints_six_lines_for_200000_invalid_keys(agent_env, tmp_path,
                                                              throwaway_user):
    files = dict(renderer_for("cloudstack-configdrive").drive_files(MACHINE))
    files["cloudstack/metadata/public_keys.txt"] = b"x\n" * 200000  # 400 KB
    write_tree(files, tmp_path / "drive")
    agent_env["CL_METADATA_CONFIG_DRIVE"] = str(tmp_path / "drive")
    result = run_agent("--provider", "cloudstack-configdrive", "--ssh-keys",
                       throwaway_user.pw_name, env=agent_env)
    assert result.returncode == 0
    assert result.stderr.splitlines() == [
        f"cl-metadata: warning: ssh key #{n} dropped: unknown key type" for n in range(1, 6)] + [
        "cl-metadata: warning: ... and 199995 more ssh keys dropped"]
