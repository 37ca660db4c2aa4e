"""Run one child process and account for it: wall time from spawn to reap, CPU time, peak RSS.

The bench spawns ``/usr/bin/time -f %M -o FILE COMMAND`` with ``posix_spawn`` and reaps it with
``os.wait4``: the wall time is the driver's clock around that, CPU time (user + system) is the
``wait4`` accounting (it includes time's own ~1 ms), and the peak RSS is GNU time's ``%M``,
the ``ru_maxrss`` of the command as time reaped it. The RSS cannot come from the driver's own
``wait4``: ``posix_spawn`` (like ``subprocess``) starts the child with vfork, and the kernel
folds the parent's high-water RSS into the child's ``ru_maxrss`` at exec, so every child of
this ~25 MiB Python driver would look at least that big. time forks from a ~2 MiB process.
Every measured command pays the same small time wrapper, so comparisons are unaffected.
"""

from __future__ import annotations

import os
import signal
import statistics
import threading
import time
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Sequence

CHILD_TIMEOUT = 60.0  # seconds; a hung child is killed and the bench fails (bounded runs)
TIME = "/usr/bin/time"


@dataclass(frozen=True)
class Sample:
    wall: float  # seconds from spawn to reap
    cpu: float  # seconds of user + system time, the command's and its reaped children's
    rss_kib: int  # peak RSS of the command (GNU time's %M: ru_maxrss)
    status: int  # exit status, or -signal
    stdout: str
    stderr: str
    started_at: float = 0.0  # time.time() at spawn: the fake server logs each request's
    # arrival with time.time() too, so the start-up before the first request can be measured


class ChildFailed(RuntimeError):
    pass


def run(argv: Sequence[str], env: Mapping[str, str], scratch: str,
        timeout: float = CHILD_TIMEOUT, check: bool = True) -> Sample:
    """Spawn ``argv`` (absolute path first) with ``env`` under GNU time; stdout/stderr go to
    files in ``scratch`` and are read back after the child was reaped (outside the timed span)."""
    out_path = os.path.join(scratch, "child.stdout")
    err_path = os.path.join(scratch, "child.stderr")
    rss_path = os.path.join(scratch, "child.rss")
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    actions = [(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
               (os.POSIX_SPAWN_OPEN, 1, out_path, flags, 0o600),
               (os.POSIX_SPAWN_OPEN, 2, err_path, flags, 0o600)]
    command = [TIME, "-f", "%M", "-o", rss_path, *argv]
    started_at = time.time()
    started = time.perf_counter()
    pid = os.posix_spawn(TIME, command, dict(env), file_actions=actions, setpgroup=0)
    killer = threading.Timer(timeout, _kill, (pid,))
    killer.daemon = True
    killer.start()
    try:
        _, wait_status, usage = os.wait4(pid, 0)
        wall = time.perf_counter() - started
    finally:
        killer.cancel()
    status = os.waitstatus_to_exitcode(wait_status)
    with open(out_path, encoding="utf-8", errors="replace") as f:
        stdout = f.read()
    with open(err_path, encoding="utf-8", errors="replace") as f:
        stderr = f.read()
    rss = _time_rss(rss_path)
    sample = Sample(wall, usage.ru_utime + usage.ru_stime, rss, status, stdout, stderr,
                    started_at)
    if check and status != 0:
        tail = "\n".join(stderr.strip().splitlines()[-5:])
        raise ChildFailed(f"{argv[0]} exited with {status}: {tail}")
    return sample


def _time_rss(path: str) -> int:
    """The %M figure: the last line of time's output file ("Command exited with non-zero
    status N" may come first)."""
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            lines = f.read().split()
        return int(lines[-1])
    except (OSError, ValueError, IndexError):
        return -1


def _kill(pid: int) -> None:
    """The process group started for this child only (time and the command under it)."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@dataclass(frozen=True)
class Summary:
    median: float
    low: float
    high: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> "Summary":
        if not values:
            raise ValueError("no values")
        return cls(statistics.median(values), min(values), max(values), len(values))


def paired(a: Sequence[float], b: Sequence[float], how) -> List[float]:
    """``how(a_i, b_i)`` for samples taken in the same round (side by side)."""
    return [how(x, y) for x, y in zip(a, b)]


class Series:
    """Samples of several variants taken round by round, so they can be paired."""

    def __init__(self) -> None:
        self.samples: Dict[str, List[Sample]] = {}
        self.requests: Dict[str, List[int]] = {}
        self.to_first: Dict[str, List[float]] = {}  # spawn → first request at the server

    def add(self, variant: str, sample: Sample, requests: Optional[List[dict]] = None) -> None:
        self.samples.setdefault(variant, []).append(sample)
        if requests is not None:
            self.requests.setdefault(variant, []).append(len(requests))
            if requests:
                first = min(r["time"] for r in requests)
                self.to_first.setdefault(variant, []).append(first - sample.started_at)

    def walls(self, variant: str) -> List[float]:
        return [s.wall for s in self.samples.get(variant, [])]

    def cpu(self, variant: str) -> List[float]:
        return [s.cpu for s in self.samples.get(variant, [])]

    def rss(self, variant: str) -> List[float]:
        return [s.rss_kib / 1024 for s in self.samples.get(variant, [])]

    def has(self, variant: str) -> bool:
        return bool(self.samples.get(variant))
