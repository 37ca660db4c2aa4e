"""The benchmark itself; ``bench/run`` builds the venv and starts this in a mount namespace.

Set-up starts one fake server per platform and latency (and for the config drive and each
growth instance), runs the agent once per block to learn its requests and builds the curl
command replaying them. Then rounds sweep every block: in each, the agent, the agent at
concurrency 1, curl and (at 0 ms) the interpreter floors run one after another, so every
figure has a same-moment partner, and a burst of load from other work is spread over all
blocks instead of spoiling one.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pwd
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import fleet
import imports
import instance as instances
import measure
import report
import sequential
from targets import (AGENT, AGENT_C1, ALL, ATTRIBUTES, CURL, FLOOR_HTTP_CLIENT, FLOOR_PASS,
                     FLOOR_REQUESTS, Results)
from server import FakeServer, write_drive

HTTP_PLATFORMS = ("openstack-metadata", "ec2", "aws", "gcp", "digitalocean")
DRIVE_PLATFORM = "openstack"  # its config drive, as a directory (CL_METADATA_CONFIG_DRIVE)
DRIVE_TRAP = "openstack-metadata"  # served during drive runs: a fallback request would show
LATENCIES = (0.0, 0.002, 0.020)
OUTPUTS = (ATTRIBUTES, ALL)
GROWTH_PLATFORM = "digitalocean"  # one document carries every key: growth is the agent's own
GROWTH_KEYS = (1, 100, 10000)
DOC_CAP = 1 << 20  # the agent's body cap
DOC_MARGIN = 256  # "just under the cap"
FLOOR_CODE = {FLOOR_PASS: "pass", FLOOR_REQUESTS: "import requests",
              FLOOR_HTTP_CLIENT: "import http.client"}
PROFILE_RUNS = 3
BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass
class Block:
    platform: str
    source: str  # "http" or "config drive"
    latency: Optional[float]
    output: str
    series: measure.Series = field(default_factory=measure.Series)
    requests: List[Tuple[str, str, int]] = field(default_factory=list)  # one agent run's
    curl_connects: Optional[int] = None
    curl_same_requests: Optional[bool] = None
    profile: Optional[imports.ImportProfile] = None


@dataclass
class GrowthRow:
    label: str
    keys: int
    document_bytes: int
    fragment_lines: int
    fragment_bytes: int
    series: measure.Series = field(default_factory=measure.Series)


class Bench:
    def __init__(self, venv: str, scratch: str, runs: int, warmup: int):
        self.bin = os.path.join(venv, "bin")
        self.python = os.path.join(self.bin, "python")
        self.agent = os.path.join(self.bin, "cl-metadata")
        self.scratch = scratch
        self.runs, self.warmup = runs, warmup
        user = pwd.getpwuid(os.getuid())
        self.user, self.home = user.pw_name, user.pw_dir
        self.out = os.path.join(scratch, "out")
        self.logs = os.path.join(scratch, "logs")
        for directory in (self.out, self.logs):
            os.makedirs(directory, exist_ok=True)
        self.base_env = {"PATH": BASE_PATH, "LANG": "C.UTF-8", "HOME": self.home}

    def env(self, **extra: str) -> Dict[str, str]:
        return dict(self.base_env, **extra)

    def run(self, argv: Sequence[str], env: Dict[str, str]) -> measure.Sample:
        return measure.run(argv, env, self.scratch)

    def agent_argv(self, platform: str, output: str) -> List[str]:
        argv = [self.agent, "--provider", platform,
                "--attributes", os.path.join(self.out, "attributes")]
        if output == ALL:
            argv += ["--ssh-keys", self.user, "--hostname", os.path.join(self.out, "hostname")]
        return argv

    def floors(self) -> Dict[str, Tuple[List[str], Dict[str, str]]]:
        return {name: ([self.python, "-c", code], self.env()) for name, code in FLOOR_CODE.items()}

    def import_profile(self, argv: List[str], env: Dict[str, str],
                       server: Optional[FakeServer]) -> imports.ImportProfile:
        """Per-module medians of PROFILE_RUNS runs under ``PYTHONPROFILEIMPORTTIME=1``."""
        profiles = []
        for _ in range(PROFILE_RUNS):
            sample = self.run(argv, dict(env, PYTHONPROFILEIMPORTTIME="1"))
            profiles.append(imports.ImportProfile.parse(sample.stderr))
            if server is not None:
                server.new_requests()
        return imports.ImportProfile.median_of(profiles)


def progress(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


@dataclass
class Job:
    """What one block or growth row measures: its variants, on its server."""
    label: str
    variants: Dict[str, Tuple[List[str], Dict[str, str]]]
    series: measure.Series
    server: Optional[FakeServer]


def http_block(bench: Bench, server: FakeServer, platform: str, latency: float,
               output: str) -> Tuple[Block, Job]:
    block = Block(platform, "http", latency, output)
    env = bench.env(CL_METADATA_ENDPOINT=server.url)
    agent = bench.agent_argv(platform, output)
    server.new_requests()
    bench.run(agent, env)  # the requests to replay come from this run
    entries = sequential.replayable(server.new_requests())
    block.requests = [(e["method"], e["path"], e["status"]) for e in entries]
    curl = sequential.curl_argv(server.url, entries)
    sample = bench.run(curl, bench.env())
    _, block.curl_connects = sequential.parse_write_out(sample.stdout)
    block.curl_same_requests = (sequential.signature(server.new_requests())
                                == sequential.signature(entries))
    variants = {AGENT: (agent, env),
                AGENT_C1: (agent, dict(env, CL_METADATA_CONCURRENCY="1")),
                CURL: (curl, bench.env())}
    if latency == 0:  # the start-up targets are judged at 0 ms: the floors run there
        variants.update(bench.floors())
    label = f"{platform}, {latency * 1000:g} ms/request, {output}"
    return block, Job(label, variants, block.series, server)


def drive_block(bench: Bench, trap: FakeServer, drive: str, output: str) -> Tuple[Block, Job]:
    block = Block(DRIVE_PLATFORM, "config drive", None, output)
    env = bench.env(CL_METADATA_CONFIG_DRIVE=drive, CL_METADATA_ENDPOINT=trap.url)
    variants = {AGENT: (bench.agent_argv(DRIVE_PLATFORM, output), env), **bench.floors()}
    return block, Job(f"{DRIVE_PLATFORM} config drive, {output}", variants, block.series, trap)


def document_size(url: str) -> int:
    """Bytes of a document on the loopback fake server (no proxies: 127.0.0.1 only)."""
    if not url.startswith("http://127.0.0.1:"):
        raise ValueError("loopback only")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=10) as response:
        return len(response.read())


def growth_server(bench: Bench, name: str, keys: int, user_data: Optional[str]) -> FakeServer:
    path = instances.write(os.path.join(bench.scratch, f"instance-{name}.json"),
                           instances.instance(keys, user_data))
    return FakeServer(bench.bin, GROWTH_PLATFORM, 0.0, os.path.join(bench.logs, f"{name}.jsonl"),
                      bench.env(), instance=path)


def growth_row(bench: Bench, server: FakeServer, label: str, keys: int) -> Tuple[GrowthRow, Job]:
    size = document_size(server.url + "/metadata/v1.json")
    agent = bench.agent_argv(GROWTH_PLATFORM, ALL)
    env = bench.env(CL_METADATA_ENDPOINT=server.url)
    bench.run(agent, env)  # the fragment this instance gives (every run rewrites the same one)
    server.new_requests()
    with open(os.path.join(bench.home, ".ssh", "authorized_keys.d", "cl-metadata"), "rb") as f:
        data = f.read()
    row = GrowthRow(label, keys, size, data.count(b"\n"), len(data))
    variants = {AGENT: (agent, env), FLOOR_REQUESTS: bench.floors()[FLOOR_REQUESTS]}
    return row, Job(f"growth: {label}", variants, row.series, server)


def padded_user_data(bench: Bench) -> str:
    """User data that brings the growth platform's document just under the body cap."""
    with growth_server(bench, "padding", 1, "") as server:
        base = document_size(server.url + "/metadata/v1.json")
    return "x" * (DOC_CAP - DOC_MARGIN - base)  # plain ASCII: one JSON byte per character


