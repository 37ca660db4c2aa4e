"""One guest boot, run inside a new, empty network namespace (stdlib only).

    unshare --net -- python3 e2e_boot.py SPEC.json

Refuses to start QEMU unless this process is in a network namespace other than the host's that
holds nothing but ``lo`` and no route; brings ``lo`` up (the ssh client reaches QEMU's hostfwd
there). QEMU gets ``-nodefaults -no-user-config``, user networking with ``restrict=on,ipv6=off``
and, at most, one ``guestfwd`` to the fake metadata server in ``--stdio`` mode (tests/e2e/README.md "How it works").
A guest that does not power off is killed at the spec's bound (``timeout -k 5``). The outcome
goes to ``boot.json`` in the run directory.

The login (spec ``login``) is one ssh session once the guest prints its READY line, or, with
``login.steps``, a sequence (``run_steps``): logins with one of the run's keys expected to work
or be refused (polled until they do, within a bound), files the fake server watches touched or
removed (``login.files``: a switch to another instance, an outage), pauses, and a wait for the
fake server to answer again; each step's result and times go to ``boot.json``.
"""

from __future__ import annotations

import json
import os
import resource
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import List, Optional

SLIRP = ("restrict=on,ipv6=off,net=169.254.169.0/24,host=169.254.169.2,"
         "dhcpstart=169.254.169.15")
METADATA = "169.254.169.254:80"
SSH_PORT = 2222
READY_LINE = "CLMTEST-READY"
LOGIN_COMMAND = "id -un; cat /run/metadata/coreos; touch /tmp/clmtest-login-done"


class Unsafe(Exception):
    """The namespace is not the empty one this driver must run in."""


def check_namespace(host_netns: str) -> str:
    """This process's netns (refused if it is the host's or has any link or route but lo)."""
    mine = os.readlink("/proc/self/ns/net")
    if mine == host_netns:
        raise Unsafe(f"still in the host's network namespace {mine}: run under unshare --net")
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True,
                           check=True).stdout.splitlines()
    names = [line.split(":")[1].strip().split("@")[0] for line in links if line.strip()]
    if names != ["lo"]:
        raise Unsafe(f"network namespace {mine} has links {names}; only lo is allowed")
    for family in ("-4", "-6"):  # before lo is up, a new namespace has no route at all
        routes = subprocess.run(["ip", family, "route", "show", "table", "all"],
                                capture_output=True, text=True, check=True).stdout.strip()
        if routes:
            raise Unsafe(f"network namespace {mine} has routes ({family}): {routes}")
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    for family in ("-4", "-6"):
        default = subprocess.run(["ip", family, "route", "show", "default", "table", "all"],
                                 capture_output=True, text=True, check=True).stdout.strip()
        if default:
            raise Unsafe(f"network namespace {mine} has a default route ({family}): {default}")
    return mine


def netdev(spec: dict) -> str:
    value = f"user,id=n0,{SLIRP}"
    server = spec.get("fake_server")
    if server:
        command = " ".join(shlex.quote(word) for word in server)
        if "," in command:
            raise Unsafe("the fake server command contains a comma (QEMU would split it)")
        value += f",guestfwd=tcp:{METADATA}-cmd:{command}"
    if spec.get("login"):
        value += f",hostfwd=tcp:127.0.0.1:{SSH_PORT}-:22"
    return value


