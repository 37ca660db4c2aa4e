"""The end-to-end scenarios of issue 5: what each boot looks like, what the guest gets on top
of the shared image, and what the host asserts afterwards.

Guest-side parts (units, drop-ins, enable links, a setup script) are baked into the image under
/usr/lib/clmtest/scenarios/NAME/ and activated at boot by clmtest-generator when the kernel
command line says clmtest.scenario=NAME; the image itself stays one for every scenario.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

from e2e_results import ERR, BootResult, Checks

# --- the instance every fake platform serves --------------------------------------------------

HOSTNAME = "e2e-1.example.internal"
LOCAL_IPV4 = "10.0.1.15"
PUBLIC_IPV4 = "203.0.113.25"
INSTANCE_ID = "i-0e2e5a1b2c3d4e5f6"
UUID = "0e2e7c2a-9b14-4e6f-a0c7-2e81b4d9f063"
INSTANCE_TYPE = "m1.small"
ZONE = "eu-west-1a"
REGION = "eu-west-1"
ALICE_KEY = ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAxYgbg7sT/3EjY7mw+pqeP/YuiykylRre135lEkf43f"
             " alice@workstation")
LOGIN_KEY_NAME = "core-e2e"  # its public half is made per run (the host logs in with it)


def instance(login_public_key: str) -> dict:
    """The fake server's instance description (keys sort as they are listed: alice first)."""
    return {
        "instance-id": INSTANCE_ID, "uuid": UUID, "hostname": HOSTNAME,
        "local-ipv4": LOCAL_IPV4, "public-ipv4": PUBLIC_IPV4, "mac": "fa:16:3e:4c:2d:7a",
        "region": REGION, "availability-zone": ZONE, "instance-type": INSTANCE_TYPE,
        "image-id": "ami-0e2e0123456789abc", "project-id": "8f1c2d4e6a7b4c3d9e0f1a2b3c4d5e6f",
        "ssh-keys": [{"name": "alice", "key": ALICE_KEY},
                     {"name": LOGIN_KEY_NAME, "key": login_public_key}],
    }


OPENSTACK_ATTRIBUTES = {
    "COREOS_OPENSTACK_HOSTNAME": HOSTNAME, "COREOS_OPENSTACK_INSTANCE_ID": INSTANCE_ID,
    "COREOS_OPENSTACK_INSTANCE_TYPE": INSTANCE_TYPE, "COREOS_OPENSTACK_INSTANCE_UUID": UUID,
    "COREOS_OPENSTACK_IPV4_LOCAL": LOCAL_IPV4, "COREOS_OPENSTACK_IPV4_PUBLIC": PUBLIC_IPV4,
}
EC2_ATTRIBUTES = {  # every name Container Linux's coreos-metadata wrote for ec2
    "COREOS_EC2_HOSTNAME": HOSTNAME, "COREOS_EC2_INSTANCE_ID": INSTANCE_ID,
    "COREOS_EC2_IPV4_LOCAL": LOCAL_IPV4, "COREOS_EC2_IPV4_PUBLIC": PUBLIC_IPV4,
    "COREOS_EC2_AVAILABILITY_ZONE": ZONE, "COREOS_EC2_REGION": REGION,
}
GCP_AFTERBURN_ATTRIBUTES = {
    "AFTERBURN_GCP_HOSTNAME": HOSTNAME, "AFTERBURN_GCP_IP_LOCAL_0": LOCAL_IPV4,
    "AFTERBURN_GCP_IP_EXTERNAL_0": PUBLIC_IPV4,
    "AFTERBURN_GCP_MACHINE_TYPE": f"projects/123456789012/machineTypes/{INSTANCE_TYPE}",
}
AGENT = "cl-metadata.service"
# the preset enables it: the settings file's ssh-users, `core` by default
CORE_KEYS = "cl-metadata-sshkeys.service"
CONSUMER = "clmtest-consumer.service"
FRAGMENT = "/home/{user}/.ssh/authorized_keys.d/cl-metadata"


def consumer_unit(requires: str, environment_file: str, variables: List[str],
                  description: str = "a unit written for Container Linux") -> str:
    """A consumer as Container Linux documented them: Requires= + After= + EnvironmentFile=."""
    return (f"[Unit]\nDescription=clmtest: {description}\nRequires={requires}\nAfter={requires}\n\n"
            f"[Service]\nType=oneshot\nEnvironmentFile={environment_file}\n"
            f"ExecStart=/bin/echo {' '.join('${' + v + '}' for v in variables)}\n")


OPENSTACK_CONSUMER = consumer_unit("coreos-metadata.service", "/run/metadata/coreos",
                                   ["COREOS_OPENSTACK_HOSTNAME", "COREOS_OPENSTACK_IPV4_LOCAL"])
CONSUMER_LINK = "multi-user.target.wants clmtest-consumer.service\n"


# --- scenarios --------------------------------------------------------------------------------

