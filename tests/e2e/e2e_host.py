"""Host side of the QEMU end-to-end tests: where things live, what the host can do.

Everything the tests build or write lives outside the repository, under
``$CL_METADATA_E2E_DIR`` (default ``$CL_METADATA_TEST_CACHE/e2e``, i.e.
``/var/cache/cl-metadata-test/e2e``, next to the packaging test's cached Debian root).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Dict, List, Optional

REPO = Path(__file__).resolve().parents[2]
E2E = Path(__file__).resolve().parent
SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
SUITE = "bookworm"  # the guest's Debian release (issue 5)
QEMU = "qemu-system-x86_64"
ACCEL_ENV = "CL_METADATA_E2E_ACCEL"  # auto (default) | kvm | tcg
JOBS_ENV = "CL_METADATA_E2E_JOBS"  # boots run at the same time (default: one per CPU)


def work_dir() -> Path:
    explicit = os.environ.get("CL_METADATA_E2E_DIR")
    if explicit:
        return Path(explicit)
    return Path(os.environ.get("CL_METADATA_TEST_CACHE", "/var/cache/cl-metadata-test")) / "e2e"


def why_qemu_cannot_run() -> Optional[str]:
    """The reason these tests must be skipped, or None: only when QEMU cannot run at all."""
    if os.geteuid() != 0:
        return "needs root (debootstrap, chroot, network namespaces)"
    for tool in (QEMU, "unshare"):
        if shutil.which(tool, path=os.environ.get("PATH", "") + ":" + SYSTEM_PATH) is None:
            return f"{tool} is not installed (tests/setup-system-deps installs it)"
    probe = subprocess.run(["unshare", "--net", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"cannot create a network namespace: {probe.stderr.strip()}"
    return None


def tool(name: str) -> str:
    found = shutil.which(name, path=os.environ.get("PATH", "") + ":" + SYSTEM_PATH)
    if found is None:
        raise RuntimeError(f"{name} not found (tests/setup-system-deps installs it)")
    return found


def choose_accel(requested: Optional[str] = None, *, modules: Path = Path("/sys/module"),
                 kvm_device: str = "/dev/kvm") -> str:
    """``kvm`` only when a normal KVM is usable (tests/e2e/README.md: /dev/kvm writable, kvm_intel or
    kvm_amd loaded, not the paravirtual kvm_pvm that cannot run a stock kernel), else ``tcg``.
    ``requested`` (or $CL_METADATA_E2E_ACCEL) ``kvm``/``tcg`` overrides."""
    choice = (requested or os.environ.get(ACCEL_ENV) or "auto").lower()
    if choice not in ("auto", "kvm", "tcg"):
        raise ValueError(f"{ACCEL_ENV} must be auto, kvm or tcg, not {choice!r}")
    if choice != "auto":
        return choice
    normal_kvm = ((modules / "kvm_intel").exists() or (modules / "kvm_amd").exists()) \
        and not (modules / "kvm_pvm").exists()
    return "kvm" if normal_kvm and os.access(kvm_device, os.R_OK | os.W_OK) else "tcg"


def jobs() -> int:
    raw = os.environ.get(JOBS_ENV)
    return max(1, int(raw)) if raw else max(2, os.cpu_count() or 1)


def archive_url(suite: str = SUITE, apt: Path = Path("/etc/apt")) -> str:
    """The Debian archive the host's apt uses for ``suite`` (deb822 ``.sources`` first)."""
    for path in sorted((apt / "sources.list.d").glob("*.sources")):
        for stanza in re.split(r"\n\s*\n", path.read_text()):
            fields: Dict[str, str] = {}
            for line in stanza.splitlines():
                if ":" in line and not line.lstrip().startswith("#"):
                    key, _, value = line.partition(":")
                    fields[key.strip().lower()] = value.strip()
            if ("deb" in fields.get("types", "").split() and fields.get("enabled", "yes") != "no"
                    and suite in fields.get("suites", "").split() and fields.get("uris")):
                return fields["uris"].split()[0]
    lists: List[Path] = [apt / "sources.list", *sorted((apt / "sources.list.d").glob("*.list"))]
    for path in lists:
        if path.exists():
            for line in path.read_text().splitlines():
                words = re.sub(r"\[[^]]*\]", "", line.split("#", 1)[0]).split()
                if len(words) >= 3 and words[0] == "deb" and words[2] == suite:
                    return words[1]
    raise RuntimeError(f"no Debian archive for {suite} in the host's apt sources")


def run(cmd: List[str], *, timeout: float = 600, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    """Run a command with output captured; on failure raise with the tail of its output."""
    kwargs.setdefault("env", {"PATH": SYSTEM_PATH, "LANG": "C.UTF-8", "HOME": "/root",
                              "DEBIAN_FRONTEND": "noninteractive"})
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kwargs)
    if check and result.returncode != 0:
        tail = (result.stdout[-2000:] + "\n" + result.stderr[-2000:]).strip()
        raise RuntimeError(f"{' '.join(cmd[:4])}… exited {result.returncode}:\n{tail}")
    return result


def chroot(root: Path, *cmd: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess:
    return run(["chroot", str(root), *cmd], timeout=timeout, check=check)