def qemu_command(spec: dict) -> List[str]:
    run = Path(spec["run_dir"])
    if spec["accel"] == "kvm":
        accel = ["-accel", "kvm", "-cpu", "host"]
    else:
        accel = ["-accel", "tcg", "-cpu", "max"]
    command = [
        "timeout", "-k", "5", str(spec["bound"]), spec.get("qemu", "qemu-system-x86_64"),
        *accel, "-M", "q35", "-m", str(spec.get("memory", 512)), "-smp", str(spec.get("smp", 1)),
        "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
        "-serial", f"file:{run / 'serial.log'}",
        "-kernel", spec["kernel"], "-initrd", spec["initrd"], "-append", spec["append"],
        # the root disk first: it is /dev/vda
        "-drive", f"if=none,id=root,file={spec['rootfs']},format=raw,snapshot=on",
        "-device", "virtio-blk-pci,drive=root",
        "-drive", f"if=none,id=res,file={run / 'results.img'},format=raw",
        "-device", "virtio-blk-pci,drive=res,serial=clmtest-results",
        "-netdev", netdev(spec), "-device", "virtio-net-pci,netdev=n0,romfile=,mac=52:54:00:12:34:56",
    ]
    for table in spec.get("smbios", ()):  # the firmware's DMI strings, as a cloud sets them
        command += ["-smbios", table]
    drive = spec.get("drive")
    if drive and drive["format"] == "fw_cfg":
        # one firmware config entry (read-only to the guest); the file path must hold no comma
        if "," in drive["path"] or "," in drive["name"]:
            raise Unsafe("the fw_cfg entry name or file contains a comma (QEMU would split it)")
        command += ["-fw_cfg", f"name={drive['name']},file={drive['path']}"]
    elif drive and drive["format"] == "iso":
        command += ["-drive", f"if=none,id=cd,file={drive['path']},format=raw,media=cdrom,readonly=on",
                    "-device", "ide-cd,drive=cd"]
    elif drive:
        command += ["-drive", f"if=none,id=cd,file={drive['path']},format=raw,readonly=on",
                    "-device", "virtio-blk-pci,drive=cd"]
    return command


def wait_for_line(path: Path, line: str, proc: subprocess.Popen, limit: float) -> bool:
    end = time.monotonic() + limit
    while time.monotonic() < end and proc.poll() is None:
        try:
            if line.encode() in path.read_bytes():
                return True
        except FileNotFoundError:
            pass
        time.sleep(0.2)
    return False


def ssh_command(key: str, user: str, command: str) -> List[str]:
    return ["ssh", "-F", "/dev/null", "-i", key, "-p", str(SSH_PORT),
            "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null", "-o", "GlobalKnownHostsFile=/dev/null",
            "-o", "PasswordAuthentication=no", "-o", "ConnectTimeout=20", "-o", "LogLevel=ERROR",
            f"{user}@127.0.0.1", command]


def log_in(spec: dict, proc: subprocess.Popen) -> dict:
    """Wait for the guest's READY line, then ssh in with the served key and run a command (or,
    with ``login.steps``, run that sequence)."""
    run = Path(spec["run_dir"])
    started = time.monotonic()
    if not wait_for_line(run / "serial.log", READY_LINE, proc, spec["bound"]):
        return {"ready": False}
    result: dict = {"ready": True, "ready_after": round(time.monotonic() - started, 2)}
    if spec["login"].get("steps"):
        result.update(run_steps(spec["login"], proc))
        return result
    command = ssh_command(spec["login"]["key"], spec["login"]["user"], LOGIN_COMMAND)
    for attempt in range(1, 4):  # sshd may still be starting when the report unit runs
        done = subprocess.run(command, capture_output=True, text=True, timeout=60,
                              stdin=subprocess.DEVNULL)
        result.update(attempts=attempt, rc=done.returncode, stdout=done.stdout, stderr=done.stderr)
        if done.returncode == 0:
            break
        time.sleep(2)
    return result


# --- a login sequence: keys that change while the guest runs ------------------------------------

PROBE_COMMAND = "id -un"  # a login that does not end the guest's wait (LOGIN_COMMAND does)
REFUSED = "Permission denied"  # ssh's words when no offered key is accepted
LOGIN_WITHIN = 20.0  # seconds a login step is retried by default (sshd may still be starting)
RETRY_PAUSE = 1.0