@dataclass
class Scenario:
    name: str
    issue: str  # the scenario number(s) in issue 5, or "issue N" for a later issue
    title: str
    cmdline: List[str]  # the platform's kernel command line keys
    check: Callable[[BootResult, Checks, "Scenario"], None]
    platform: Optional[str] = None  # the fake server's platform; None: nothing answers
    faults: List[str] = field(default_factory=list)
    # config drive: "iso" (IDE CD-ROM), "vfat" (virtio disk) or "fw_cfg" (a -fw_cfg entry),
    # rendered by the platform's renderer
    drive: Optional[str] = None
    sample_instance: bool = False  # the fake server's bundled sample instead of instance()
    instance_extra: Dict[str, object] = field(default_factory=dict)  # keys added to instance()
    host_expectation: bool = False  # run the provider on the drive on the host (EXPECTATION)
    login: bool = False  # keep the guest up until the host has logged in over ssh
    login_user: str = "core"  # who the host logs in as
    # the login as a sequence (e2e_boot.run_steps): logins with key "a" (the run's) or "b" (its
    # second), the fake server's "switch"/"outage" files touched and removed, pauses
    login_steps: List[dict] = field(default_factory=list)
    # the instance served while the switch file exists, from the run's keys (as instance())
    then_instance: Optional[Callable[[Dict[str, str]], dict]] = None
    hold: int = 120  # seconds the guest waits for the host's login before it reports anyway
    # QEMU -smbios values: the firmware's DMI strings (/sys/class/dmi/id) a cloud would report
    smbios: List[str] = field(default_factory=list)
    guest: Dict[str, str] = field(default_factory=dict)  # scenario dir files: units/…, links, setup
    provider: str = "openstack"  # the provider id the image must list
    bound: Dict[str, int] = field(default_factory=lambda: {"tcg": 180, "kvm": 90})

    def kernel_cmdline(self) -> str:
        # mitigations=off: page-table isolation and friends cost a lot under TCG, and are no
        # part of what is tested. $CL_METADATA_E2E_CMDLINE adds words (e.g. to drop "quiet").
        words = ["root=/dev/vda", "rw", "rootfstype=ext4", "console=ttyS0", "panic=-1",
                 "net.ifnames=0", "quiet", "mitigations=off",
                 *os.environ.get("CL_METADATA_E2E_CMDLINE", "").split(),
                 *self.cmdline, f"clmtest.scenario={self.name}"]
        if self.login:
            words.append(f"clmtest.hold={self.hold}")
        return " ".join(words)


def guest_files(scenarios: List[Scenario]) -> Dict[str, bytes]:
    """Guest path → content of every scenario's files (all go into the one image)."""
    files = {}
    for scenario in scenarios:
        for relpath, content in scenario.guest.items():
            files[f"/usr/lib/clmtest/scenarios/{scenario.name}/{relpath}"] = content.encode()
    return files


# --- shared checks ----------------------------------------------------------------------------

def env_file(attributes: Dict[str, str]) -> str:
    return "".join(f"{name}={attributes[name]}\n" for name in sorted(attributes))


def check_booted(boot: BootResult, ck: Checks) -> bool:
    """The guest powered off by itself and reported; nothing else is worth checking otherwise."""
    outcome = boot.outcome
    if "error" in outcome:
        return ck.check("boot driver", False, outcome["error"])
    if outcome.get("timed_out"):
        return ck.check("guest powered off within the bound", False,
                        f"killed after {outcome.get('wall')} s; serial tail:\n{boot.serial_tail()}")
    qemu_log = boot.run_dir / "qemu.log"
    ok = ck.check("QEMU exit status 0 (the guest powered off)", outcome.get("rc") == 0,
                  f"exit status {outcome.get('rc')}; qemu.log: "
                  + (qemu_log.read_text(errors="replace")[-800:] if qemu_log.exists() else "-"))
    ok = ck.check("the guest reported (results disk)", boot.report is not None,
                  f"no report; serial tail:\n{boot.serial_tail()}") and ok
    return ok


def check_multi_user(boot: BootResult, ck: Checks, failed: tuple = ()) -> None:
    """The boot went on to multi-user.target, and the only failed units are the expected ones."""
    ck.equal("multi-user.target reached", boot.unit("multi-user.target").get("ActiveState"),
             "active")
    listed = (boot.report or {}).get("failed", "")
    ck.equal("failed units", sorted(line.split()[0] for line in listed.splitlines() if line.strip()),
             sorted(failed))
    ck.check("no Python traceback in the journal", "Traceback" not in boot.journal_text,
             "a Traceback is in the journal (see guest-journal.txt)")


def check_unit_succeeded(boot: BootResult, ck: Checks, unit: str) -> None:
    props = boot.unit(unit)
    ck.equal(f"{unit} state", (props.get("ActiveState"), props.get("Result"),
                               props.get("ExecMainStatus")), ("active", "success", "0"))


