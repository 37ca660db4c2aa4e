"""Runs the end-to-end scenarios: builds (or reuses) the image, prepares each boot's inputs, boots
the guests (in parallel, each inside its own new, empty network namespace), runs the checks.

    python3 e2e_runner.py [--accel auto|kvm|tcg] [--jobs N] [SCENARIO...]

Standalone use goes through tests/e2e/run. The last line printed is ``N passed, N failed``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import traceback
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional

import yaml

from e2e_host import E2E, choose_accel, jobs as default_jobs, run, tool, why_qemu_cannot_run, work_dir
from e2e_image import Image, build_image, guest_files_from_dir, in_use
from e2e_results import BootResult, Checks
from e2e_expect import host_expectation
from e2e_catalog import SCENARIOS, by_name
from e2e_scenarios import EXPECTATION, FW_CFG_NAME, Scenario, guest_files, instance

RESULTS_DISK_BYTES = 32 * 1024 * 1024
KEEP_RUNS = 10
SUMMARY_KEY = "clmtest_e2e_summary"  # pytest config attribute: lines for the closing table
AGENT_UNITS = ("cl-metadata.service", "afterburn.service", "cl-metadata-sshkeys.service",
               "cl-metadata-sshkeys@ops.service")

Log = Callable[[str], None]


@dataclass
class Outcome:
    scenario: Scenario
    status: str  # pass | fail | skip
    reason: str = ""  # why skipped
    checks: Optional[Checks] = None
    boot: Optional[BootResult] = None

    def timing(self) -> str:
        boot = self.boot
        if boot is None:
            return ""
        parts = [f"boot {boot.outcome.get('wall', 0):.1f} s ({boot.outcome.get('cpu', 0):.0f} CPU-s)"]
        multi_user = boot.uptime_at("multi-user.target")
        if multi_user:
            parts.append(f"multi-user at {multi_user:.1f} s")
        for unit in AGENT_UNITS:
            seconds = boot.activation(unit)
            if seconds is not None:
                props = boot.unit(unit)
                parts.append(f"{unit} {seconds:.2f} s ({props.get('Result')}, "
                             f"exit {props.get('ExecMainStatus')})")
        served = [r.get("status") for r in boot.requests]
        if served:
            refused = sum(1 for s in served if s and s >= 500)
            text = f"{len(served)} requests"
            if refused and 200 in served:
                first = boot.requests[0].get("time", 0)
                ok = boot.requests[served.index(200)].get("time", 0)
                text += f", {refused} answered 5xx, first 200 after {ok - first:.1f} s"
            parts.append(text)
        return "; ".join(parts)

    def lines(self) -> List[str]:
        head = f"{self.status.upper():4} {self.scenario.name} (scenario {self.scenario.issue})"
        if self.status == "skip":
            return [f"{head}: {self.reason}"]
        found = [f"{head}: {self.timing()}"]
        if self.checks is not None:
            found += [f"       - {failure}" for failure in self.checks.failures]
        if self.status == "fail" and self.boot is not None:
            found.append(f"       artefacts: {self.boot.run_dir}")
        return found


# --- inputs of one boot -----------------------------------------------------------------------

def new_run_root() -> Path:
    runs = work_dir() / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    old = sorted((p for p in runs.iterdir() if p.is_dir()), key=lambda p: p.name)
    for stale in old[:max(0, len(old) - KEEP_RUNS + 1)]:
        shutil.rmtree(stale, ignore_errors=True)
    root = runs / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    root.mkdir()
    if "," in str(root) or " " in str(root):
        raise RuntimeError(f"{root}: a run directory may hold no comma or space (QEMU options)")
    return root


def login_key(run_root: Path, name: str = "login_key") -> Dict[str, str]:
    private = run_root / name
    run([tool("ssh-keygen"), "-q", "-t", "ed25519", "-N", "", "-C", "clmtest-login",
         "-f", str(private)])
    return {"private": str(private), "public": (run_root / f"{name}.pub").read_text().strip()}


def run_keys(run_root: Path) -> Dict[str, str]:
    """The run's login key pair, and a second one (``second_private``, ``second_public``) a
    platform can switch to while the guest runs."""
    second = login_key(run_root, "login_key_b")
    return {**login_key(run_root), "second_private": second["private"],
            "second_public": second["public"]}


def fake_platforms() -> List[str]:
    from cl_metadata.fakeserver.render import platforms

    return sorted(platforms())


def skip_reason(scenario: Scenario, image: Image, served: List[str]) -> Optional[str]:
    if scenario.provider not in image.provider_ids:
        return f"`cl-metadata providers` in the built image lacks {scenario.provider}"
    if scenario.platform is not None and scenario.platform not in served:
        return f"the fake metadata server cannot render {scenario.platform} yet"
    return None


def prepare(scenario: Scenario, image: Image, run_root: Path, keys: Dict[str, str],
            accel: str) -> Path:
    from cl_metadata.fakeserver.drive import write_drive
    from cl_metadata.fakeserver.instance import load_instance
    from cl_metadata.fakeserver.render import renderer_for

    run_dir = run_root / scenario.name
    run_dir.mkdir()
    description: Optional[Path] = None  # None: the fake server's bundled sample instance
    if not scenario.sample_instance:
        description = run_dir / "instance.yaml"
        description.write_text(yaml.safe_dump({**instance(keys["public"]),
                                                **scenario.instance_extra}, sort_keys=False))
    with open(run_dir / "results.img", "wb") as disk:
        disk.truncate(RESULTS_DISK_BYTES)
    (run_dir / "requests.jsonl").touch()
    spec: dict = {
        "run_dir": str(run_dir), "accel": accel, "bound": scenario.bound[accel],
        "qemu": tool("qemu-system-x86_64"), "kernel": str(image.kernel),
        "initrd": str(image.initrd), "rootfs": str(image.rootfs),
        "append": scenario.kernel_cmdline(), "host_netns": os.readlink("/proc/self/ns/net"),
    }
    # the files the host touches while the guest runs (e2e_boot.run_steps): the fake server
    # serves then_instance while "switch" exists and nothing while "outage" does
    schedule_files = {"switch": str(run_dir / "switch"), "outage": str(run_dir / "outage")}
    schedule: List[str] = []
    if scenario.login_steps:
        schedule += ["--outage-file", schedule_files["outage"]]
    if scenario.then_instance is not None:
        then = run_dir / "then-instance.yaml"
        then.write_text(yaml.safe_dump(scenario.then_instance(keys), sort_keys=False))
        schedule += ["--then-instance", str(then), "--switch-file", schedule_files["switch"]]
    if scenario.platform is not None:
        spec["fake_server"] = [
            sys.executable, "-I", "-W", "ignore", "-m", "cl_metadata.fakeserver", "--stdio",
            "--platform", scenario.platform,
            *(["--instance", str(description)] if description else []),
            "--log", str(run_dir / "requests.jsonl"), "--state", str(run_dir / "fault-state.json"),
            *[arg for fault in scenario.faults for arg in ("--fault", fault)], *schedule]
    if scenario.drive is not None:
        renderer = renderer_for(scenario.platform or "openstack")
        files = renderer.drive_files(load_instance(str(description) if description else None))
        if scenario.drive == "fw_cfg":  # the directory layout: NAME/raw is the entry's bytes
            path = run_dir / "fw-cfg"
            write_drive(files, path, "dir", renderer.DRIVE_LABEL)
            spec["drive"] = {"format": "fw_cfg", "name": FW_CFG_NAME,
                             "path": str(path / FW_CFG_NAME / "raw")}
        else:
            path = run_dir / ("config-drive.iso" if scenario.drive == "iso" else "config-drive.img")
            write_drive(files, path, scenario.drive, renderer.DRIVE_LABEL)
            spec["drive"] = {"format": scenario.drive, "path": str(path)}
        if scenario.host_expectation:
            # the same files as a directory, read by the agent on this host: what the guest
            # must end up with
            host_drive = run_dir / "host-drive"
            write_drive(files, host_drive, "dir", renderer.DRIVE_LABEL)
            (run_dir / EXPECTATION).write_text(json.dumps(
                host_expectation(scenario.provider, host_drive), indent=1) + "\n")
    if scenario.smbios:
        spec["smbios"] = list(scenario.smbios)
    if scenario.login:
        spec["login"] = {"key": keys["private"], "user": scenario.login_user}
        if scenario.login_steps:
            spec["login"].update(steps=scenario.login_steps, files=schedule_files,
                                 keys={"a": keys["private"], "b": keys["second_private"]},
                                 requests=str(run_dir / "requests.jsonl"))
    spec_path = run_dir / "spec.json"
    spec_path.write_text(json.dumps(spec, indent=1) + "\n")
    return spec_path


# --- boots and checks -------------------------------------------------------------------------

def boot_one(spec_path: Path, bound: int) -> None:
    """The driver, inside a new network namespace (it refuses to run anywhere else)."""
    done = subprocess.run(["unshare", "--net", "--", sys.executable, str(E2E / "e2e_boot.py"),
                           str(spec_path)], capture_output=True, text=True, timeout=bound + 120)
    (spec_path.parent / "driver.log").write_text(done.stdout + done.stderr)


def evaluate(scenario: Scenario, run_dir: Path, keys: Dict[str, str]) -> Outcome:
    boot = BootResult.load(run_dir)
    boot.run_keys = keys
    checks = Checks()
    from e2e_scenarios import check_booted

    try:
        if check_booted(boot, checks):
            scenario.check(boot, checks, scenario)
    except Exception:  # a bug in a check must fail the scenario, not the whole run
        checks.check("the checks ran", False, traceback.format_exc(limit=3))
    return Outcome(scenario, "pass" if checks.passed else "fail", checks=checks, boot=boot)


def run_scenarios(names: Optional[List[str]] = None, *, accel: Optional[str] = None,
                  jobs: Optional[int] = None, log: Log = print) -> Dict[str, Outcome]:
    """Run the named scenarios (all by default); every one gets an Outcome."""
    known = by_name()
    chosen = [known[n] for n in names] if names else list(SCENARIOS)
    reason = why_qemu_cannot_run()
    if reason:
        return {s.name: Outcome(s, "skip", f"QEMU cannot run here: {reason}") for s in chosen}
    accel = choose_accel(accel)
    started = time.monotonic()
    files = guest_files_from_dir()
    files.update({path: (content, 0o644) for path, content in guest_files(SCENARIOS).items()})
    image = build_image(files, log)
    log(f"image ready in {time.monotonic() - started:.1f} s: {image.dir} "
        f"({image.manifest.get('version')}, accel {accel})")
    if image.manifest.get("providers_error"):
        log(f"WARNING: `cl-metadata providers` fails in the image "
            f"({image.manifest['providers_error']}); loadable ids: "
            f"{' '.join(image.provider_ids)}")
    run_root = new_run_root()
    keys = run_keys(run_root)
    served = fake_platforms()
    outcomes: Dict[str, Outcome] = {}
    specs = []
    for scenario in chosen:
        why = skip_reason(scenario, image, served)
        if why:
            outcomes[scenario.name] = Outcome(scenario, "skip", why)
        else:
            specs.append((scenario, prepare(scenario, image, run_root, keys, accel)))
    specs.sort(key=lambda item: -item[0].bound[accel])  # the longest boots first
    workers = jobs or default_jobs()
    log(f"booting {len(specs)} guests, {workers} at a time; artefacts in {run_root}")
    boots_started = time.monotonic()
    with in_use(image), ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        futures = {pool.submit(boot_one, spec, s.bound[accel]): (s, spec) for s, spec in specs}
        for future in as_completed(futures):
            scenario, spec = futures[future]
            try:
                future.result()
            except subprocess.TimeoutExpired:
                pass  # boot.json is missing: evaluate() reports it
            outcomes[scenario.name] = evaluate(scenario, spec.parent, keys)
            for line in outcomes[scenario.name].lines():
                log(line)
    log(f"boots took {time.monotonic() - boots_started:.1f} s "
        f"(whole run {time.monotonic() - started:.1f} s)")
    summary = {name: {"status": o.status, "reason": o.reason, "timing": o.timing(),
                      "failures": o.checks.failures if o.checks else []}
               for name, o in outcomes.items()}
    (run_root / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    return {s.name: outcomes[s.name] for s in chosen}


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accel", choices=("auto", "kvm", "tcg"), default=None)
    parser.add_argument("--jobs", type=int, default=None, help="boots at a time")
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    parser.add_argument("scenarios", nargs="*", metavar="SCENARIO")
    args = parser.parse_args(argv)
    if args.list:
        for scenario in SCENARIOS:
            print(f"{scenario.name:28} {scenario.issue}  {scenario.title}")
        return 0
    unknown = [n for n in args.scenarios if n not in by_name()]
    if unknown:
        parser.error(f"unknown scenario(s) {', '.join(unknown)}; see --list")
    outcomes = run_scenarios(args.scenarios or None, accel=args.accel, jobs=args.jobs,
                             log=lambda line: print(line, flush=True))
    for outcome in outcomes.values():
        if outcome.status == "skip":
            print("\n".join(outcome.lines()), flush=True)
    passed = sum(o.status == "pass" for o in outcomes.values())
    failed = sum(o.status == "fail" for o in outcomes.values())
    print(f"{passed} passed, {failed} failed", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
