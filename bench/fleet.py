"""The measurements beyond one agent at a time: a fleet booting at once against one server,
the CPU an extra request costs, and what rendering network units adds to a run.

Fleet: N agents are spawned back to back (``posix_spawn``) against one fake server and reaped
with ``wait4``; a boot's figures are the N agents' wall times (spawn to reap) and the time from
the first spawn to the last reap, so *finished per second* is N over that span.
"""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass, field
from typing import Optional, Dict, List, Mapping, Sequence

FLEET_SIZES = (1, 8, 32)
FLEET_PLATFORM = "ec2"
FLEET_LATENCY = 0.002  # a link-local service answers in about this
KEY_COST_PLATFORM = "ec2"  # one request per key: the cost of an extra request
KEY_COST_KEYS = (1, 1000)
NETWORK_STACKS = ("networkd", "netplan", "networkmanager")
NETWORK_INTERFACES = 4
FLEET_TIMEOUT = 120.0


@dataclass
class FleetRow:
    agents: int
    walls: List[float] = field(default_factory=list)  # every agent of every boot
    spans: List[float] = field(default_factory=list)  # first spawn to last reap, per boot
    failures: int = 0

    @property
    def per_second(self) -> float:
        return statistics.median(self.agents / s for s in self.spans)

    def percentile(self, p: float) -> float:
        ordered = sorted(self.walls)
        return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


def boot(argvs: Sequence[List[str]], env: Mapping[str, str]) -> tuple:
    """Spawn every argv at once; (wall time of each, first spawn to last reap, failures)."""
    started: Dict[int, float] = {}
    first = time.perf_counter()
    for argv in argvs:
        pid = os.posix_spawn(argv[0], argv, dict(env), setpgroup=0, file_actions=[
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
            (os.POSIX_SPAWN_OPEN, 2, os.devnull, os.O_WRONLY, 0)])
        started[pid] = time.perf_counter()
    walls, failures, last = [], 0, first
    deadline = first + FLEET_TIMEOUT
    while started:
        if time.perf_counter() > deadline:
            for pid in started:
                os.kill(pid, 9)
        pid, status, _ = os.wait4(-1, 0)
        if pid not in started:
            continue
        last = time.perf_counter()
        walls.append(last - started.pop(pid))
        failures += os.waitstatus_to_exitcode(status) != 0
    return walls, last - first, failures


@dataclass
class KeyCost:
    keys: Dict[int, List[float]] = field(default_factory=dict)  # keys -> CPU seconds per run
    requests: Dict[int, int] = field(default_factory=dict)
    # the same runs one request at a time (CL_METADATA_CONCURRENCY=1), and the floor: a bare
    # requests.Session asking the same key URLs in a loop (REQUESTS_FLOOR), keys -> CPU seconds
    serial: Dict[int, List[float]] = field(default_factory=dict)
    floor: Dict[int, List[float]] = field(default_factory=dict)

    def per_request(self, runs: Optional[Dict[int, List[float]]] = None) -> float:
        """Median CPU of the many-key runs minus the one-key runs, per extra request."""
        runs = self.keys if runs is None else runs
        few, many = min(runs), max(runs)
        extra = self.requests[many] - self.requests[few]
        return (statistics.median(runs[many]) - statistics.median(runs[few])) / extra


# Run by the bench venv's interpreter: the least CPU requests itself spends on one GET — a
# Session asking the token, then key 0 … N-1 of the ec2 fake server one after another.
REQUESTS_FLOOR = r"""
import sys, requests
base, keys = sys.argv[1], int(sys.argv[2])
s = requests.Session()
token = s.put(base + "/latest/api/token",
              headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"}).text
headers = {"X-aws-ec2-metadata-token": token}
for i in range(keys):
    s.get(f"{base}/2021-01-03/meta-data/public-keys/{i}/openssh-key", headers=headers).content
"""


# Run by the bench venv's interpreter: what a run that writes network units pays for it, beyond
# what every run that writes an output imports anyway (the command line and its logging, the
# pipeline, the model, the atomic file writer): the stack's modules, then the first render of a
# 4-interface description (two NICs with static addresses, a DHCP NIC and a VLAN on it).
NETWORK_PROBE = r"""
import sys, time
import cl_metadata.cli, cl_metadata.pipeline, cl_metadata.outputs.fsutil
from cl_metadata.model import NetworkInterface, Route, VirtualNetDev
interfaces = [
    NetworkInterface(name="eth0", mac="fa:16:3e:4c:2d:7a", priority=10,
                     addresses=("10.0.1.15/24", "2001:db8:1:2::15/64"),
                     routes=(Route("0.0.0.0/0", "10.0.1.1"), Route("::/0", "2001:db8:1:2::1")),
                     nameservers=("192.0.2.53",)),
    NetworkInterface(name="eth1", mac="fa:16:3e:4c:2d:7b", priority=20,
                     addresses=("10.0.2.15/24",), routes=(Route("10.2.0.0/16", "10.0.2.1"),)),
    NetworkInterface(name="eth2", mac="fa:16:3e:4c:2d:7c", priority=30, dhcp="ipv4",
                     vlans=("vlan100",)),
    NetworkInterface(name="vlan100", priority=40, addresses=("192.168.100.15/24",)),
]
netdevs = [VirtualNetDev(name="vlan100", kind="vlan", vlan_id=100)]
started = time.perf_counter()
stack = __import__("cl_metadata.network." + sys.argv[1], fromlist=["render"])
imported = time.perf_counter()
files = stack.render(interfaces, netdevs)
rendered = time.perf_counter()
assert files, "nothing rendered"
for _ in range(50):
    stack.render(interfaces, netdevs)
again = (time.perf_counter() - rendered) / 50
print(imported - started, rendered - imported, again, len(files))
"""


@dataclass
class NetworkCost:
    stack: str
    imports: List[float] = field(default_factory=list)  # seconds to import the stack
    first: List[float] = field(default_factory=list)  # the first render
    again: List[float] = field(default_factory=list)  # a render once everything is warm
    files: int = 0

    @property
    def added(self) -> float:
        """What a run pays: import plus first render (medians of the same runs)."""
        return statistics.median(i + f for i, f in zip(self.imports, self.first))