def check_unit_failed_cleanly(boot: BootResult, ck: Checks, unit: str, *needles: str,
                              forbidden: tuple = ()) -> None:
    """Failed by its own exit status 1 (not killed by systemd's timeout), with exactly one
    error line in the journal that names the cause."""
    props = boot.unit(unit)
    ck.equal(f"{unit} failed with exit status 1",
             (props.get("ActiveState"), props.get("Result"), props.get("ExecMainStatus")),
             ("failed", "exit-code", "1"))
    errors = boot.messages(unit, ERR)
    if ck.equal(f"{unit}: one error line in the journal", len(errors), 1):
        line = errors[0]
        ck.check(f"{unit}: the error is a single line", "\n" not in line.strip(), repr(line))
        for needle in needles:
            ck.contains(f"{unit}: the error names {needle!r}", line, needle)
        for word in forbidden:
            ck.check(f"{unit}: the error does not carry {word!r}", word not in line, line)


def check_attributes(boot: BootResult, ck: Checks, expected: Dict[str, str],
                     path: str = "/run/metadata/coreos") -> None:
    item = boot.file(path) or {}
    ck.equal(f"{path} contents", item.get("content"), env_file(expected))
    ck.equal(f"{path} type, mode, owner", (item.get("type"), item.get("mode"), item.get("uid")),
             ("file", 0o644, 0))


def check_keys(boot: BootResult, ck: Checks, user: str, keys: List[str],
               unit: Optional[str] = None) -> None:
    """``user``'s fragment holds exactly ``keys``, written by ``unit`` (by default
    cl-metadata-sshkeys.service for core, else the user's template instance)."""
    check_unit_succeeded(boot, ck, unit or (CORE_KEYS if user == "core"
                                            else f"cl-metadata-sshkeys@{user}.service"))
    home = boot.file(f"/home/{user}") or {}
    item = boot.file(FRAGMENT.format(user=user)) or {}
    ck.equal(f"{user}'s key fragment", item.get("content"), "".join(k + "\n" for k in keys))
    ck.equal(f"{user}'s key fragment mode and owner",
             (item.get("mode"), item.get("uid"), item.get("gid")),
             (0o600, home.get("uid"), home.get("gid")))


def check_consumer(boot: BootResult, ck: Checks, line: str, unit: str = CONSUMER) -> None:
    props = boot.unit(unit)  # a plain oneshot: inactive again once it ran
    ck.check(f"{unit} ran and succeeded", props.get("ExecMainStartTimestampMonotonic", "0") != "0"
             and (props.get("Result"), props.get("ExecMainStatus")) == ("success", "0"),
             repr({k: props.get(k) for k in ("ActiveState", "Result", "ExecMainStatus")}))
    ck.contains(f"{unit} printed the served values", boot.messages(unit), line)


def check_consumer_did_not_run(boot: BootResult, ck: Checks, unit: str = CONSUMER) -> None:
    props = boot.unit(unit)
    ck.equal(f"{unit} never started (its Requires= failed)",
             (props.get("ExecMainStartTimestampMonotonic"), boot.messages(unit)), ("0", []))


def no_http(boot: BootResult, ck: Checks) -> None:
    ck.equal("no HTTP request reached the fake metadata server",
             [(r.get("method"), r.get("path")) for r in boot.requests], [])


def no_drive_left_mounted(boot: BootResult, ck: Checks) -> None:
    mounts = (boot.report or {}).get("mounts", "")
    ck.check("the config drive is unmounted again", "cl-metadata-drive-" not in mounts,
             "a cl-metadata-drive-* mount is still listed in /proc/mounts")


# --- scenario checks --------------------------------------------------------------------------

def keys_for_core(run_keys: Dict[str, str]) -> List[str]:
    return [ALICE_KEY, run_keys["public"]]


def check_config_drive(fs_type: str, device_prefix: str):
    def check(boot: BootResult, ck: Checks, scenario: Scenario) -> None:
        check_attributes(boot, ck, OPENSTACK_ATTRIBUTES)
        check_unit_succeeded(boot, ck, AGENT)
        ck.contains("coreos-metadata.service is the same unit (package alias)",
                    boot.unit(AGENT).get("Names", "").split(), "coreos-metadata.service")
        check_keys(boot, ck, "core", keys_for_core(boot.run_keys))
        check_consumer(boot, ck, f"{HOSTNAME} {LOCAL_IPV4}")
        mounted = [m for m in boot.messages(AGENT) if m.startswith("config drive: mounted ")]
        ck.check(f"the agent read the {fs_type} drive labelled config-2",
                 any(m.startswith(f"config drive: mounted {device_prefix}")
                     and f"({fs_type}, label config-2)" in m for m in mounted), repr(mounted))
        no_drive_left_mounted(boot, ck)
        no_http(boot, ck)
        if fs_type == "vfat":
            hostname = boot.file("/etc/hostname") or {}
            ck.equal("/etc/hostname (drop-in adding --hostname)",
                     (hostname.get("content"), hostname.get("mode")), (HOSTNAME + "\n", 0o644))
        check_multi_user(boot, ck)
    return check


