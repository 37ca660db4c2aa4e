"""The end-to-end boots of issue 11: cl-metadata dropped into images built for someone else —
Flatcar (``/run/metadata/flatcar``), Fedora CoreOS (Afterburn's unit, file and journal entries),
a plain Debian image (no platform on the kernel command line: the settings file and the
firmware's DMI strings) — and the boots where it must do nothing at all (an unrecognised
machine, bare metal, QEMU without fw_cfg data, the kill switch on the kernel command line).

Same harness as e2e_scenarios.py: each scenario's units, drop-ins, links and setup script are
baked into the one image and activated by ``clmtest.scenario=NAME``.
"""

from __future__ import annotations

import posixpath
from typing import List

from e2e_results import BootResult, Checks
from e2e_scenarios import (AGENT, ALICE_KEY, CONSUMER_LINK, CORE_KEYS, FRAGMENT,
                           HOSTNAME, INSTANCE_ID, INSTANCE_TYPE, LOCAL_IPV4, PUBLIC_IPV4, REGION,
                           ZONE, Scenario, check_attributes, check_consumer, check_keys,
                           check_multi_user, check_unit_succeeded, consumer_unit, keys_for_core,
                           no_http)

AFTERBURN = "afterburn.service"
CHECK_IN = "cl-metadata-checkin.service"
FIRSTBOOT_CHECK_IN = "cl-metadata-firstboot-checkin.service"
KEYS_TARGET = "cl-metadata-sshkeys.target"
# every unit the package has that runs the agent, as a boot of these scenarios loads them
# (cl-metadata.service and afterburn.service pulled in by the scenario, the rest by the preset)
AGENT_SERVICES = (AGENT, AFTERBURN, CORE_KEYS, CHECK_IN)
KEYS_WRITTEN_ID = "0f7d7a502f2d433caa1323440a6b4190"  # Afterburn's "SSH keys written"
KEYS_REMOVED_ID = "f8b91c53f5544868a3a10d0dcf68e9ea"

# What the fake server's aws/ec2 renderer serves for e2e_scenarios.instance(), under the names
# each family of consumers reads (two stems the renderer derives: the zone id, the public name).
_AWS_VALUES = {
    "AVAILABILITY_ZONE": ZONE, "AVAILABILITY_ZONE_ID": "use1-az1", "HOSTNAME": HOSTNAME,
    "INSTANCE_ID": INSTANCE_ID, "INSTANCE_TYPE": INSTANCE_TYPE, "IPV4_LOCAL": LOCAL_IPV4,
    "IPV4_PUBLIC": PUBLIC_IPV4, "PUBLIC_HOSTNAME": "ec2-203-0-113-25.compute-1.amazonaws.com",
    "REGION": REGION,
}
FLATCAR_EC2_ATTRIBUTES = {f"COREOS_EC2_{stem}": value for stem, value in _AWS_VALUES.items()}
AFTERBURN_AWS_ATTRIBUTES = {f"AFTERBURN_AWS_{stem}": value for stem, value in _AWS_VALUES.items()}


def pulled_in(*units: str) -> str:
    """``links`` lines pulling units in at boot, as a consumer's Requires= would."""
    return "".join(f"multi-user.target.wants {unit}\n" for unit in units)


# --- Flatcar: flatcar.oem.id=ec2, /run/metadata/flatcar ---------------------------------------

FLATCAR_DROP_IN = """\
# Flatcar's layout, as the README documents it: /run/metadata/flatcar with Flatcar's names,
# /run/metadata/coreos a link to it. On coreos-metadata.service, the name Flatcar's drop-ins use.
[Service]
Environment="CL_METADATA_OPT_ATTRIBUTES=--attributes-flavor=flatcar --attributes=/run/metadata/flatcar"
"""
FLATCAR_CONSUMER = consumer_unit("coreos-metadata.service", "/run/metadata/flatcar",
                                 ["COREOS_EC2_IPV4_LOCAL"], "a unit written for Flatcar on EC2")


def check_imdsv2(boot: BootResult, ck: Checks) -> None:
    requests = [(r.get("method"), r.get("path")) for r in boot.requests]
    ck.equal("the first request fetched an IMDSv2 token", requests[:1],
             [("PUT", "/latest/api/token")])
    gets = [r for r in boot.requests if r.get("method") == "GET"]
    ck.check("every GET carried the token", gets and all(
        "X-aws-ec2-metadata-token" in r.get("headers", {}) for r in gets), repr(requests))