def sweep(bench: Bench, jobs: Sequence[Job]) -> None:
    """Warm-up rounds, then measured ones. A round runs every job once, and each job its
    variants one after another (order rotated each round): a burst of load from other work
    is spread over all jobs instead of spoiling one block, and each variant has a same-moment
    partner in its round."""
    for round_no in range(bench.warmup + bench.runs):
        kind = "warm-up" if round_no < bench.warmup else "measured"
        progress(f"round {round_no + 1}/{bench.warmup + bench.runs} ({kind}), {len(jobs)} blocks")
        for job in jobs:
            names = list(job.variants)
            shift = round_no % len(names)
            for name in names[shift:] + names[:shift]:
                argv, env = job.variants[name]
                sample = bench.run(argv, env)
                seen = job.server.new_requests() if job.server is not None else None
                if round_no >= bench.warmup:
                    job.series.add(name, sample, seen)


def run_fleet(bench: Bench, rounds: int) -> List[fleet.FleetRow]:
    """N agents at once against one server (ec2, attributes + hostname), N in FLEET_SIZES;
    one warm-up boot, then ``rounds`` boots per N, the sizes interleaved."""
    rows = [fleet.FleetRow(n) for n in fleet.FLEET_SIZES]
    log = os.path.join(bench.logs, "fleet.jsonl")
    with FakeServer(bench.bin, fleet.FLEET_PLATFORM, fleet.FLEET_LATENCY, log,
                    bench.env()) as server:
        env = bench.env(CL_METADATA_ENDPOINT=server.url)
        for round_no in range(rounds + 1):
            progress(f"fleet round {round_no + 1}/{rounds + 1}"
                     + (" (warm-up)" if round_no == 0 else ""))
            for row in rows:
                argvs = [[bench.agent, "--provider", fleet.FLEET_PLATFORM,
                          "--attributes", os.path.join(bench.out, f"fleet-{i}.attributes"),
                          "--hostname", os.path.join(bench.out, f"fleet-{i}.hostname")]
                         for i in range(row.agents)]
                walls, span_, failures = fleet.boot(argvs, env)
                server.new_requests()
                if round_no:
                    row.walls += walls
                    row.spans.append(span_)
                    row.failures += failures
    return rows