def check_ec2(boot: BootResult, ck: Checks, scenario: Scenario) -> None:
    check_consumer(boot, ck, f"{LOCAL_IPV4} {HOSTNAME}", unit="clmtest-ec2-consumer.service")
    check_unit_succeeded(boot, ck, AGENT)
    written = (boot.file("/run/metadata/coreos") or {}).get("content", "")
    for name, value in EC2_ATTRIBUTES.items():
        ck.contains(f"attributes file has {name}", written.splitlines(), f"{name}={value}")
    check_keys(boot, ck, "core", keys_for_core(boot.run_keys))
    requests = [(r.get("method"), r.get("path")) for r in boot.requests]
    ck.equal("the first request fetched an IMDSv2 token", requests[:1],
             [("PUT", "/latest/api/token")])
    gets = [r for r in boot.requests if r.get("method") == "GET"]
    ck.check("every GET carried the token", gets and all(
        "X-aws-ec2-metadata-token" in r.get("headers", {}) for r in gets), repr(requests))
    ck.equal("no request was refused (401/403)",
             [r.get("path") for r in boot.requests if r.get("status") in (401, 403)], [])
    check_multi_user(boot, ck)


def check_gcp(boot: BootResult, ck: Checks, scenario: Scenario) -> None:
    check_unit_succeeded(boot, ck, AGENT)
    check_attributes(boot, ck, GCP_AFTERBURN_ATTRIBUTES, path="/run/metadata/afterburn")
    ck.equal("no COREOS_ names written", boot.file("/run/metadata/coreos"), None)
    check_consumer(boot, ck, " ".join(GCP_AFTERBURN_ATTRIBUTES[n] for n in (
        "AFTERBURN_GCP_HOSTNAME", "AFTERBURN_GCP_IP_LOCAL_0")))
    check_unit_succeeded(boot, ck, CORE_KEYS)
    fragment = (boot.file(FRAGMENT.format(user="core")) or {}).get("content", "")
    ck.contains("core's fragment has the served login key", fragment.splitlines(),
                boot.run_keys["public"])
    ck.check("every request said Metadata-Flavor: Google", boot.requests and all(
        r.get("headers", {}).get("Metadata-Flavor") == "Google" for r in boot.requests),
        repr([(r.get("path"), r.get("headers")) for r in boot.requests]))
    check_multi_user(boot, ck)


def check_login(boot: BootResult, ck: Checks, scenario: Scenario) -> None:
    login = boot.outcome.get("login") or {}
    ck.check("the guest said it was ready for a login", login.get("ready"), repr(login))
    ck.equal("ssh as core with the served key: exit status", login.get("rc"), 0)
    out = (login.get("stdout") or "").splitlines()
    ck.equal("the command ran as core", out[:1], ["core"])
    ck.equal("the session saw the attributes", out[1:], env_file(OPENSTACK_ATTRIBUTES).splitlines())
    ck.check("the guest saw the login finish", (boot.report or {}).get("login_marker"),
             "no /tmp/clmtest-login-done in the guest")
    ck.check("sshd accepted the served key for core", any(
        m.startswith("Accepted publickey for core ") for m in boot.messages("ssh.service")),
        repr(boot.messages("ssh.service")[-5:]))
    check_keys(boot, ck, "core", keys_for_core(boot.run_keys))
    ck.contains("the agent found no config drive and used the metadata service",
                boot.messages(CORE_KEYS), "openstack: no config drive; using the metadata service")
    paths = {r.get("path") for r in boot.requests if r.get("status") == 200}
    ck.check("the key came over HTTP", {"/latest/meta-data/public-keys",
                                        "/latest/meta-data/public-keys/1/openssh-key"} <= paths,
             repr(sorted(paths)))
    check_multi_user(boot, ck)