def check_flatcar(boot: BootResult, ck: Checks, scenario: Scenario) -> None:
    check_unit_succeeded(boot, ck, AGENT)
    ck.check("the drop-in on coreos-metadata.service applied",
             "coreos-metadata.service.d/10-flatcar.conf" in boot.unit(AGENT).get("DropInPaths", ""),
             repr(boot.unit(AGENT).get("DropInPaths")))
    check_consumer(boot, ck, LOCAL_IPV4)
    check_attributes(boot, ck, FLATCAR_EC2_ATTRIBUTES, path="/run/metadata/flatcar")
    link = boot.file("/run/metadata/coreos") or {}
    target = posixpath.normpath(posixpath.join("/run/metadata", link.get("target") or ""))
    ck.equal("/run/metadata/coreos is a symlink to /run/metadata/flatcar",
             (link.get("type"), target), ("link", "/run/metadata/flatcar"))
    ck.equal("/run/metadata holds the file and the link only",
             sorted(boot.files_under("/run/metadata")),
             ["/run/metadata", "/run/metadata/coreos", "/run/metadata/flatcar"])
    check_keys(boot, ck, "core", keys_for_core(boot.run_keys))
    check_imdsv2(boot, ck)
    check_multi_user(boot, ck)


# --- Fedora CoreOS: afterburn.service, /run/metadata/afterburn, the keys journal entry ---------

AFTERBURN_CONSUMER = consumer_unit("afterburn.service", "/run/metadata/afterburn",
                                   ["AFTERBURN_AWS_IPV4_LOCAL"],
                                   "a unit written for Fedora CoreOS on AWS")


def check_fcos(boot: BootResult, ck: Checks, scenario: Scenario) -> None:
    check_unit_succeeded(boot, ck, AFTERBURN)
    check_consumer(boot, ck, LOCAL_IPV4)
    check_attributes(boot, ck, AFTERBURN_AWS_ATTRIBUTES, path="/run/metadata/afterburn")
    ck.equal("only Afterburn's file in /run/metadata", sorted(boot.files_under("/run/metadata")),
             ["/run/metadata", "/run/metadata/afterburn"])
    check_keys(boot, ck, "core", keys_for_core(boot.run_keys))
    fragment = FRAGMENT.format(user="core")
    # what `journalctl MESSAGE_ID=0f7d…` (Fedora CoreOS's console login helper) finds
    found = [(e.get("AFTERBURN_USER_NAME"), e.get("AFTERBURN_PATH"), e.get("CL_METADATA_USER"),
              e.get("CL_METADATA_PATH"))
             for e in boot.journal if e.get("MESSAGE_ID") == KEYS_WRITTEN_ID]
    ck.equal(f"one journal entry MESSAGE_ID={KEYS_WRITTEN_ID} with Afterburn's fields", found,
             [("core", fragment, "core", fragment)])
    ck.equal(f"{CORE_KEYS} logged it",
             [e.get("MESSAGE_ID") for e in boot.entries(CORE_KEYS) if e.get("MESSAGE_ID")],
             [KEYS_WRITTEN_ID])
    ck.equal("no 'keys removed' entry",
             [e.get("MESSAGE") for e in boot.journal if e.get("MESSAGE_ID") == KEYS_REMOVED_ID],
             [])
    ck.check("no key is in the journal", not any(
        key.split()[1] in boot.journal_text for key in keys_for_core(boot.run_keys)),
        "a served key is in guest-journal.txt")
    for unit, name in ((KEYS_TARGET, "afterburn-sshkeys.target"),
                       (CHECK_IN, "afterburn-checkin.service"),
                       (FIRSTBOOT_CHECK_IN, "afterburn-firstboot-checkin.service")):
        ck.contains(f"{name} is {unit} (shipped link)", boot.unit(unit).get("Names", "").split(),
                    name)
    check_imdsv2(boot, ck)
    check_multi_user(boot, ck)


# --- plain Debian: the settings file, the firmware's DMI strings ------------------------------