def attempt_login(login: dict, key: str, command: str) -> subprocess.CompletedProcess:
    return subprocess.run(ssh_command(login["keys"][key], login["user"], command),
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


def login_outcome(done: subprocess.CompletedProcess) -> str:
    """ok (exit 0), refused (sshd said no to the key) or failed (anything else: no
    connection, a command that failed)."""
    if done.returncode == 0:
        return "ok"
    if done.returncode == 255 and REFUSED in done.stderr:
        return "refused"
    return "failed"


def served_since(requests: Path, since: float) -> bool:
    """The fake server answered a request (200) that arrived after ``since`` (epoch time)."""
    try:
        lines = requests.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return False
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("status") == 200 and entry.get("time", 0) >= since:
            return True
    return False


def run_step(step: dict, login: dict, proc: subprocess.Popen, clock) -> dict:
    """One step; its record says what was expected, what happened and when (seconds since the
    sequence began)."""
    kind = step["step"]
    record: dict = {**step, "started": round(clock(), 2)}
    if kind in ("touch", "remove"):
        path = Path(login["files"][step["file"]])
        if kind == "touch":
            path.touch()
        else:
            path.unlink(missing_ok=True)
        record["ok"] = path.exists() == (kind == "touch")
    elif kind == "sleep":
        time.sleep(step["seconds"])
        record["ok"] = True
    elif kind == "served":
        since, end = time.time(), time.monotonic() + step["within"]
        while not (found := served_since(Path(login["requests"]), since)):
            if time.monotonic() >= end or proc.poll() is not None:
                break
            time.sleep(RETRY_PAUSE)
        record["ok"] = found
    elif kind in ("login", "finish"):
        # finish: the last login, whose command ends the guest's wait for the host
        expect = "ok" if kind == "finish" else step.get("expect", "ok")
        command = LOGIN_COMMAND if kind == "finish" else step.get("command", PROBE_COMMAND)
        end = time.monotonic() + step.get("within", LOGIN_WITHIN)
        attempts = 0
        while True:
            attempts += 1
            done = attempt_login(login, step["key"], command)
            outcome = login_outcome(done)
            if outcome == expect or time.monotonic() >= end or proc.poll() is not None:
                break
            time.sleep(RETRY_PAUSE)
        record.update(ok=outcome == expect, outcome=outcome, attempts=attempts,
                      rc=done.returncode, stdout=done.stdout, stderr=done.stderr[-400:])
    else:
        raise ValueError(f"unknown login step {kind!r}")
    record["ended"] = round(clock(), 2)
    return record


def run_steps(login: dict, proc: subprocess.Popen) -> dict:
    """Run ``login["steps"]`` in order. After a failed step only ``remove`` and ``finish``
    steps run (put things back, let the guest report), each recorded as run or skipped."""
    began = time.monotonic()
    clock = lambda: time.monotonic() - began  # noqa: E731
    records, failed = [], False
    for step in login["steps"]:
        if failed and step["step"] not in ("remove", "finish"):
            records.append({**step, "skipped": True, "ok": False})
            continue
        record = run_step(step, login, proc, clock)
        records.append(record)
        failed = failed or not record["ok"]
    return {"steps": records, "ok": not failed}


def boot(spec: dict) -> dict:
    run = Path(spec["run_dir"])
    outcome: dict = {"netns": None, "host_netns": spec["host_netns"]}
    try:
        outcome["netns"] = check_namespace(spec["host_netns"])
    except (Unsafe, subprocess.CalledProcessError) as err:
        outcome["error"] = f"refused: {err}"
        return outcome
    command = qemu_command(spec)
    outcome["command"] = command
    started = time.monotonic()
    with open(run / "qemu.log", "wb") as qemu_log:
        proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=qemu_log,
                                stderr=subprocess.STDOUT)
        login: Optional[dict] = log_in(spec, proc) if spec.get("login") else None
        rc = proc.wait()
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # QEMU and the fake servers it ran
    outcome.update(rc=rc, wall=round(time.monotonic() - started, 2),
                   timed_out=rc in (124, 137), login=login,
                   cpu=round(usage.ru_utime + usage.ru_stime, 1))
    return outcome


def main(argv: List[str]) -> int:
    spec_path = Path(argv[1])
    spec = json.loads(spec_path.read_text())
    outcome = boot(spec)
    (Path(spec["run_dir"]) / "boot.json").write_text(json.dumps(outcome, indent=1) + "\n")
    return 0 if "error" not in outcome else 3


if __name__ == "__main__":
    sys.exit(main(sys.argv))