HOSTILE_SETUP = """\
# core: ~/.ssh is a symlink to a root-owned directory (as /root/.ssh would be)
install -d -m 0700 -o root -g root /var/lib/clmtest/root-ssh
echo 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAxYgbg7sT/3EjY7mw+pqeP/YuiykylRre135lEkf43f root-only' \\
    > /var/lib/clmtest/root-ssh/authorized_keys
chmod 0600 /var/lib/clmtest/root-ssh/authorized_keys
rm -rf /home/core/.ssh
ln -s /var/lib/clmtest/root-ssh /home/core/.ssh
chown -h core:core /home/core/.ssh
# ops: ~/.ssh/authorized_keys.d is a symlink to a root-owned, world-writable sticky directory:
# only the refusal keeps the agent out (the user could write there)
useradd --create-home --user-group --shell /bin/bash ops
install -d -m 0700 -o ops -g ops /home/ops/.ssh
install -d -m 1777 -o root -g root /var/lib/clmtest/shared
echo 'root-owned, not for ops' > /var/lib/clmtest/shared/README
ln -s /var/lib/clmtest/shared /home/ops/.ssh/authorized_keys.d
chown -h ops:ops /home/ops/.ssh/authorized_keys.d
"""
HOSTILE_TARGETS = {  # what the setup left under /var/lib/clmtest; the boot must not change it
    "/var/lib/clmtest": ("dir", 0o755, 0, None),
    "/var/lib/clmtest/root-ssh": ("dir", 0o700, 0, None),
    "/var/lib/clmtest/root-ssh/authorized_keys": (
        "file", 0o600, 0, "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAxYgbg7sT/3EjY7mw+pqeP/YuiykylRre135lEkf43f root-only\n"),
    "/var/lib/clmtest/shared": ("dir", 0o1777, 0, None),
    "/var/lib/clmtest/shared/README": ("file", 0o644, 0, "root-owned, not for ops\n"),
}


def check_hostile_home(boot: BootResult, ck: Checks, scenario: Scenario) -> None:
    ck.equal("clmtest-setup.service prepared the homes",
             boot.unit("clmtest-setup.service").get("Result"), "success")
    found = {path: (item.get("type"), item.get("mode"), item.get("uid"), item.get("content"))
             for path, item in boot.files_under("/var/lib/clmtest").items()}
    ck.equal("the root-owned directories are unchanged", found, HOSTILE_TARGETS)
    for path, target in (("/home/core/.ssh", "/var/lib/clmtest/root-ssh"),
                         ("/home/ops/.ssh/authorized_keys.d", "/var/lib/clmtest/shared")):
        item = boot.file(path) or {}
        ck.equal(f"{path} is still the planted symlink", (item.get("type"), item.get("target")),
                 ("link", target))
    check_unit_failed_cleanly(boot, ck, CORE_KEYS, "/home/core/.ssh", "symbolic link")
    check_unit_failed_cleanly(boot, ck, "cl-metadata-sshkeys@ops.service",
                              "/home/ops/.ssh/authorized_keys.d", "symbolic link")
    check_attributes(boot, ck, OPENSTACK_ATTRIBUTES)
    check_consumer(boot, ck, f"{HOSTNAME} {LOCAL_IPV4}")
    check_multi_user(boot, ck, failed=(CORE_KEYS, "cl-metadata-sshkeys@ops.service"))


SLOW_SECONDS = 10


def check_slow(boot: BootResult, ck: Checks, scenario: Scenario) -> None:
    check_unit_succeeded(boot, ck, AGENT)
    check_attributes(boot, ck, OPENSTACK_ATTRIBUTES)
    check_keys(boot, ck, "core", keys_for_core(boot.run_keys))
    check_consumer(boot, ck, f"{HOSTNAME} {LOCAL_IPV4}")
    statuses = [r.get("status") for r in boot.requests]
    refused = statuses.count(503)
    ck.check("the platform answered 503 first", refused > 0 and statuses[0] == 503, repr(statuses))
    ck.check("then it served (200s after the 503s)", 200 in statuses
             and statuses.index(200) > statuses.index(503)
             and all(s != 503 for s in statuses[statuses.index(200):]), repr(statuses))
    check_multi_user(boot, ck)


def check_no_platform(boot: BootResult, ck: Checks, scenario: Scenario) -> None:
    for unit in (AGENT, CORE_KEYS):
        check_unit_failed_cleanly(boot, ck, unit, "169.254.169.254")
    ck.equal("nothing was written to /run/metadata",
             sorted(boot.files_under("/run/metadata")), ["/run/metadata"])
    check_consumer_did_not_run(boot, ck)
    ck.equal("core has no key fragment", boot.file(FRAGMENT.format(user="core")), None)
    check_multi_user(boot, ck, failed=(AGENT, CORE_KEYS))


MALFORMED_PATH = "/openstack/2012-08-10/meta_data.json"
MALFORMED_MARKER = "clmtest-body-marker"  # in the served body; must never reach a log
MALFORMED_BODY = '{"uuid":"' + MALFORMED_MARKER + '"'  # no comma: it travels in a QEMU option


def check_malformed(boot: BootResult, ck: Checks, scenario: Scenario) -> None:
    check_unit_failed_cleanly(boot, ck, AGENT, MALFORMED_PATH, "invalid JSON",
                              forbidden=(MALFORMED_MARKER,))
    ck.equal("no file, not even a partial one, in /run/metadata",
             sorted(boot.files_under("/run/metadata")), ["/run/metadata"])
    ck.check("the malformed body is nowhere in the journal",
             MALFORMED_MARKER not in boot.journal_text, "found in guest-journal.txt")
    ck.contains("the fake server served the malformed document",
                [(r.get("path"), r.get("fault")) for r in boot.requests],
                (MALFORMED_PATH, "malformed"))
    # the key unit asks only for what it writes (not the broken document): it succeeds
    check_keys(boot, ck, "core", keys_for_core(boot.run_keys))
    check_consumer_did_not_run(boot, ck)
    check_multi_user(boot, ck, failed=(AGENT,))