PLAIN_USER = "debian"
PLAIN_SETUP = f"""\
# a plain Debian cloud image: its own user, and the settings file its builder writes once
useradd --create-home --user-group --shell /bin/bash {PLAIN_USER}
install -d -m 0755 /etc/cl-metadata
printf '# written at image build\\nprovider = auto\\nssh-users = {PLAIN_USER}\\n' \\
    > /etc/cl-metadata/cl-metadata.conf
"""
# What an EC2 Nitro instance's firmware reports (dmidecode on a t3.micro): the agent's rule is
# sys_vendor "Amazon EC2".
EC2_SMBIOS = ["type=0,vendor=Amazon EC2,version=1.0",
              "type=1,manufacturer=Amazon EC2,product=t3.micro",
              "type=2,manufacturer=Amazon EC2",
              "type=3,manufacturer=Amazon EC2,asset=Amazon EC2"]
# A machine no cloud: a rack server's own firmware
UNRECOGNISED_SMBIOS = ["type=0,vendor=Dell Inc.,version=2.19.1",
                       "type=1,manufacturer=Dell Inc.,product=PowerEdge R650",
                       "type=3,manufacturer=Dell Inc.,asset=CLMTEST-0042"]
PLATFORM_WORDS = ("ignition.platform.id=", "flatcar.oem.id=", "coreos.oem.id=")


def check_plain_image(boot: BootResult, ck: Checks) -> None:
    ck.equal("clmtest-setup.service made the user and the settings file",
             boot.unit("clmtest-setup.service").get("Result"), "success")
    ck.equal("no platform on the kernel command line",
             [w for w in (boot.report or {}).get("cmdline", []) if w.startswith(PLATFORM_WORDS)],
             [])


def check_plain_dmi(boot: BootResult, ck: Checks, scenario: Scenario) -> None:
    check_plain_image(boot, ck)
    check_keys(boot, ck, PLAIN_USER, [ALICE_KEY, boot.run_keys["public"]], unit=CORE_KEYS)
    ck.equal("core gets no key fragment (ssh-users names debian only)",
             boot.file(FRAGMENT.format(user="core")), None)
    login = boot.outcome.get("login") or {}
    ck.check("the guest said it was ready for a login", login.get("ready"), repr(login))
    ck.equal(f"ssh as {PLAIN_USER} with the served key: exit status", login.get("rc"), 0)
    ck.equal(f"the command ran as {PLAIN_USER}", (login.get("stdout") or "").splitlines()[:1],
             [PLAIN_USER])
    ck.check(f"sshd accepted the served key for {PLAIN_USER}", any(
        m.startswith(f"Accepted publickey for {PLAIN_USER} ")
        for m in boot.messages("ssh.service")), repr(boot.messages("ssh.service")[-5:]))
    keys_ready = boot.uptime_at(CORE_KEYS)
    sshd_started = boot.uptime_at("ssh.service", "InactiveExitTimestampMonotonic")
    ck.check("the keys were written before sshd started (Before=ssh.service)",
             keys_ready and sshd_started and keys_ready <= sshd_started,
             f"keys unit active at {keys_ready}, ssh.service started at {sshd_started}")
    check_imdsv2(boot, ck)
    paths = {r.get("path") for r in boot.requests if r.get("status") == 200}
    ck.check("the keys came from the aws metadata service (chosen by DMI)",
             any(p.endswith("/meta-data/public-keys/1/openssh-key") for p in paths if p),
             repr(sorted(p for p in paths if p)))
    check_multi_user(boot, ck)


def check_nothing_done(boot: BootResult, ck: Checks, notice: str) -> None:
    """Every agent unit ran and succeeded, each saying ``notice``; nothing written, no request."""
    for unit in AGENT_SERVICES:
        check_unit_succeeded(boot, ck, unit)
        ck.check(f"{unit} ran", boot.unit(unit).get("ExecMainStartTimestampMonotonic", "0")
                 != "0", repr(boot.unit(unit).get("ExecMainStartTimestampMonotonic")))
        ck.check(f"{unit} said why it did nothing",
                 any(notice in m for m in boot.messages(unit)), repr(boot.messages(unit)))
    ck.check(f"{FIRSTBOOT_CHECK_IN} did not fail",
             boot.unit(FIRSTBOOT_CHECK_IN).get("Result") == "success",
             repr(boot.unit(FIRSTBOOT_CHECK_IN)))
    ck.equal("nothing was written to /run/metadata",
             sorted(boot.files_under("/run/metadata")), ["/run/metadata"])
    ck.equal("no key fragment in any home directory",
             [p for p in boot.files_under("/home") if "authorized_keys.d" in p], [])
    no_http(boot, ck)
    check_multi_user(boot, ck)