def run_key_cost(bench: Bench, rounds: int) -> fleet.KeyCost:
    """CPU time of ec2 runs (all outputs) with 1 and with 1000 keys, one request per key."""
    cost = fleet.KeyCost()
    with contextlib.ExitStack() as servers:
        jobs = []
        for keys in fleet.KEY_COST_KEYS:
            path = instances.write(os.path.join(bench.scratch, f"keys-{keys}.json"),
                                   instances.instance(keys))
            server = servers.enter_context(FakeServer(
                bench.bin, fleet.KEY_COST_PLATFORM, 0.0,
                os.path.join(bench.logs, f"keys-{keys}.jsonl"), bench.env(), instance=path))
            argv = bench.agent_argv(fleet.KEY_COST_PLATFORM, ALL)
            jobs.append((keys, server, argv, bench.env(CL_METADATA_ENDPOINT=server.url)))
            cost.keys[keys], cost.serial[keys], cost.floor[keys] = [], [], []
        for round_no in range(rounds + 1):
            progress(f"key cost round {round_no + 1}/{rounds + 1}")
            for keys, server, argv, env in jobs:
                sample = bench.run(argv, env)
                cost.requests[keys] = len(server.new_requests())
                serial = bench.run(argv, dict(env, CL_METADATA_CONCURRENCY="1"))
                floor = bench.run([bench.python, "-c", fleet.REQUESTS_FLOOR, server.url,
                                   str(keys)], env)
                server.new_requests()
                if round_no:
                    cost.keys[keys].append(sample.cpu)
                    cost.serial[keys].append(serial.cpu)
                    cost.floor[keys].append(floor.cpu)
    return cost