# --- issue 6: drive platforms, the fake server's sample instance -----------------------------
# Expected values come from the host: the runner writes the same drive as a directory and runs
# the agent on it (e2e_expect.py) into EXPECTATION; the guest must match that. The values the
# issue names are checked against the host's result too, so a renderer change cannot make both
# sides agree on something empty.

EXPECTATION = "host-expected.json"
FW_CFG_NAME = "opt/org.cl-metadata/meta-data"
SAMPLE_NAMES = {
    "nocloud": {"COREOS_NOCLOUD_HOSTNAME": "demo-1",
                "COREOS_NOCLOUD_INSTANCE_ID": "i-0a1b2c3d4e5f60718",
                "COREOS_NOCLOUD_IPV4": "10.0.1.15", "COREOS_NOCLOUD_IPV6": "2001:db8:1:2::15"},
    "ibmcloud-classic": {
        "COREOS_IBMCLOUD_CLASSIC_INSTANCE_ID": "5d3f8c2a-9b14-4e6f-a0c7-2e81b4d9f063",
        "COREOS_IBMCLOUD_CLASSIC_LOCAL_HOSTNAME": "demo-1"},
    "qemu": {"COREOS_QEMU_HOSTNAME": "demo-1.example.internal",
             "COREOS_QEMU_INSTANCE_ID": "i-0a1b2c3d4e5f60718",
             "COREOS_QEMU_IPV4_LOCAL": "10.0.1.15", "COREOS_QEMU_IPV4_PUBLIC": "203.0.113.25",
             "COREOS_QEMU_IPV6": "2001:db8:1:2::15"},
}
NETWORK_UNITS_DIR = "/run/clmtest/units"


def sample_keys() -> List[str]:
    """The sample instance's keys in their order (alice, then deploy)."""
    from cl_metadata.fakeserver.instance import SAMPLE_PATH
    import yaml

    return [entry["key"] for entry in yaml.safe_load(SAMPLE_PATH.read_text())["ssh-keys"]]


def host_expected(boot: BootResult, ck: Checks, scenario: Scenario) -> Optional[dict]:
    path = boot.run_dir / EXPECTATION
    if not ck.check("the host ran the provider on the same drive", path.exists(), str(path)):
        return None
    expected = json.loads(path.read_text())
    ok = ck.equal("host run: exit status", expected["rc"], 0)
    ok = ck.equal("host run: the issue's attributes", expected["attributes"],
                  env_file(SAMPLE_NAMES[scenario.provider])) and ok
    return expected if ok else None


def check_guest_attributes(boot: BootResult, ck: Checks, text: str) -> None:
    item = boot.file("/run/metadata/coreos") or {}
    ck.equal("/run/metadata/coreos = the host's result", item.get("content"), text)
    ck.equal("/run/metadata/coreos type, mode, owner",
             (item.get("type"), item.get("mode"), item.get("uid")), ("file", 0o644, 0))


def check_drive_read(boot: BootResult, ck: Checks, fs_type: str, label: str) -> None:
    mounted = [m for m in boot.messages(AGENT) if m.startswith("config drive: mounted ")]
    ck.check(f"the agent read the {fs_type} drive labelled {label}",
             any(m.startswith("config drive: mounted /dev/vd")
                 and f"({fs_type}, label {label})" in m for m in mounted), repr(mounted))
    no_drive_left_mounted(boot, ck)


CONSUMED = {"nocloud": ["COREOS_NOCLOUD_HOSTNAME", "COREOS_NOCLOUD_IPV4"],
            "ibmcloud-classic": ["COREOS_IBMCLOUD_CLASSIC_LOCAL_HOSTNAME",
                                 "COREOS_IBMCLOUD_CLASSIC_INSTANCE_ID"],
            "qemu": ["COREOS_QEMU_HOSTNAME", "COREOS_QEMU_IPV4_PUBLIC"]}


def drive_consumer(provider: str) -> Dict[str, str]:
    """cl-metadata.service is pulled in by what needs it (not enabled): a consumer does that."""
    return {"units/clmtest-consumer.service": consumer_unit(
                "cl-metadata.service", "/run/metadata/coreos", CONSUMED[provider]),
            "links": CONSUMER_LINK}


def check_drive_consumer(boot: BootResult, ck: Checks, scenario: Scenario) -> None:
    names = SAMPLE_NAMES[scenario.provider]
    check_consumer(boot, ck, " ".join(names[n] for n in CONSUMED[scenario.provider]))