def check_plain_unrecognised(boot: BootResult, ck: Checks, scenario: Scenario) -> None:
    check_plain_image(boot, ck)
    check_nothing_done(boot, ck, "no platform: the firmware's DMI strings name none")


# --- no metadata service: bare metal, QEMU without fw_cfg data --------------------------------

NOTHING_TO_DO_LINKS = pulled_in(AGENT, AFTERBURN)  # so every agent unit gets its chance


def check_metal(boot: BootResult, ck: Checks, scenario: Scenario) -> None:
    check_nothing_done(boot, ck, "metal: this platform has no metadata service; nothing to do")


def check_qemu_no_fw_cfg(boot: BootResult, ck: Checks, scenario: Scenario) -> None:
    check_nothing_done(boot, ck, "qemu: no firmware config entry")


QEMU_NO_FW_CFG = Scenario(
    "qemu-no-fw-cfg", "issue 11", "flatcar.oem.id=qemu without -fw_cfg: nothing done",
    ["flatcar.oem.id=qemu"], check_qemu_no_fw_cfg, platform="aws", provider="qemu",
    guest={"links": NOTHING_TO_DO_LINKS})


# --- the kill switch: cl-metadata=disabled ----------------------------------------------------

def check_kill_switch(boot: BootResult, ck: Checks, scenario: Scenario) -> None:
    for unit in (*AGENT_SERVICES, FIRSTBOOT_CHECK_IN, KEYS_TARGET):
        props = boot.unit(unit)
        ck.equal(f"{unit}: loaded, its condition failed, never started",
                 (props.get("LoadState"), props.get("ConditionResult"),
                  props.get("ExecMainStartTimestampMonotonic", "0"), props.get("ActiveState")),
                 ("loaded", "no", "0", "inactive"))
    ck.equal("no cl-metadata process logged anything",
             [m for unit in AGENT_SERVICES for m in boot.messages(unit)], [])
    ck.equal("nothing was written to /run/metadata",
             sorted(boot.files_under("/run/metadata")), ["/run/metadata"])
    ck.equal("core has no key fragment", boot.file(FRAGMENT.format(user="core")), None)
    no_http(boot, ck)
    check_multi_user(boot, ck)


# --- the list ---------------------------------------------------------------------------------

SCENARIOS: List[Scenario] = [
    Scenario("flatcar-ec2", "issue 11", "Flatcar: flatcar.oem.id=ec2, /run/metadata/flatcar",
             ["flatcar.oem.id=ec2"], check_flatcar, platform="ec2", provider="ec2",
             guest={"units/clmtest-consumer.service": FLATCAR_CONSUMER,
                    "units/coreos-metadata.service.d/10-flatcar.conf": FLATCAR_DROP_IN,
                    "links": CONSUMER_LINK}),
    Scenario("fcos-afterburn", "issue 11",
             "Fedora CoreOS: afterburn.service, /run/metadata/afterburn, keys journal entry",
             ["ignition.platform.id=aws"], check_fcos, platform="aws", provider="aws",
             guest={"units/clmtest-consumer.service": AFTERBURN_CONSUMER,
                    "links": CONSUMER_LINK}),
    Scenario("plain-debian-dmi", "issue 11",
             "plain Debian: provider = auto, EC2's DMI strings, debian logs in",
             [], check_plain_dmi, platform="aws", provider="aws", smbios=EC2_SMBIOS,
             login=True, login_user=PLAIN_USER, guest={"setup": PLAIN_SETUP},
             bound={"tcg": 240, "kvm": 120}),
    Scenario("plain-debian-unrecognised", "issue 11",
             "plain Debian: provider = auto, unrecognised DMI: nothing done",
             [], check_plain_unrecognised, platform="aws", provider="aws",
             smbios=UNRECOGNISED_SMBIOS,
             guest={"setup": PLAIN_SETUP, "links": NOTHING_TO_DO_LINKS}),
    Scenario("metal", "issue 11", "ignition.platform.id=metal: no metadata service",
             ["ignition.platform.id=metal"], check_metal, platform="aws", provider="aws",
             guest={"links": NOTHING_TO_DO_LINKS}),
    Scenario("kill-switch", "issue 11", "cl-metadata=disabled: no cl-metadata unit runs",
             ["ignition.platform.id=aws", "cl-metadata=disabled"], check_kill_switch,
             platform="aws", provider="aws", guest={"links": NOTHING_TO_DO_LINKS}),
    QEMU_NO_FW_CFG,
]
