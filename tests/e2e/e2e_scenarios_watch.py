"""The end-to-end boots of issue 13's long-running mode: ``cl-metadata-watch.service`` keeps
core's key fragment equal to what the platform serves while the guest runs.

The host logs in with the run's key A; once the watch unit is up (``Type=notify``: active only
after its first successful look) it touches the fake server's switch file, and the platform
serves key B instead of A, as a key rotated in the cloud console. B must log in within a few
seconds and A be refused. Then the platform disappears (the outage file: every request dropped
unanswered) for a while: B still logs in and A is still refused, nothing was removed or put
back. The platform returns serving A again: A logs in again, so the watch came back by itself.

- ``gcp-watch-long-poll``: GCE's metadata long poll (``wait_for_change``), the unit as packaged.
- ``ec2-watch-poll``: IMDSv2 polled every 5 s (a drop-in adds ``--interval=5 --timeout=10``).
"""

from __future__ import annotations

import base64
import hashlib
from typing import Dict, List, Optional

from e2e_results import BootResult, Checks
from e2e_scenarios import (ALICE_KEY, CORE_KEYS, LOGIN_KEY_NAME, Scenario, check_keys,
                           check_multi_user, instance)

WATCH = "cl-metadata-watch.service"
# The host cannot ask systemd over ssh (no D-Bus in the image for a user): a unit ordered after
# the watch leaves a file once the watch is active, i.e. (Type=notify) has sent READY=1.
READY_FILE = "/run/clmtest-watch-ready"
READY_UNIT = f"""\
[Unit]
Description=clmtest: say that {WATCH} is ready
Requires={WATCH}
# after multi-user.target too, as the watch is: else the target would be ordered after this
# unit, and so after the watch that waits for the target
After=multi-user.target {WATCH}

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/touch {READY_FILE}
"""
LINKS = f"multi-user.target.wants {WATCH}\nmulti-user.target.wants clmtest-watch-ready.service\n"
# "within seconds" for a long poll, "within the interval" for polling: measured from the
# switch file's creation to the end of the first login with B that worked (the ssh session
# included, under TCG); generous, yet far below the 60 s default interval
SWITCH_BOUND = 30.0
OUTAGE_SECONDS = 20
WATCH_READY = f"test -e {READY_FILE}"
EC2_DROP_IN = """\
# Look every 5 s; a look gives up after 10 s (so a look during the outage fails and says so).
[Service]
ExecStart=
ExecStart=/usr/bin/cl-metadata watch ${CL_METADATA_OPT_PROVIDER} --settings=/etc/cl-metadata/cl-metadata.conf --ssh-keys-default --interval=5 --timeout=10
"""

# what the host does once the guest is up; "a" is the run's key, "b" its second
STEPS: List[dict] = [
    {"step": "login", "key": "a", "expect": "ok", "within": 60, "why": "A logs in at boot"},
    {"step": "login", "key": "a", "command": WATCH_READY, "within": 120,
     "why": "the watch unit is up (READY=1 after its first look)"},
    {"step": "touch", "file": "switch", "why": "the platform serves B instead of A"},
    {"step": "login", "key": "b", "expect": "ok", "within": 90, "why": "B logs in"},
    {"step": "login", "key": "a", "expect": "refused", "within": 30, "why": "A is refused"},
    {"step": "touch", "file": "outage", "why": "the platform disappears"},
    {"step": "sleep", "seconds": OUTAGE_SECONDS},
    {"step": "login", "key": "b", "expect": "ok", "why": "B still logs in during the outage"},
    {"step": "login", "key": "a", "expect": "refused", "why": "A still refused during the outage"},
    {"step": "remove", "file": "outage", "why": "the platform is back"},
    {"step": "remove", "file": "switch", "why": "serving A again"},
    {"step": "login", "key": "a", "expect": "ok", "within": 120,
     "why": "A logs in again: the watch follows the platform after the outage"},
    {"step": "finish", "key": "a"},
]


def then_instance(keys: Dict[str, str]) -> dict:
    """The instance with key B in A's place (alice unchanged)."""
    return {**instance(keys["public"]),
            "ssh-keys": [{"name": "alice", "key": ALICE_KEY},
                         {"name": LOGIN_KEY_NAME, "key": keys["second_public"]}]}