def run_network(bench: Bench, rounds: int) -> List[fleet.NetworkCost]:
    """Import + first render of a 4-interface description, per stack, in fresh processes."""
    costs = [fleet.NetworkCost(stack) for stack in fleet.NETWORK_STACKS]
    for _ in range(rounds):
        for cost in costs:
            sample = bench.run([bench.python, "-c", fleet.NETWORK_PROBE, cost.stack],
                               bench.env())
            imported, first, again, files = sample.stdout.split()
            cost.imports.append(float(imported))
            cost.first.append(float(first))
            cost.again.append(float(again))
            cost.files = int(files)
    return costs


def run_all(bench: Bench, latencies: Sequence[float], platforms: Sequence[str],
            growth_keys: Sequence[int], include_drive: bool) -> Results:
    results = Results()
    jobs: List[Job] = []
    profiled: List[Tuple[Block, Job]] = []
    with contextlib.ExitStack() as servers:
        for platform in platforms:
            for latency in latencies:
                progress(f"setting up {platform} at {latency * 1000:g} ms/request")
                log = os.path.join(bench.logs, f"{platform}-{latency:g}.jsonl")
                server = servers.enter_context(
                    FakeServer(bench.bin, platform, latency, log, bench.env()))
                for output in OUTPUTS:
                    block, job = http_block(bench, server, platform, latency, output)
                    results.blocks.append(block)
                    jobs.append(job)
                    if latency == 0:
                        profiled.append((block, job))
        if include_drive:
            progress(f"setting up the {DRIVE_PLATFORM} config drive")
            drive = os.path.join(bench.scratch, "config-drive")
            write_drive(bench.bin, DRIVE_PLATFORM, drive, bench.env())
            trap = servers.enter_context(FakeServer(
                bench.bin, DRIVE_TRAP, 0.0, os.path.join(bench.logs, "drive-trap.jsonl"),
                bench.env()))
            for output in OUTPUTS:
                block, job = drive_block(bench, trap, drive, output)
                results.blocks.append(block)
                jobs.append(job)
                profiled.append((block, job))
        rows = [(f"{keys} key{'s' if keys > 1 else ''}", keys, None) for keys in growth_keys]
        if growth_keys:
            rows.append(("1 key, document ~1 MiB", 1, padded_user_data(bench)))
        for i, (label, keys, user_data) in enumerate(rows):
            progress(f"setting up growth: {label}")
            server = servers.enter_context(growth_server(bench, f"growth-{i}", keys, user_data))
            row, job = growth_row(bench, server, label, keys)
            results.growth.append(row)
            jobs.append(job)

        sweep(bench, jobs)
        progress("import profiles")
        for block, job in profiled:
            argv, env = job.variants[AGENT]
            block.profile = bench.import_profile(argv, env, job.server)
    for name, (argv, env) in bench.floors().items():
        results.floor_profiles[name] = bench.import_profile(argv, env, None)
    results.fleet = run_fleet(bench, bench.runs)
    results.key_cost = run_key_cost(bench, max(3, bench.runs // 2))
    results.network = run_network(bench, bench.runs)
    return results


# --- the private namespace --------------------------------------------------------------------

def enter_scratch(scratch: str, home: str) -> None:
    """Mount a tmpfs on ``scratch`` and bind its ``home`` over ``home``; refuse to do it in the
    namespace the bench was started from (that would cover the real home for everyone)."""
    parent = os.environ.get("CL_METADATA_BENCH_PARENT_NS")
    if not parent or os.readlink("/proc/self/ns/mnt") == parent:
        sys.exit("bench: not in a private mount namespace; run bench/run")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512m,mode=0700", "tmpfs", scratch],
                   check=True)
    scratch_home = os.path.join(scratch, "home")
    os.mkdir(scratch_home, 0o700)
    subprocess.run(["mount", "--bind", scratch_home, home], check=True)
    marker = os.path.join(home, ".cl-metadata-bench-home")
    open(marker, "w").close()
    if not os.path.exists(os.path.join(scratch_home, ".cl-metadata-bench-home")):
        sys.exit(f"bench: {home} is not covered by the scratch home")


def machine_state() -> Dict[str, str]:
    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])
    top = subprocess.run(["ps", "-eo", "pcpu=,comm=", "--sort=-pcpu"], capture_output=True,
                         text=True).stdout.splitlines()[:4]
    return {"loadavg": load, "busiest": ", ".join(
        f"{line.split(None, 1)[1]} {line.split()[0]}%" for line in top if len(line.split()) > 1)}


