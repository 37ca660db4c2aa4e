"""The targets of issues 7, 12 and 16, judged from the measured figures: met or not, with the figure,
and for a missed one why and a line to file as an issue note."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import imports
from measure import Series, Summary, paired

# Variant and output names, shared with driver.py and report.py.
AGENT, AGENT_C1, CURL = "cl-metadata", "cl-metadata, concurrency 1", "curl, sequential"
FLOOR_PASS, FLOOR_REQUESTS, FLOOR_HTTP_CLIENT = (
    'python -c pass', 'python -c "import requests"', 'python -c "import http.client"')
FLOORS = (FLOOR_PASS, FLOOR_REQUESTS, FLOOR_HTTP_CLIENT)
ATTRIBUTES, ALL = "attributes", "attributes + ssh keys + hostname"

TARGET_RATIO = 0.5
TARGET_HTTP_OVER_MS = 25.0
TARGET_DRIVE_OVER_MS = 30.0
TARGET_RSS_MIB = 24.0  # HTTP platforms (issue 16)
TARGET_DRIVE_RSS_MIB = 14.0
TARGET_GCP_RATIO = 1.0
TARGET_CPU_PER_REQUEST_MS = 0.5
PEER_CPU_PER_REQUEST_MS = 0.85  # cloud-init's datasource API, measured for issue 16
TARGET_NETWORK_MS = 5.0  # issue 12
KEY_PATH_MARKS = ("public-keys", "ssh-keys", "sshkeys", "ssh_keys", "public_keys")
USER_DATA_MARKS = ("user-data", "user_data", "userdata")
NOT_RUN = "not run (left out of this run)"


@dataclass
class Results:
    blocks: list = field(default_factory=list)  # driver.Block
    growth: list = field(default_factory=list)  # driver.GrowthRow
    floor_profiles: Dict[str, imports.ImportProfile] = field(default_factory=dict)
    meta: dict = field(default_factory=dict)
    fleet: list = field(default_factory=list)  # fleet.FleetRow
    key_cost: Optional[object] = None  # fleet.KeyCost
    network: list = field(default_factory=list)  # fleet.NetworkCost


@dataclass
class Target:
    name: str
    figure: str
    met: bool
    why: str = ""
    note: str = ""
    unjudged: bool = False  # figures shown, but the partner to judge them by was not run

    @property
    def verdict(self) -> str:
        if self.figure == NOT_RUN or self.unjudged:
            return "not run"
        return "met" if self.met else "missed"


# --- small formatting ---------------------------------------------------------------------

def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def sms(seconds: float) -> str:
    """Signed milliseconds, for differences."""
    return f"{seconds * 1000:+.1f}"


def span(values: Sequence[float], scale: float = 1000.0, digits: int = 1) -> str:
    s = Summary.of(values)
    return (f"{s.median * scale:.{digits}f} ({s.low * scale:.{digits}f}–"
            f"{s.high * scale:.{digits}f})")


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def latency_label(block) -> str:
    return "—" if block.latency is None else f"{block.latency * 1000:g} ms"


def ratio(series: Series, a: str, b: str) -> Optional[float]:
    if not (series.has(a) and series.has(b)):
        return None
    return median(paired(series.walls(a), series.walls(b), lambda x, y: x / y))


def over(series: Series, a: str, b: str) -> Optional[float]:
    """Median of the per-round differences a − b, in seconds."""
    if not (series.has(a) and series.has(b)):
        return None
    return median(paired(series.walls(a), series.walls(b), lambda x, y: x - y))


def over_cpu(series: Series, a: str, b: str) -> Optional[float]:
    if not (series.has(a) and series.has(b)):
        return None
    return median(paired(series.cpu(a), series.cpu(b), lambda x, y: x - y))


def request_counts(block) -> str:
    counts = sorted(set(block.series.requests.get(AGENT, [])))
    return "–".join(str(c) for c in (counts[:1] + counts[-1:] if len(counts) > 1 else counts))


def find(blocks, platform=None, latency="any", output=None, source=None):
    return [b for b in blocks
            if (platform is None or b.platform == platform)
            and (latency == "any" or b.latency == latency)
            and (output is None or b.output == output)
            and (source is None or b.source == source)]


def all_floor(blocks, name: str) -> List[float]:
    return [w for b in blocks for w in b.series.walls(name)]


def all_floor_rss(blocks, name: str) -> List[float]:
    return [r for b in blocks for r in b.series.rss(name)]


# --- targets ------------------------------------------------------------------------------

def target_ratio(results: Results) -> Target:
    name = "ec2/aws at 20 ms/request ≤ 0.5× the sequential client (curl, same URLs)"
    rows = [b for b in find(results.blocks, latency=0.020, source="http")
            if b.platform in ("ec2", "aws")]
    if not rows:
        return Target(name, NOT_RUN, False)
    figures = [(b, ratio(b.series, AGENT, CURL)) for b in rows]
    figure = "; ".join(
        f"{b.platform} {short(b.output)}: {r:.2f}× ({ms(median(b.series.walls(AGENT)))} vs "
        f"{ms(median(b.series.walls(CURL)))} ms)" for b, r in figures)
    b, worst = max(figures, key=lambda item: item[1])
    target = Target(name, figure, worst <= TARGET_RATIO)
    if target.met:
        return target
    curl = median(b.series.walls(CURL))
    half = TARGET_RATIO * curl
    zero = find(results.blocks, b.platform, 0.0, b.output)
    floor = median(zero[0].series.walls(FLOOR_REQUESTS)) if zero else float("nan")
    verdict = ("more than that by itself: the Python + requests start-up, not the fetching, "
               "decides the ratio" if floor >= half else
               f"which leaves {ms(half - floor)} ms for everything the agent does beyond it")
    net, share = "", None
    if zero:  # what latency adds: this block minus the same block at 0 ms
        agent_net = median(b.series.walls(AGENT)) - median(zero[0].series.walls(AGENT))
        curl_net = curl - median(zero[0].series.walls(CURL))
        if curl_net > 0:
            share = agent_net / curl_net
            net = (f" The time latency adds (this block minus the same block at 0 ms) is "
                   f"{ms(agent_net)} ms for cl-metadata against {ms(curl_net)} ms for curl, "
                   f"{share:.2f}× — " + ("within the target: the concurrent fetching does its "
                                         "part." if share <= TARGET_RATIO else
                                         "over the target too."))
    target.why = (
        f"{b.platform} ({short(b.output)}) makes {len(b.requests)} requests; curl pays them "
        f"one after another, {ms(curl)} ms in all. Half of that is {ms(half)} ms; "
        f"`{FLOOR_REQUESTS}` alone takes {ms(floor)} ms on the same interpreter, {verdict}."
        + net)
    target.note = (
        f"bench: ec2/aws at 20 ms/request is {worst:.2f}× the sequential client (target ≤ "
        f"0.5×); the `import requests` floor alone is {ms(floor)} ms against half of curl's "
        f"{ms(curl)} ms" + (f", while the time latency adds is {share:.2f}× curl's"
                            if share is not None else "")
        + ". Cut start-up (stdlib http.client instead of requests on the boot path) or state "
        "the target on the time latency adds.")
    return target


def target_http_start(results: Results) -> Target:
    name = "any HTTP platform at 0 ms ≤ 25 ms over `python -c \"import requests\"`"
    rows = find(results.blocks, latency=0.0, source="http")
    figures = [(b, over(b.series, AGENT, FLOOR_REQUESTS)) for b in rows]
    if not figures:
        return Target(name, NOT_RUN, False)
    worst_block, worst = max(figures, key=lambda item: item[1])
    best_block, best = min(figures, key=lambda item: item[1])
    cpu = [over_cpu(b.series, AGENT, FLOOR_REQUESTS) for b, _ in figures]
    figure = (f"from {sms(best)} ms ({best_block.platform}, {short(best_block.output)}) to "
              f"{sms(worst)} ms ({worst_block.platform}, {short(worst_block.output)}); in CPU "
              f"time from {sms(min(cpu))} to {sms(max(cpu))} ms")
    target = Target(name, figure, worst * 1000 <= TARGET_HTTP_OVER_MS)
    if not target.met:
        profile = worst_block.profile
        floor = results.floor_profiles.get(FLOOR_REQUESTS)
        extra = ""
        if profile is not None and floor is not None:
            beyond = profile.beyond(floor)
            extra = (f" Under `-X importtime` that run imported {len(beyond)} modules beyond "
                     f"`import requests`, {sum(us for _, us in beyond) / 1000:.1f} ms of their own "
                     f"(inflated by the profiler; see the start-up profile below); the rest is "
                     f"the run: thread pool, {len(worst_block.requests)} requests through "
                     f"requests/urllib3, validation and the atomic writes.")
        over_rows = [b for b, v in figures if v * 1000 > TARGET_HTTP_OVER_MS]
        first = worst_block.series.to_first.get(AGENT)
        floor_wall = median(worst_block.series.walls(FLOOR_REQUESTS))
        timing = (f" Its first request reached the server {ms(median(first))} ms after spawn, "
                  f"against {ms(floor_wall)} ms for the whole `import requests` run."
                  if first else "")
        target.why = (f"{len(over_rows)} of {len(figures)} rows exceed 25 ms; the worst is "
                      f"{worst_block.platform} ({short(worst_block.output)}) at {sms(worst)} ms."
                      + timing + extra)
        target.note = (f"bench: at 0 ms/request cl-metadata takes up to {sms(worst)} ms over "
                       f"`python -c \"import requests\"` ({worst_block.platform}, "
                       f"{short(worst_block.output)}; target 25 ms): see the start-up profile in "
                       f"bench/RESULTS.md for the modules the boot path imports beyond requests.")
    return target


def target_drive(results: Results) -> Target:
    name = "config-drive platform: `requests` not imported and ≤ 30 ms over `python -c pass`"
    rows = find(results.blocks, source="config drive")
    if not rows:
        return Target(name, NOT_RUN, False)
    imported = sorted({m for b in rows
                       for m in (b.profile.http_stack() if b.profile else ["(no profile)"])})
    figures = [(b, over(b.series, AGENT, FLOOR_PASS)) for b in rows]
    b, worst = max(figures, key=lambda item: item[1])
    figure = (f"requests imported: {'YES: ' + ', '.join(imported[:5]) if imported else 'no'} "
              f"(`-X importtime`, every output); " + "; ".join(
                  f"{short(row.output)}: {sms(v)} ms over `python -c pass` (CPU "
                  f"{sms(over_cpu(row.series, AGENT, FLOOR_PASS))} ms)" for row, v in figures))
    target = Target(name, figure, not imported and worst * 1000 <= TARGET_DRIVE_OVER_MS)
    if target.met:
        return target
    why = []
    if imported:
        why.append(f"the config-drive run imported {', '.join(imported[:8])}")
    if worst * 1000 > TARGET_DRIVE_OVER_MS:
        floor = results.floor_profiles.get(FLOOR_PASS)
        text = f"{short(b.output)} takes {sms(worst)} ms over `python -c pass`"
        if b.profile is not None and floor is not None:
            subtrees = ", ".join(f"{m} {us / 1000:.1f}"
                                 for m, us in b.profile.heavy_subtrees(floor))
            own = sum(us for m, us in b.profile.self_us.items() if m.startswith("cl_metadata"))
            text += (f"; under `-X importtime` it imports {len(b.profile.beyond(floor))} modules "
                     f"the bare interpreter does not, the costliest subtrees being (ms) "
                     f"{subtrees}, and cl_metadata's own modules take {own / 1000:.1f} ms")
        why.append(text)
    target.why = "; ".join(why) + "."
    target.note = f"bench: config-drive target missed: {target.why}"
    return target


def target_rss(results: Results) -> Target:
    name = (f"peak RSS ≤ {TARGET_RSS_MIB:g} MiB on every HTTP platform, config drive ≤ "
            f"{TARGET_DRIVE_RSS_MIB:g} MiB")
    per_platform: Dict[str, List[float]] = {}
    for b in results.blocks:
        key = b.platform + (" (config drive)" if b.source == "config drive" else "")
        per_platform.setdefault(key, []).extend(
            b.series.rss(AGENT) + b.series.rss(AGENT_C1))
    peaks = {p: max(v) for p, v in per_platform.items() if v}
    if not peaks:
        return Target(name, NOT_RUN, False)

    def limit(platform: str) -> float:
        return TARGET_DRIVE_RSS_MIB if "config drive" in platform else TARGET_RSS_MIB

    figure = "; ".join(f"{p} {peak:.1f}" for p, peak in peaks.items()) + " MiB (largest run)"
    over_ = sorted(p for p, v in peaks.items() if v > limit(p))
    target = Target(name, figure, not over_)
    if not target.met:
        req = median(all_floor_rss(results.blocks, FLOOR_REQUESTS))
        base = median(all_floor_rss(results.blocks, FLOOR_PASS))
        stdlib = median(all_floor_rss(results.blocks, FLOOR_HTTP_CLIENT))
        http_peak = max((v for p, v in peaks.items() if "config drive" not in p), default=0)
        target.why = (
            f"over: {', '.join(over_)}. `{FLOOR_REQUESTS}` alone peaks at {req:.1f} MiB "
            f"(`{FLOOR_PASS}`: {base:.1f} MiB; `{FLOOR_HTTP_CLIENT}`: {stdlib:.1f} MiB); the "
            f"agent leaves charset detection out of its own import of requests, but urllib3 "
            f"still maps ssl/OpenSSL and (urllib3 2) importlib.metadata for its HTTP/2 probe "
            f"before the agent does anything. The agent's largest HTTP run is "
            f"{http_peak - req:+.1f} MiB against that floor.")
        target.note = (
            f"bench: peak RSS of HTTP platforms is up to {http_peak:.1f} MiB (target "
            f"{TARGET_RSS_MIB:g}); `import requests` alone is {req:.1f} MiB, `import "
            f"http.client` {stdlib:.1f} MiB. Leaving ssl out for http:// platforms (~1.4 MiB) "
            f"needs the platform's scheme known before requests is imported.")
    return target


def target_gcp_ratio(results: Results) -> Target:
    name = "gcp at 20 ms/request ≤ 1.0× the sequential client"
    rows = find(results.blocks, "gcp", 0.020, source="http")
    if not rows:
        return Target(name, NOT_RUN, False)
    figures = [(b, ratio(b.series, AGENT, CURL)) for b in rows]
    worst = max(r for _, r in figures)
    target = Target(name, "; ".join(
        f"{short(b.output)}: {r:.2f}× ({ms(median(b.series.walls(AGENT)))} vs "
        f"{ms(median(b.series.walls(CURL)))} ms)" for b, r in figures), worst <= TARGET_GCP_RATIO)
    if not target.met:
        b = max(figures, key=lambda item: item[1])[0]
        zero = find(results.blocks, "gcp", 0.0, b.output)
        floor = median(zero[0].series.walls(FLOOR_REQUESTS)) if zero else float("nan")
        target.why = (f"gcp makes {len(b.requests)} requests; curl pays them in "
                      f"{ms(median(b.series.walls(CURL)))} ms, while `{FLOOR_REQUESTS}` alone "
                      f"takes {ms(floor)} ms: with this few requests the interpreter and "
                      f"library start-up decide the ratio.")
        target.note = f"bench: gcp at 20 ms is {worst:.2f}× curl (target ≤ 1.0×)"
    return target


def target_request_cpu(results: Results) -> Target:
    name = (f"CPU per extra request ≤ {TARGET_CPU_PER_REQUEST_MS:g} ms (ec2, 1 vs 1000 keys; "
            f"cloud-init's {PEER_CPU_PER_REQUEST_MS:g} ms for reference)")
    cost = results.key_cost
    if cost is None or len(cost.keys) < 2:
        return Target(name, NOT_RUN, False)
    per = cost.per_request() * 1000
    few, many = min(cost.keys), max(cost.keys)
    figure = (f"{per:.3f} ms per request ({per / PEER_CPU_PER_REQUEST_MS:.2f}× cloud-init's "
              f"figure from issue 16); {cost.requests[few]} vs {cost.requests[many]} requests, "
              f"CPU {span(cost.keys[few])} vs {span(cost.keys[many])} ms")
    target = Target(name, figure, per <= TARGET_CPU_PER_REQUEST_MS)
    if not target.met:
        target.why = ("each request goes through requests' Session.request (hooks, "
                      "cookie and header merging, adapter, urllib3 pool checkout and response "
                      "wrapping), the agent's cache and retry loop, the key parsing and a log "
                      "call; the per-request watchdog thread is gone.")
        if cost.floor.get(many) and cost.serial.get(many):
            floor = cost.per_request(cost.floor) * 1000
            serial = cost.per_request(cost.serial) * 1000
            over = " — over the target on its own" if floor > TARGET_CPU_PER_REQUEST_MS else ""
            threads = per - serial
            concurrency = (f"its default concurrency adds {threads:.3f} ms of thread "
                           f"hand-overs, the price of the wall time a slow platform needs"
                           if threads > 0 else
                           f"its default concurrency adds no CPU measurable here "
                           f"({threads:+.3f} ms)")
            target.why += (f" The floor is requests itself: a bare Session costs {floor:.3f} ms "
                           f"per GET here{over}; the agent one request at a time costs "
                           f"{serial:.3f} ms, and {concurrency}. Meeting the target takes an "
                           f"HTTP client below requests, which the design rules out.")
        target.note = f"bench: CPU per extra request {per:.3f} ms (target ≤ 0.5 ms)"
    return target


def target_fleet(results: Results) -> Target:
    name = "fleet boot, 32 agents at once: ≥ 3× cloud-init's agents finished per second"
    rows = {row.agents: row for row in results.fleet}
    if 32 not in rows:
        return Target(name, NOT_RUN, False)
    row = rows[32]
    figure = (f"{row.per_second:.1f} agents/s at N = 32 (p50 {ms(row.percentile(50))} ms, p99 "
              f"{ms(row.percentile(99))} ms); cloud-init peer not run: its Python package is "
              f"not installed here")
    return Target(name, figure, False, unjudged=True)


def target_network(results: Results) -> Target:
    name = (f"network units for a 4-interface description add ≤ {TARGET_NETWORK_MS:g} ms to a "
            f"run (import + first render, every stack)")
    if not results.network:
        return Target(name, NOT_RUN, False)
    worst = max(c.added for c in results.network)
    figure = "; ".join(f"{c.stack} {ms(c.added)} ms" for c in results.network)
    target = Target(name, figure, worst * 1000 <= TARGET_NETWORK_MS)
    if not target.met:
        target.why = "see the network rendering table: the import of the stack's modules " \
                     "dominates the first render."
        target.note = f"bench: network rendering adds up to {ms(worst)} ms (target ≤ 5 ms)"
    return target


def request_checks(block) -> List[str]:
    """Problems with what one block's agent run fetched (empty: only what was needed)."""
    problems = []
    counts = (set(block.series.requests.get(AGENT, []))
              | set(block.series.requests.get(AGENT_C1, [])))
    if len(counts) > 1:
        problems.append(f"count varies between runs ({sorted(counts)})")
    seen = [(m, p) for m, p, _ in block.requests]
    duplicates = sorted({r for r in seen if seen.count(r) > 1})
    if duplicates:
        problems.append("fetched twice: " + ", ".join(f"{m} {p}" for m, p in duplicates))
    if block.output == ATTRIBUTES:
        keys = [p for _, p, _ in block.requests if any(k in p.lower() for k in KEY_PATH_MARKS)]
        if keys:
            problems.append("attributes-only run fetched key paths: " + ", ".join(keys[:3]))
    data = [p for _, p, _ in block.requests if any(k in p.lower() for k in USER_DATA_MARKS)]
    if data:
        problems.append("fetched user data: " + ", ".join(data[:3]))
    if block.source == "config drive" and counts != {0}:
        problems.append(f"config-drive run reached the metadata service ({sorted(counts)})")
    return problems


def target_requests(results: Results) -> Target:
    counts: Dict[Tuple[str, str], str] = {}
    problems = []
    for b in results.blocks:
        label = b.platform + (" (drive)" if b.source == "config drive" else "")
        counts.setdefault((label, b.output), request_counts(b))
        problems += [f"{label}, {short(b.output)}, {latency_label(b)}: {p}"
                     for p in request_checks(b)]
    figure = "; ".join(f"{p} {counts[(p, ATTRIBUTES)]}/{counts.get((p, ALL), '?')}"
                       for p in dict.fromkeys(k[0] for k in counts)) + \
        " (attributes / attributes + keys + hostname)"
    target = Target("requests per run: only what the requested outputs need", figure,
                    not problems)
    if problems:
        target.why = "; ".join(problems)
        target.note = "bench: needless requests: " + "; ".join(problems[:3])
    return target


def short(output: str) -> str:
    return "attributes" if output == ATTRIBUTES else "all outputs"


def targets(results: Results) -> List[Target]:
    return [target_ratio(results), target_gcp_ratio(results), target_http_start(results),
            target_drive(results), target_rss(results), target_request_cpu(results),
            target_fleet(results), target_network(results), target_requests(results)]
