"""SIGKILL at any point of a run strands no temp file for good, and never a partial output.

The real agent process writes the attributes, the hostname and (as root) a throwaway user's
SSH key fragment, and is SIGKILLed with its whole process group (as systemd kills a unit's
cgroup, the privilege-dropped key writer included) at random points, most of them in the
short write phase after the last request. After every kill each output holds its old or its
new content, whole; after one clean run no temp file is left anywhere.

Kill points: a fifth anywhere in the run, the rest at a random delay after the last request,
half of those earlier still the moment a temp name shows (the window that matters).
``kill_loop`` is also the measuring tool: ``CL_METADATA_TEST_KILLS=300`` runs more kills.
"""

from __future__ import annotations

import os
import pathlib
import random
import re
import signal
import subprocess
import sys
import time
from typing import Dict, List, NamedTuple, Optional

import pytest

from conftest import IS_ROOT, run_agent

KILLS = int(os.environ.get("CL_METADATA_TEST_KILLS", "60"))
PROVIDER = "openstack-metadata"
OLD = {"attributes": b"COREOS_OLD=1\n", "hostname": b"old-name\n",
       "fragment": b"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOLD" + b"OLD" * 14 + b"\n"}


def is_temp(entry: str, target: str) -> bool:
    """A writer's temp file for ``target``: ``.<target>.<24 hex digits>``."""
    return re.fullmatch(r"\." + re.escape(target) + r"\.[0-9a-f]{24}", entry) is not None


def temp_like(target: pathlib.Path) -> pathlib.Path:
    return target.parent / f".{target.name}.{os.urandom(12).hex()}"


class Outputs(NamedTuple):
    """Where one run writes, and the command-line flags that say so."""

    paths: Dict[str, pathlib.Path]
    args: List[str]
    user: Optional[object] = None  # pwd entry of the key fragment's owner


def make_outputs(directory: pathlib.Path, user=None) -> Outputs:
    paths = {"attributes": directory / "coreos", "hostname": directory / "hostname"}
    args = ["--attributes", str(paths["attributes"]), "--hostname", str(paths["hostname"])]
    if user is not None:
        paths["fragment"] = pathlib.Path(user.pw_dir, ".ssh/authorized_keys.d/cl-metadata")
        args += ["--ssh-keys", user.pw_name]
    return Outputs(paths, args, user)


def reset_to_old(outputs: Outputs) -> None:
    """Every output holds its OLD content (in place: ownership and mode stay)."""
    for name, path in outputs.paths.items():
        if name == "fragment":
            path.parent.mkdir(parents=True, exist_ok=True)
            for directory in (path.parent.parent, path.parent):
                os.chown(directory, outputs.user.pw_uid, outputs.user.pw_gid)
                os.chmod(directory, 0o700)
        with open(path, "wb") as f:
            f.write(OLD[name])
        if name == "fragment":
            os.chown(path, outputs.user.pw_uid, outputs.user.pw_gid)


def leftovers(outputs: Outputs) -> List[str]:
    """Every temp-shaped file next to any output."""
    found = []
    for name, path in outputs.paths.items():
        for entry in os.listdir(path.parent):
            if is_temp(entry, path.name):
                found.append(str(path.parent / entry))
    return sorted(found)


def contents(outputs: Outputs) -> Dict[str, Optional[bytes]]:
    return {name: path.read_bytes() if path.exists() else None
            for name, path in outputs.paths.items()}


def _group_alive(pgid: int) -> bool:
    """True while a process of ``pgid`` other than a zombie exists (the forked key writer
    outlives its killed parent for a moment, and nobody may reap it here)."""
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != b"Z":
            return True
    return False


def start_agent(outputs: Outputs, env) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "cl_metadata", "--provider", PROVIDER,
                             *outputs.args], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)


def kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()
    end = time.monotonic() + 10
    while _group_alive(proc.pid):
        assert time.monotonic() < end, "a process of the killed run survived SIGKILL"
        time.sleep(0.001)


class Calibration(NamedTuple):
    requests: int  # requests one run makes
    write_phase: float  # seconds from the last request seen to the process's exit
    whole_run: float
    new: Dict[str, bytes]