def versions(python: str) -> Dict[str, str]:
    code = ("import importlib.metadata as m, json, platform; d = {n: m.version(n) for n in "
            "('cl-metadata', 'requests', 'urllib3', 'charset-normalizer', 'idna', 'PyYAML')}; "
            "d['python'] = platform.python_version(); print(json.dumps(d))")
    found = json.loads(subprocess.run([python, "-c", code], capture_output=True, text=True,
                                      check=True).stdout)
    curl = subprocess.run([sequential.CURL, "--version"], capture_output=True, text=True)
    found["curl"] = curl.stdout.split()[1] if curl.stdout else "?"
    return found


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/run", description=__doc__.splitlines()[0])
    parser.add_argument("--venv", required=True)
    parser.add_argument("--scratch", required=True)
    parser.add_argument("--wheel", default="?")
    parser.add_argument("--quick", action="store_true",
                        help="1 measured run after 1 warm-up, latencies 0 and 20 ms: checks "
                             "that everything works (writes bench/RESULTS-quick.md)")
    parser.add_argument("--runs", type=int, help="measured runs per block (default 7)")
    parser.add_argument("--warmup", type=int, default=1, help="warm-up rounds per block")
    parser.add_argument("--out", help="results file (default bench/RESULTS.md)")
    parser.add_argument("--platforms", help="comma-separated subset of "
                        + ",".join(HTTP_PLATFORMS) + " (default: all)")
    parser.add_argument("--no-drive", action="store_true", help="skip the config-drive blocks")
    parser.add_argument("--no-growth", action="store_true", help="skip the cost-growth runs")
    parser.add_argument("--pickle", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    runs = args.runs or (1 if args.quick else 7)
    if not 1 <= runs <= 50 or not 0 <= args.warmup <= 10:
        parser.error("--runs must be 1..50 and --warmup 0..10")
    here = os.path.dirname(os.path.abspath(__file__))
    out = args.out or os.path.join(here, "RESULTS-quick.md" if args.quick else "RESULTS.md")
    latencies = (0.0, 0.020) if args.quick else LATENCIES

    enter_scratch(args.scratch, pwd.getpwuid(os.getuid()).pw_dir)
    bench = Bench(args.venv, args.scratch, runs, args.warmup)
    meta = {"wheel": args.wheel, "runs": runs, "warmup": args.warmup, "quick": args.quick,
            "cpu": cpu_model(), "cpus": os.cpu_count(), "versions": versions(bench.python),
            "python": os.path.realpath(bench.python), "before": machine_state(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    started = time.monotonic()
    platforms = HTTP_PLATFORMS if not args.platforms else tuple(args.platforms.split(","))
    unknown = set(platforms) - set(HTTP_PLATFORMS)
    if unknown:
        parser.error(f"unknown platform(s): {', '.join(sorted(unknown))}")
    results = run_all(bench, latencies, platforms, () if args.no_growth else GROWTH_KEYS,
                      include_drive=not args.no_drive)
    meta["after"] = machine_state()
    meta["elapsed"] = time.monotonic() - started
    results.meta = meta
    if args.pickle:  # for re-rendering while working on the report
        import pickle

        with open(args.pickle, "wb") as f:
            pickle.dump(results, f)
    text = report.render(results)
    with open(out, "w", encoding="utf-8") as f:
        f.write(text)
    print(report.summary(results))
    progress(f"wrote {out} in {meta['elapsed']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