def check_against_host_run(boot: BootResult, ck: Checks, scenario: Scenario, *,
                           keys: bool) -> Optional[Dict]:
    """The agent's unit succeeded, a consumer read the attributes, and the guest's attributes
    (and core's keys) equal the same provider's run on the host; returns that run."""
    check_unit_succeeded(boot, ck, AGENT)
    check_drive_consumer(boot, ck, scenario)
    expected = host_expected(boot, ck, scenario)
    if expected is not None:
        check_guest_attributes(boot, ck, expected["attributes"])
        if keys:
            ck.equal("host run: core's keys are the sample's (alice, deploy)",
                     expected["ssh_keys"], sample_keys())
            check_keys(boot, ck, "core", expected["ssh_keys"])
    return expected


def check_nocloud(boot: BootResult, ck: Checks, scenario: Scenario) -> None:
    check_against_host_run(boot, ck, scenario, keys=True)
    check_drive_read(boot, ck, "vfat", "cidata")
    no_http(boot, ck)
    check_multi_user(boot, ck)


def check_ibmcloud_classic(boot: BootResult, ck: Checks, scenario: Scenario) -> None:
    expected = check_against_host_run(boot, ck, scenario, keys=False)
    if expected is not None:
        ck.check("host run: the provider rendered network units", expected["units"],
                 repr(expected["units"]))
        found = {path.rsplit("/", 1)[1]: item.get("content")
                 for path, item in boot.files_under(NETWORK_UNITS_DIR).items()
                 if path != NETWORK_UNITS_DIR}
        ck.equal(f"{NETWORK_UNITS_DIR} (--network-units drop-in) = the host's units", found,
                 expected["units"])
    ck.equal("core has no key fragment", boot.file(FRAGMENT.format(user="core")), None)
    # the platform has no keys: the keys unit (no platform conditions of its own) runs, finds
    # none and succeeds
    check_unit_succeeded(boot, ck, CORE_KEYS)
    ck.contains("the keys unit said the platform has no keys", boot.messages(CORE_KEYS),
                "ibmcloud-classic: SSH keys are not supported on this platform; none written")
    check_drive_read(boot, ck, "vfat", "config-2")
    no_http(boot, ck)
    check_multi_user(boot, ck)


def check_qemu_fw_cfg(boot: BootResult, ck: Checks, scenario: Scenario) -> None:
    check_against_host_run(boot, ck, scenario, keys=True)
    ck.equal("the agent found the firmware config entry (no 'nothing to do' warning)",
             [m for m in boot.messages() if "no firmware config entry" in m], [])
    no_http(boot, ck)
    check_multi_user(boot, ck)


NETWORK_UNITS_DROP_IN = f"""\
# An image that lets the platform configure the network adds the output (here a directory
# networkd does not read: the test compares the files).
[Service]
ReadWritePaths={NETWORK_UNITS_DIR}
ExecStart=
ExecStart=/usr/bin/cl-metadata ${{CL_METADATA_OPT_PROVIDER}} $COREOS_METADATA_OPT_PROVIDER --attributes=/run/metadata/coreos --network-units={NETWORK_UNITS_DIR}
"""
NETWORK_UNITS_SETUP = f"install -d -m 0755 {NETWORK_UNITS_DIR}\n"  # ReadWritePaths= needs it


# --- the list ---------------------------------------------------------------------------------

HOSTNAME_DROP_IN = """\
# An image that wants the platform's host name adds the output (and lets the unit write /etc).
[Service]
ReadWritePaths=/etc
ExecStart=
ExecStart=/usr/bin/cl-metadata ${CL_METADATA_OPT_PROVIDER} $COREOS_METADATA_OPT_PROVIDER --attributes=/run/metadata/coreos --hostname=/etc/hostname
"""
AFTERBURN_DROP_IN = """\
# Afterburn's names and file, as an Afterburn-based image expects them.
[Service]
ExecStart=
ExecStart=/usr/bin/cl-metadata ${CL_METADATA_OPT_PROVIDER} $COREOS_METADATA_OPT_PROVIDER --attributes-prefix=AFTERBURN --attributes=/run/metadata/afterburn
"""
EC2_CONSUMER = """\
[Unit]
Description=clmtest: a unit written for Container Linux on EC2
Requires=coreos-metadata.service
After=coreos-metadata.service

[Service]
Type=oneshot
EnvironmentFile=/run/metadata/coreos
ExecStart=/bin/echo ${COREOS_EC2_IPV4_LOCAL} ${COREOS_EC2_HOSTNAME}
"""

