"""What one boot left behind (driver outcome, the guest's report, the fake server's request log,
the serial console) and the named checks a scenario runs on it."""

from __future__ import annotations

import json
import re
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

ERR = 3  # syslog priority "err"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def _json_lines(path: Path) -> List[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(errors="replace").splitlines() if line.strip()]


def _unit_blocks(text: str) -> Dict[str, Dict[str, str]]:
    """``systemctl show`` output for several units: blank-line separated KEY=VALUE blocks."""
    units = {}
    for block in text.split("\n\n"):
        props = dict(line.partition("=")[::2] for line in block.splitlines() if "=" in line)
        if props.get("Id"):
            units[props["Id"]] = props
    return units


def _journal_entries(text: str) -> List[dict]:
    entries = []
    for line in text.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry.get("MESSAGE"), list):  # not UTF-8: journald exports the bytes
            entry["MESSAGE"] = bytes(entry["MESSAGE"]).decode("utf-8", "replace")
        entries.append(entry)
    return entries


def _json_or_empty(text: Optional[str]) -> list:
    try:
        found = json.loads(text or "[]")
    except ValueError:
        return []
    return found if isinstance(found, list) else []


def read_results(disk: Path) -> Optional[dict]:
    """The guest's tar archive on the results disk: files as they were (lstat facts and the
    contents of small files) plus the command outputs under out/; None if it never wrote."""
    files: Dict[str, Dict[str, Any]] = {}
    out: Dict[str, str] = {}
    try:
        with tarfile.open(disk) as tar:
            for member in tar.getmembers():
                name = member.name.lstrip("./")
                data = tar.extractfile(member) if member.isfile() else None
                content = data.read() if data is not None else None
                if name.startswith("out/"):
                    out[name[4:]] = (content or b"").decode("utf-8", "replace")
                    continue
                item: Dict[str, Any] = {"mode": member.mode & 0o7777, "uid": member.uid,
                                        "gid": member.gid}
                if member.issym():
                    item.update(type="link", target=member.linkname)
                elif member.isdir():
                    item["type"] = "dir"
                elif member.isfile():
                    item.update(type="file", size=member.size,
                                content=content.decode("utf-8", "replace"))
                else:
                    item["type"] = "other"
                files["/" + name.rstrip("/")] = item
    except (tarfile.TarError, OSError):
        return None
    if "units" not in out:
        return None
    return {
        "cmdline": out.get("cmdline", "").split(),
        "uptime": float(out.get("uptime") or 0),
        "login_marker": out.get("login-done", "").strip() == "yes",
        "units": _unit_blocks(out["units"]),
        "manager": _unit_blocks("Id=manager\n" + out.get("manager", "")).get("manager", {}),
        "files": files,
        "mounts": out.get("mounts", ""),
        "failed": out.get("failed", ""),
        "version": out.get("version", "").strip(),
        "dmesg": out.get("dmesg", ""),
        "network": {"addr": _json_or_empty(out.get("ip-addr.json")),
                    "route": _json_or_empty(out.get("ip-route.json"))},
        "journal": _journal_entries(out.get("journal.jsonl", "")),
    }


def journal_line(entry: dict) -> str:
    """Like ``journalctl -o short-monotonic``, from the exported fields."""
    seconds = int(entry.get("__MONOTONIC_TIMESTAMP", 0)) / 1e6
    who = entry.get("SYSLOG_IDENTIFIER") or entry.get("_COMM") or "?"
    pid = f"[{entry['_PID']}]" if entry.get("_PID") else ""
    return f"[{seconds:12.6f}] {who}{pid}: {entry.get('MESSAGE', '')}"


