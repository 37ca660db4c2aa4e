"""The sequential client: curl fetching exactly the requests an agent run made, one after
another on one connection (one curl invocation, ``--next`` between requests, so curl keeps the
connection open and reuses it).

The requests come from the fake server's log of an agent run: same methods, paths, queries and
protocol headers (the IMDSv2 token PUT, the token the agent then sent, ``Metadata-Flavor``),
in the order the server saw them. The token the agent received stays valid on that server, so
curl sends the same PUT and then the same GETs with the same token, as an agent fetching
sequentially would.
"""

from __future__ import annotations

from typing import Iterable, List, Sequence, Tuple

CURL = "/usr/bin/curl"
# Headers each client sets on its own (or that describe the connection, not the request).
CLIENT_HEADERS = {"host", "user-agent", "accept", "accept-encoding", "connection",
                  "content-length", "content-type", "transfer-encoding"}
WRITE_OUT = "%{http_code} %{num_connects}\\n"  # one line per transfer, parsed after the run


def replayable(entries: Iterable[dict]) -> List[dict]:
    """The logged requests in arrival order."""
    return sorted(entries, key=lambda e: e["time"])


def curl_argv(base_url: str, entries: Sequence[dict]) -> List[str]:
    argv = [CURL]
    for i, entry in enumerate(entries):
        if i:
            argv.append("--next")
        argv += ["--no-progress-meter", "--http1.1", "-o", "/dev/null", "-w", WRITE_OUT]
        if entry["method"] != "GET":
            argv += ["-X", entry["method"]]
        for name, value in sorted(entry.get("headers", {}).items()):
            if name.lower() not in CLIENT_HEADERS:
                argv += ["-H", f"{name}: {value}"]
        if entry.get("body"):
            argv += ["--data-binary", entry["body"]]
        url = base_url.rstrip("/") + entry["path"]
        if entry.get("query"):
            url += "?" + entry["query"]
        argv.append(url)
    return argv


def parse_write_out(stdout: str) -> Tuple[List[int], int]:
    """(HTTP status of each transfer, connections opened in all)."""
    statuses, connects = [], 0
    for line in stdout.splitlines():
        code, _, count = line.partition(" ")
        statuses.append(int(code))
        connects += int(count or 0)
    return statuses, connects


def signature(entries: Iterable[dict]) -> List[Tuple[str, str, str, int]]:
    """What must match between the agent's requests and curl's: method, path, query, status."""
    return sorted((e["method"], e["path"], e.get("query", ""), e["status"] or 0) for e in entries)