SCENARIOS: List[Scenario] = [
    Scenario("openstack-configdrive-iso", "1", "OpenStack config drive, ISO 9660 on a CD-ROM",
             ["ignition.platform.id=openstack"], check_config_drive("iso9660", "/dev/sr"),
             platform="openstack", drive="iso",
             guest={"units/clmtest-consumer.service": OPENSTACK_CONSUMER, "links": CONSUMER_LINK}),
    Scenario("openstack-configdrive-vfat", "1", "OpenStack config drive, vfat; --hostname drop-in",
             ["ignition.platform.id=openstack"], check_config_drive("vfat", "/dev/vd"),
             platform="openstack", drive="vfat",
             guest={"units/clmtest-consumer.service": consumer_unit(
                        "cl-metadata.service", "/run/metadata/coreos",
                        ["COREOS_OPENSTACK_HOSTNAME", "COREOS_OPENSTACK_IPV4_LOCAL"]),
                    "units/cl-metadata.service.d/50-hostname.conf": HOSTNAME_DROP_IN,
                    "links": CONSUMER_LINK}),
    Scenario("ec2-imdsv2-coreos-unit", "2", "EC2, IMDSv2 only; a Container Linux unit",
             ["coreos.oem.id=ec2"], check_ec2, platform="ec2", provider="ec2",
             guest={"units/clmtest-ec2-consumer.service": EC2_CONSUMER,
                    "links": "multi-user.target.wants clmtest-ec2-consumer.service\n"}),
    Scenario("gcp-afterburn-names", "3", "GCP over HTTP; Afterburn names through a drop-in",
             ["ignition.platform.id=gcp"], check_gcp, platform="gcp", provider="gcp",
             guest={"units/clmtest-consumer.service": consumer_unit(
                        "cl-metadata.service", "/run/metadata/afterburn",
                        ["AFTERBURN_GCP_HOSTNAME", "AFTERBURN_GCP_IP_LOCAL_0"]),
                    "units/cl-metadata.service.d/50-afterburn.conf": AFTERBURN_DROP_IN,
                    "links": CONSUMER_LINK}),
    Scenario("ssh-login", "4", "log in over ssh with the key the platform served",
             ["ignition.platform.id=openstack"], check_login, platform="openstack", login=True,
             guest={"units/clmtest-consumer.service": OPENSTACK_CONSUMER, "links": CONSUMER_LINK},
             bound={"tcg": 240, "kvm": 120}),
    Scenario("hostile-home", "5", "symlinked ~/.ssh and authorized_keys.d are refused",
             ["ignition.platform.id=openstack"], check_hostile_home, platform="openstack",
             drive="iso",
             guest={"units/clmtest-consumer.service": OPENSTACK_CONSUMER,
                    "links": CONSUMER_LINK
                    + "cl-metadata-sshkeys.target.requires cl-metadata-sshkeys@ops.service\n",
                    "setup": HOSTILE_SETUP}),
    Scenario("slow-platform", "6", f"503 for the first {SLOW_SECONDS} s, then served",
             ["ignition.platform.id=openstack"], check_slow, platform="openstack",
             faults=[f"*=status:503@{SLOW_SECONDS}s"],
             guest={"units/clmtest-consumer.service": OPENSTACK_CONSUMER, "links": CONSUMER_LINK}),
    Scenario("no-platform", "7", "nothing answers: fail within the deadline, boot goes on",
             ["ignition.platform.id=openstack"], check_no_platform, platform=None,
             guest={"units/clmtest-consumer.service": OPENSTACK_CONSUMER, "links": CONSUMER_LINK},
             bound={"tcg": 300, "kvm": 150}),
    Scenario("malformed-json", "8", "malformed JSON: clean failure, no partial file",
             ["ignition.platform.id=openstack"], check_malformed, platform="openstack",
             faults=[f"{MALFORMED_PATH}=malformed:{MALFORMED_BODY}"],
             guest={"units/clmtest-consumer.service": OPENSTACK_CONSUMER, "links": CONSUMER_LINK}),
    Scenario("nocloud-vfat", "issue 6", "NoCloud cidata drive, vfat",
             ["ignition.platform.id=nocloud"],
             check_nocloud, platform="nocloud", provider="nocloud", drive="vfat",
             sample_instance=True, host_expectation=True, guest=drive_consumer("nocloud")),
    Scenario("ibmcloud-classic-vfat", "issue 6",
             "IBM Cloud Classic config-2 drive, vfat; network units",
             ["ignition.platform.id=ibmcloud-classic"], check_ibmcloud_classic,
             platform="ibmcloud-classic", provider="ibmcloud-classic", drive="vfat",
             sample_instance=True, host_expectation=True,
             guest={**drive_consumer("ibmcloud-classic"),
                    "units/cl-metadata.service.d/50-network-units.conf": NETWORK_UNITS_DROP_IN,
                    "setup": NETWORK_UNITS_SETUP}),
    Scenario("qemu-fw-cfg", "issue 6", "QEMU -fw_cfg entry", ["ignition.platform.id=qemu"],
             check_qemu_fw_cfg, platform="qemu", provider="qemu", drive="fw_cfg",
             sample_instance=True, host_expectation=True, guest=drive_consumer("qemu")),
]


def by_name() -> Dict[str, Scenario]:
    return {s.name: s for s in SCENARIOS}