@dataclass
class BootResult:
    run_dir: Path
    outcome: dict
    report: Optional[dict]
    journal: List[dict]
    journal_text: str
    requests: List[dict]
    serial: str
    run_keys: Dict[str, str] = field(default_factory=dict)  # the login key pair of the run

    @classmethod
    def load(cls, run_dir: Path) -> "BootResult":
        if (run_dir / "boot.json").exists():
            outcome = json.loads((run_dir / "boot.json").read_text())
        else:
            driver_log = run_dir / "driver.log"
            tail = driver_log.read_text(errors="replace")[-800:] if driver_log.exists() else ""
            outcome = {"error": f"the boot driver wrote no boot.json; its output: {tail or '-'}"}
        report = read_results(run_dir / "results.img")
        serial = ""
        if (run_dir / "serial.log").exists():
            serial = ANSI.sub("", (run_dir / "serial.log").read_bytes().decode("utf-8", "replace"))
            serial = serial.replace("\r", "")
        journal = report.pop("journal", []) if report else []
        journal_text = "".join(journal_line(entry) + "\n" for entry in journal)
        if report is not None:  # kept next to the other artefacts, for people
            (run_dir / "guest-journal.txt").write_text(journal_text)
            (run_dir / "guest-report.json").write_text(json.dumps(report, indent=1, sort_keys=True))
        return cls(run_dir, outcome, report, journal, journal_text,
                   _json_lines(run_dir / "requests.jsonl"), serial)

    # --- the guest's view -----------------------------------------------------------------

    @property
    def completed(self) -> bool:
        return self.outcome.get("rc") == 0 and self.report is not None

    def unit(self, name: str) -> Dict[str, str]:
        return (self.report or {}).get("units", {}).get(name, {})

    def file(self, path: str) -> Optional[Dict[str, Any]]:
        return (self.report or {}).get("files", {}).get(path)

    def files_under(self, top: str) -> Dict[str, Dict[str, Any]]:
        return {path: item for path, item in (self.report or {}).get("files", {}).items()
                if path == top or path.startswith(top.rstrip("/") + "/")}

    def entries(self, unit: Optional[str] = None, max_priority: int = 7) -> List[dict]:
        """The journal entries a unit's processes logged, at most this priority.

        journald names the unit from the sender's cgroup, which it cannot read once a fast
        process has exited: such an entry has no _SYSTEMD_UNIT and counts for the unit whose
        main process had its _PID.
        """
        main_pid = self.unit(unit).get("ExecMainPID", "0") if unit else "0"

        def from_unit(entry: dict) -> bool:
            if unit is None or entry.get("_SYSTEMD_UNIT") == unit:
                return True
            return ("_SYSTEMD_UNIT" not in entry and main_pid != "0"
                    and entry.get("_PID") == main_pid)

        return [e for e in self.journal
                if from_unit(e) and int(e.get("PRIORITY", 6)) <= max_priority]

    def messages(self, unit: Optional[str] = None, max_priority: int = 7) -> List[str]:
        """MESSAGE of ``entries(unit, max_priority)``."""
        return [str(e.get("MESSAGE", "")) for e in self.entries(unit, max_priority)]

    def activation(self, unit: str) -> Optional[float]:
        """Seconds the unit's main process ran (or inactive → active), from systemd's timestamps."""
        props = self.unit(unit)
        for start, end in (("ExecMainStartTimestampMonotonic", "ExecMainExitTimestampMonotonic"),
                           ("InactiveExitTimestampMonotonic", "ActiveEnterTimestampMonotonic")):
            begin, finish = int(props.get(start) or 0), int(props.get(end) or 0)
            if begin and finish >= begin:
                return (finish - begin) / 1e6
        return None

    def uptime_at(self, unit: str, prop: str = "ActiveEnterTimestampMonotonic") -> Optional[float]:
        value = int(self.unit(unit).get(prop) or 0)
        return value / 1e6 if value else None

    def serial_tail(self, lines: int = 15) -> str:
        return "\n".join(self.serial.strip().splitlines()[-lines:])


@dataclass
class Checks:
    """Named checks of one boot: every one runs, all failures are reported together."""

    results: List[Tuple[str, bool, str]] = field(default_factory=list)

    def check(self, name: str, ok: bool, detail: str = "") -> bool:
        self.results.append((name, bool(ok), "" if ok else detail))
        return bool(ok)

    def equal(self, name: str, actual: Any, expected: Any) -> bool:
        return self.check(name, actual == expected, f"got {actual!r}, expected {expected!r}")

    def contains(self, name: str, haystack: Any, needle: Any) -> bool:
        return self.check(name, needle in haystack, f"{needle!r} not in {haystack!r}")

    @property
    def failures(self) -> List[str]:
        return [f"{name}: {detail}" for name, ok, detail in self.results if not ok]

    @property
    def passed(self) -> bool:
        return bool(self.results) and not self.failures