def calibrate(server, outputs: Outputs, env, runs: int = 3) -> Calibration:
    """Clean runs: what a run writes, how many requests it makes, how long its tail lasts."""
    tails, wholes, counts = [], [], []
    for _ in range(runs):
        reset_to_old(outputs)
        before = len(server.requests)
        started = time.monotonic()
        proc = start_agent(outputs, env)
        last_seen = started
        seen = before
        while proc.poll() is None:
            now_seen = len(server.requests)
            if now_seen != seen:
                seen, last_seen = now_seen, time.monotonic()
            time.sleep(0.0002)
        ended = time.monotonic()
        assert proc.returncode == 0, "a clean run failed"
        counts.append(len(server.requests) - before)
        tails.append(ended - last_seen)
        wholes.append(ended - started)
    new = contents(outputs)
    assert all(new[name] != OLD[name] for name in outputs.paths), "a run must change every file"
    assert len(set(counts)) == 1, f"runs made different numbers of requests: {counts}"
    return Calibration(counts[0], sorted(tails)[len(tails) // 2], sorted(wholes)[len(wholes) // 2],
                       new)


class KillStats(NamedTuple):
    kills: int
    kills_that_stranded: int  # kills right after which a temp file existed
    stranded_files: int
    torn: List[str]  # outputs found neither old nor new (must stay empty)
    left_after_clean_run: List[str]


def kill_loop(server, outputs: Outputs, env, kills: int, rng: random.Random) -> KillStats:
    """``kills`` runs SIGKILLed at random points, then one clean run."""
    cal = calibrate(server, outputs, env)
    stranded_kills = stranded_files = 0
    torn: List[str] = []
    for number in range(kills):
        reset_to_old(outputs)
        before_kill = set(leftovers(outputs))
        expected = len(server.requests) + cal.requests
        proc = start_agent(outputs, env)
        how = rng.random()
        if how < 0.2:  # anywhere in the run: start-up, fetching, writing
            time.sleep(rng.uniform(0, cal.whole_run * 1.2))
        else:  # the write phase: from the last request to a bit past the usual exit
            while len(server.requests) < expected and proc.poll() is None:
                time.sleep(0.0002)
            deadline = time.monotonic() + rng.uniform(0, cal.write_phase * 1.5)
            # half of these also strike the moment a temp name shows: the window that matters
            watch = how >= 0.6
            while time.monotonic() < deadline and proc.poll() is None:
                if watch and set(leftovers(outputs)) - before_kill:
                    break
                time.sleep(0.0001 if watch else 0.0005)
        kill_group(proc)
        for name, content in contents(outputs).items():
            if content not in (OLD[name], cal.new[name]):
                torn.append(f"kill {number}: {name} is neither old nor new")
        fresh = set(leftovers(outputs)) - before_kill
        stranded_kills += bool(fresh)
        stranded_files += len(fresh)
    reset_to_old(outputs)
    result = subprocess.run([sys.executable, "-m", "cl_metadata", "--provider", PROVIDER,
                             *outputs.args], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert contents(outputs) == cal.new
    return KillStats(kills, stranded_kills, stranded_files, torn, leftovers(outputs))


@pytest.fixture
def outputs(tmp_path, request):
    user = request.getfixturevalue("throwaway_user") if IS_ROOT else None
    directory = tmp_path / "out"
    directory.mkdir()
    return make_outputs(directory, user)


def test_sigkill_at_random_points_leaves_no_temp_file_after_the_next_run(fake_server, agent_env,
                                                                        outputs):
    server = fake_server(PROVIDER)
    agent_env["CL_METADATA_ENDPOINT"] = server.url
    stats = kill_loop(server, outputs, agent_env, KILLS, random.Random(20240610))
    print(f"\n{stats.kills} kills: {stats.kills_that_stranded} stranded "
          f"{stats.stranded_files} temp files; after one clean run: "
          f"{len(stats.left_after_clean_run)}")
    assert stats.torn == []
    assert stats.left_after_clean_run == []


def test_one_run_removes_what_a_kill_left_and_nothing_else(fake_server, agent_env, outputs,
                                                          tmp_path):
    server = fake_server(PROVIDER)
    agent_env["CL_METADATA_ENDPOINT"] = server.url
    reset_to_old(outputs)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_bytes(b"precious\n")
    stale, kept = [], {}
    for name, path in outputs.paths.items():
        temp = temp_like(path)
        temp.write_bytes(OLD[name][:5])  # a kill's leftover: a regular file, partly written
        if name == "fragment":
            os.chown(temp, outputs.user.pw_uid, outputs.user.pw_gid)  # the key writer's own
        stale.append(temp)
        dotfile = path.parent / f".{path.name}.keep"
        dotfile.write_bytes(b"unrelated\n")
        link = temp_like(path)
        link.symlink_to(elsewhere)  # the temp shape, but a symlink: not something we leave
        kept[dotfile] = link

    result = run_agent("--provider", PROVIDER, *outputs.args, env=agent_env)

    assert result.returncode == 0, result.stderr
    assert [path for path in stale if os.path.lexists(path)] == []
    for dotfile, link in kept.items():
        assert dotfile.read_bytes() == b"unrelated\n"
        assert os.readlink(link) == str(elsewhere)
    assert elsewhere.read_bytes() == b"precious\n"
    assert sorted(leftovers(outputs)) == sorted(str(link) for link in kept.values())
    assert all(contents(outputs)[name] != OLD[name] for name in outputs.paths)