def fingerprint(key_line: str) -> str:
    """``SHA256:…`` as ``ssh-keygen -l`` prints it."""
    blob = base64.b64decode(key_line.split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def step(steps: List[dict], why: str) -> dict:
    return next((s for s in steps if s.get("why") == why), {})


def check_steps(boot: BootResult, ck: Checks) -> Optional[List[dict]]:
    login = boot.outcome.get("login") or {}
    if not ck.check("the guest said it was ready for a login", login.get("ready"), repr(login)):
        return None
    steps = login.get("steps") or []
    for record in steps:
        name = record.get("why") or f"{record.get('step')} {record.get('key', '')}".strip()
        detail = {k: record.get(k) for k in ("skipped", "outcome", "attempts", "rc", "stderr",
                                             "started", "ended") if k in record}
        ck.check(f"step: {name}", record.get("ok"), repr(detail))
    ck.equal("every step ran", len(steps), len(STEPS))
    return steps


def seconds_after_switch(steps: List[dict], why: str) -> Optional[float]:
    switched, done = step(steps, "the platform serves B instead of A"), step(steps, why)
    if not (switched.get("ok") and done.get("ok")):
        return None
    return round(done["ended"] - switched["ended"], 2)


def check_watch(boot: BootResult, ck: Checks, scenario: Scenario) -> Optional[List[dict]]:
    """What both boots prove; returns the steps' records."""
    keys = boot.run_keys
    steps = check_steps(boot, ck) or []
    for why in ("B logs in", "A is refused"):
        delay = seconds_after_switch(steps, why)
        ck.check(f"{why} within {SWITCH_BOUND:.0f} s of the switch (took {delay} s)",
                 delay is not None and delay <= SWITCH_BOUND, f"{delay} s")
    # the guest's view at report time, after the platform served A again
    props = boot.unit(WATCH)
    ck.equal(f"{WATCH} active (running) at report time",
             (props.get("ActiveState"), props.get("SubState")), ("active", "running"))
    ck.check(f"{WATCH} reached READY (Type=notify: systemd said Started)", any(
        e.get("UNIT") == WATCH and str(e.get("MESSAGE", "")).startswith("Started")
        for e in boot.journal), "no 'Started' line for the unit in the journal")
    check_keys(boot, ck, "core", [ALICE_KEY, keys["public"]], unit=CORE_KEYS)
    said = boot.messages(WATCH)
    a, b = fingerprint(keys["public"]), fingerprint(keys["second_public"])
    # the two changes the platform made, each logged by fingerprint; nothing for the outage
    ck.equal("the watch logged exactly the platform's changes (type and fingerprint)",
             [m for m in said if m.startswith("ssh key ")],
             [f"ssh key added for core: ssh-ed25519 {b}",
              f"ssh key removed for core: ssh-ed25519 {a}",
              f"ssh key added for core: ssh-ed25519 {a}",
              f"ssh key removed for core: ssh-ed25519 {b}"])
    ck.equal("the watch wrote the fragment three times: first look, B for A, A back (not for "
             "the outage)", len([m for m in said if m.startswith("wrote ")]), 3)
    for name, key in (("A", keys["public"]), ("B", keys["second_public"])):
        ck.check(f"key {name}'s text is nowhere in the journal",
                 key.split()[1] not in boot.journal_text, "found in guest-journal.txt")
    dropped = [r for r in boot.requests if r.get("fault") == "outage"]
    ck.check("the platform dropped requests during the outage", dropped, "no 'outage' entries")
    ck.equal("every dropped request was unanswered", {r.get("status") for r in dropped} - {None},
             set())
    check_multi_user(boot, ck)
    return steps


def check_gcp_watch(boot: BootResult, ck: Checks, scenario: Scenario) -> None:
    check_watch(boot, ck, scenario)
    # a long poll's client retries within its own deadline (80 s): a 20 s outage is ridden
    # out, the poll dropped again and again, then answered
    dropped = [r for r in boot.requests if r.get("fault") == "outage"]
    ck.check("long polls were dropped during the outage and asked again after it",
             dropped and all("wait_for_change=true" in r.get("query", "") for r in dropped)
             and any(r.get("status") == 200 and r.get("time", 0) > dropped[-1].get("time", 0)
                     and "wait_for_change=true" in r.get("query", "") for r in boot.requests),
             repr([(r.get("path"), r.get("status"), r.get("fault")) for r in boot.requests][-8:]))
    polls = [r for r in boot.requests if "wait_for_change=true" in r.get("query", "")]
    ck.check("the fake server saw wait_for_change long polls with last_etag",
             any("last_etag=" in r.get("query", "") and r.get("status") == 200 for r in polls),
             repr([(r.get("path"), r.get("query"), r.get("status")) for r in polls][:6]))
    paths = {r.get("path") for r in polls}
    ck.check("every long poll asked for a key directory", paths and paths <= {
        "/computeMetadata/v1/instance/attributes/", "/computeMetadata/v1/project/attributes/"},
        repr(sorted(paths)))
    ck.check("every request said Metadata-Flavor: Google", boot.requests and all(
        r.get("headers", {}).get("Metadata-Flavor") == "Google" for r in boot.requests),
        repr([r.get("path") for r in boot.requests][:6]))


def check_ec2_watch(boot: BootResult, ck: Checks, scenario: Scenario) -> None:
    check_watch(boot, ck, scenario)
    # a look gives up after --timeout=10 s: during the 20 s outage at least one failed
    ck.check("a look failed during the outage and said the keys stayed", any(
        "keys left as they are" in m for m in boot.messages(WATCH, 4)),
        repr(boot.messages(WATCH)[-8:]))
    ck.contains(f"{WATCH} ran with the --interval drop-in",
                boot.unit(WATCH).get("DropInPaths", ""), "50-interval.conf")
    gets = [r for r in boot.requests if r.get("method") == "GET" and r.get("fault") is None]
    ck.check("every answered GET carried the IMDSv2 token", gets and all(
        "X-aws-ec2-metadata-token" in r.get("headers", {}) for r in gets),
        repr([r.get("path") for r in gets][:6]))


SCENARIOS = [
    Scenario("gcp-watch-long-poll", "issue 13",
             "cl-metadata-watch.service on GCP: a key rotated while the guest runs; an outage",
             ["ignition.platform.id=gcp"], check_gcp_watch, platform="gcp", provider="gcp",
             login=True, login_steps=STEPS, then_instance=then_instance, hold=420,
             guest={"links": LINKS, "units/clmtest-watch-ready.service": READY_UNIT},
             bound={"tcg": 600, "kvm": 300}),
    Scenario("ec2-watch-poll", "issue 13",
             "cl-metadata-watch.service on EC2 polling every 5 s: a key rotated; an outage",
             ["coreos.oem.id=ec2"], check_ec2_watch, platform="ec2", provider="ec2",
             login=True, login_steps=STEPS, then_instance=then_instance, hold=420,
             guest={"links": LINKS, "units/clmtest-watch-ready.service": READY_UNIT,
                    f"units/{WATCH}.d/50-interval.conf": EC2_DROP_IN},
             bound={"tcg": 600, "kvm": 300}),
]
