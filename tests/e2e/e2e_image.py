"""The guest image, in two cached layers (tests/e2e/README.md "How it works").

base-KEY/   debootstrapped bookworm tree, small initramfs, pruned modules, kernel + initrd
            copied out. KEY = everything that goes into it (recipe, packages, archive URL,
            modules, config files). Built once (~2 min), never touched again.
deb-KEY/    the project's .deb built by packaging/build-deb; KEY = the files it is built from.
image-KEY/  rootfs.img (ext4 made straight from a copy of the base tree with the .deb and the
            test-only guest files installed), kernel, initrd, manifest.json. KEY = base key +
            .deb hash + guest files. Rebuilt (~10 s) only when one of those changes.

Every layer is built in a ``.building`` directory under a lock and renamed into place, so a
killed build never leaves a half layer behind and concurrent runs share the result.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Tuple

from e2e_host import E2E, REPO, SUITE, archive_url, chroot, run, tool, work_dir

BASE_RECIPE = "3"  # bump when the way the base layer is built changes
IMAGE_RECIPE = "4"  # bump when the way the top layer is built changes
BASE_PACKAGES = [
    "systemd", "systemd-sysv", "udev", "kmod", "iproute2", "python3", "python3-requests",
    "python3-yaml", "python3-systemd", "openssh-server", "linux-image-amd64", "initramfs-tools",
]
INITRAMFS_MODULES = ["virtio_pci", "virtio_blk", "ext4", "crc32c_generic"]
# Everything the guest may load; the rest of /lib/modules is deleted (395 MB → a few MB).
KEEP_MODULES = [
    "virtio_pci", "virtio_mmio", "virtio_blk", "virtio_net", "virtio_scsi", "virtio_rng",
    "virtio_console", "ext4", "crc32c_generic", "vfat", "nls_utf8", "nls_cp437", "nls_ascii",
    "nls_iso8859-1", "isofs", "sr_mod", "cdrom", "ahci", "ata_piix", "ata_generic", "sd_mod",
    "loop", "autofs4", "af_packet",
    "qemu_fw_cfg",  # /sys/firmware/qemu_fw_cfg: the qemu provider's -fw_cfg entry
]
# Base layer: what the debootstrap and initramfs steps need.
BASE_FILES: Dict[str, str] = {
    "etc/initramfs-tools/conf.d/clmtest.conf": "MODULES=list\nCOMPRESS=gzip\n",
    "etc/initramfs-tools/modules": "".join(m + "\n" for m in INITRAMFS_MODULES),
    "etc/dpkg/dpkg.cfg.d/clmtest-nodoc":
        "path-exclude=/usr/share/doc/*\npath-exclude=/usr/share/man/*\n"
        "path-exclude=/usr/share/locale/*\npath-exclude=/usr/share/info/*\n",
}
# Top layer: the test machine's configuration (cheap to change).
IMAGE_FILES: Dict[str, str] = {
    "etc/hostname": "clmtest\n",
    "etc/hosts": "127.0.0.1 localhost\n127.0.1.1 clmtest\n",
    "etc/fstab": "/dev/vda / ext4 rw,noatime 0 1\n",
    # a fixed id: no first-boot semantics, reproducible journal
    "etc/machine-id": "c1e2e7e5700000000000000000000005\n",
    "etc/systemd/network/50-eth.network":
        "[Match]\nName=eth* en*\n\n[Network]\nDHCP=ipv4\nLinkLocalAddressing=no\nIPv6AcceptRA=no\n",
    "etc/systemd/journald.conf.d/volatile.conf": "[Journal]\nStorage=volatile\n",
}
ENABLED_UNITS = ["systemd-networkd.service", "systemd-networkd-wait-online.service",
                 "clmtest-setup.service", "clmtest-report.service"]
MASKED_GENERATORS = [  # nothing to generate on this machine; each costs a process under TCG
    "systemd-cryptsetup-generator", "systemd-getty-generator", "systemd-gpt-auto-generator",
    "systemd-hibernate-resume-generator", "systemd-integritysetup-generator",
    "systemd-veritysetup-generator", "systemd-rc-local-generator", "systemd-sysv-generator",
]
MASKED_UNITS = [  # timers, gettys and what the pruned kernel cannot do anyway
    "apt-daily.timer", "apt-daily-upgrade.timer", "e2scrub_all.timer", "e2scrub_reap.service",
    "fstrim.timer", "dpkg-db-backup.timer", "getty@tty1.service", "serial-getty@ttyS0.service",
    "getty-static.service", "systemd-pstore.service", "systemd-tmpfiles-clean.timer",
    "systemd-binfmt.service", "proc-sys-fs-binfmt_misc.automount",
    "modprobe@dm_mod.service", "modprobe@fuse.service", "modprobe@loop.service",
    "modprobe@drm.service", "modprobe@efi_pstore.service", "modprobe@configfs.service",
    "sys-kernel-debug.mount", "sys-kernel-tracing.mount", "dev-hugepages.mount",
    "systemd-update-utmp.service", "systemd-update-utmp-runlevel.service",
    "systemd-journal-flush.service",
]
# No udev in the initramfs: the listed modules are loaded by name, devtmpfs makes /dev/vda, and
# the boot saves a udev start, trigger and settle (seconds under TCG). udev runs after switch-root.
INITRAMFS_DROPPED = ["usr/share/initramfs-tools/hooks/udev",
                     "usr/share/initramfs-tools/scripts/init-top/udev",
                     "usr/share/initramfs-tools/scripts/init-bottom/udev"]
PRUNED_DIRS = ["usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/locale",
               "var/cache/apt", "var/lib/apt/lists"]  # emptied in the base tree
PROVIDER_PROBE = """
import importlib, json
from cl_metadata import registry
loadable = []
for pid, target in registry.BUILTIN.items():
    module, _, name = target.partition(":")
    try:
        getattr(importlib.import_module(module), name)
        loadable.append(pid)
    except Exception:
        pass
print(json.dumps(sorted(loadable)))
"""
KEEP_LAYERS = 3  # image-*/deb-* directories kept besides the current one

Log = Callable[[str], None]


@contextlib.contextmanager
def in_use(image: "Image") -> Iterator[None]:
    """Keep ``image`` from being pruned by a concurrent run while its guests boot."""
    with open(f"{image.dir}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_SH)
        yield


@dataclass(frozen=True)
class Image:
    dir: Path
    rootfs: Path
    kernel: Path
    initrd: Path
    manifest: dict

    @property
    def provider_ids(self) -> List[str]:
        return list(self.manifest.get("providers", []))


def _digest(value: object) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:16]


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@contextlib.contextmanager
def _layer(path: Path) -> Iterator[Tuple[bool, Path]]:
    """(already built?, staging dir). Holds a lock; renames staging → path on success."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{path}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (path / "COMPLETE").exists():
            yield True, path
            return
        staging = Path(f"{path}.building")
        if staging.exists():
            run(["rm", "-rf", "--one-file-system", str(staging)])
        staging.mkdir()
        yield False, staging
        (staging / "COMPLETE").write_text(time.strftime("%Y-%m-%dT%H:%M:%S\n"))
        if path.exists():
            run(["rm", "-rf", "--one-file-system", str(path)])
        staging.rename(path)


def _prune(kind: str, keep: Path, count: int = KEEP_LAYERS) -> None:
    """Delete old layers of one kind, the newest ``count`` kept; a layer whose lock is held
    (being built, or an image a run is booting) is never deleted."""
    layers = sorted((p for p in keep.parent.glob(f"{kind}-*")
                     if p.is_dir() and p != keep and not p.name.endswith(".building")),
                    key=lambda p: p.stat().st_mtime, reverse=True)
    for old in layers[count:]:
        lock = Path(f"{old}.lock")
        with open(lock, "w") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                continue
            run(["rm", "-rf", "--one-file-system", str(old)])
        lock.unlink(missing_ok=True)


# --- base layer -------------------------------------------------------------------------------

def base_key(mirror: str) -> str:
    return _digest([BASE_RECIPE, SUITE, mirror, BASE_PACKAGES, INITRAMFS_MODULES, KEEP_MODULES,
                    BASE_FILES, INITRAMFS_DROPPED, PRUNED_DIRS, os.uname().machine])


def _module_closure(tree: Path, kver: str, log: Log) -> List[str]:
    keep = set()
    for module in KEEP_MODULES:
        result = chroot(tree, "modprobe", "-S", kver, "--show-depends", module, check=False)
        if result.returncode != 0:
            log(f"  module {module}: not available ({result.stderr.strip()})")
        for line in result.stdout.splitlines():
            words = line.split()
            if words[:1] == ["insmod"]:
                keep.add(words[1])
    return sorted(keep)


def build_base(log: Log = print) -> Path:
    mirror = archive_url(SUITE)
    path = work_dir() / f"base-{base_key(mirror)}"
    with _layer(path) as (done, staging):
        if not done:
            started = time.monotonic()
            kept = _bootstrap(staging, mirror, log)
            log(f"base layer: built in {time.monotonic() - started:.0f} s "
                f"({kept} kernel modules kept)")
    _prune("base", path, count=1)
    return path


def _bootstrap(staging: Path, mirror: str, log: Log) -> int:
    """debootstrap into staging/tree, small initramfs, pruned modules, kernel copied out."""
    tree = staging / "tree"
    log(f"base layer: debootstrap {SUITE} from {mirror} (takes a minute or two)")
    run([tool("debootstrap"), "--variant=minbase", "--include=" + ",".join(BASE_PACKAGES),
         SUITE, str(tree), mirror], timeout=3600)
    for relpath, content in BASE_FILES.items():
        target = tree / relpath
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
    kvers = sorted(p.name for p in (tree / "lib/modules").iterdir())
    if len(kvers) != 1:
        raise RuntimeError(f"expected one kernel in the base tree, found {kvers}")
    kver = kvers[0]
    for relpath in INITRAMFS_DROPPED:
        (tree / relpath).unlink()
    chroot(tree, "update-initramfs", "-u", "-k", kver)
    keep = set(_module_closure(tree, kver, log))
    for ko in (tree / "lib/modules" / kver).rglob("*.ko*"):
        if "/" + str(ko.relative_to(tree)) not in keep:
            ko.unlink()
    chroot(tree, "depmod", kver)
    shutil.copy2(tree / "boot" / f"vmlinuz-{kver}", staging / "vmlinuz")
    shutil.copy2(tree / "boot" / f"initrd.img-{kver}", staging / "initrd.img")
    (staging / "kver").write_text(kver + "\n")
    for entry in (tree / "boot").iterdir():
        if entry.is_file() or entry.is_symlink():
            entry.unlink()
    chroot(tree, "apt-get", "clean")
    for relpath in PRUNED_DIRS:
        target = tree / relpath
        if target.is_dir():
            for child in target.iterdir():
                if child.name == "partial":
                    continue
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()
    return len(keep)


# --- the .deb ---------------------------------------------------------------------------------

def _source_files() -> List[str]:
    """What packaging/build-deb copies (tracked and new, not ignored), minus tests/."""
    listed = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others",
                             "--exclude-standard"], capture_output=True)
    if listed.returncode == 0:
        names = [n for n in listed.stdout.decode().split("\0") if n]
    else:
        names = [str(p.relative_to(REPO)) for p in REPO.rglob("*")
                 if p.is_file() and not {".git", ".venv", "__pycache__"} & set(p.parts)]
    return sorted(n for n in names if not n.startswith("tests/")
                  and (os.path.lexists(REPO / n)))


def source_key() -> str:
    h = hashlib.sha256()
    for name in _source_files():
        path = REPO / name
        h.update(name.encode() + b"\0")
        if path.is_symlink():
            h.update(b"L" + os.readlink(path).encode())
        else:
            h.update(b"%o" % (path.stat().st_mode & 0o111) + file_digest(path).encode())
    return h.hexdigest()[:16]


def build_deb(log: Log = print) -> Path:
    path = work_dir() / f"deb-{source_key()}"
    with _layer(path) as (done, staging):
        if not done:
            started = time.monotonic()
            log("deb: packaging/build-deb (the working tree changed)")
            run([str(REPO / "packaging/build-deb"), str(staging)], timeout=900,
                env=dict(os.environ))
            log(f"deb: built in {time.monotonic() - started:.0f} s")
    _prune("deb", path)
    debs = sorted(path.glob("cl-metadata_*.deb"))
    if len(debs) != 1:
        raise RuntimeError(f"{path}: expected one cl-metadata .deb, found {[d.name for d in debs]}")
    return debs[0]


# --- the image --------------------------------------------------------------------------------

GuestFiles = Dict[str, Tuple[bytes, int]]  # path in the guest → (content, mode)


def guest_files_from_dir() -> GuestFiles:
    """tests/e2e/guest/ID/... → /ID/... in the guest (ID = root of the guest filesystem)."""
    files: GuestFiles = {}
    root = E2E / "guest" / "rootfs"
    for path in sorted(root.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            files["/" + str(path.relative_to(root))] = (path.read_bytes(),
                                                        0o755 if os.access(path, os.X_OK) else 0o644)
    return files


def _install_guest_files(tree: Path, files: GuestFiles) -> None:
    for guest_path, (content, mode) in sorted(files.items()):
        target = tree / guest_path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
        os.chmod(target, mode)


def build_image(guest_files: GuestFiles, log: Log = print) -> Image:
    base = build_base(log)
    deb = build_deb(log)
    files_key = _digest({p: [hashlib.sha256(c).hexdigest(), m] for p, (c, m) in guest_files.items()})
    key = _digest([IMAGE_RECIPE, base.name, file_digest(deb), files_key, IMAGE_FILES,
                   ENABLED_UNITS, MASKED_UNITS, MASKED_GENERATORS])
    path = work_dir() / f"image-{key}"
    with _layer(path) as (done, staging):
        if not done:
            started = time.monotonic()
            log(f"image: {deb.name} + test files on {base.name}")
            tree = staging / "tree"
            run(["cp", "-a", "--reflink=auto", str(base / "tree"), str(tree)])
            shutil.copy2(deb, tree / "tmp" / deb.name)
            # dpkg -i as an image distributor would: the maintainer scripts enable the units
            # by the package's own rules (deb-systemd-helper, presets, tmpfiles).
            chroot(tree, "dpkg", "-i", f"/tmp/{deb.name}")
            (tree / "tmp" / deb.name).unlink()
            _install_guest_files(tree, {"/" + p: (c.encode(), 0o644) for p, c in IMAGE_FILES.items()})
            _install_guest_files(tree, guest_files)
            chroot(tree, "useradd", "--create-home", "--user-group", "--shell", "/bin/bash", "core")
            chroot(tree, "systemctl", "enable", *ENABLED_UNITS)
            chroot(tree, "systemctl", "mask", *MASKED_UNITS)
            generators = tree / "etc/systemd/system-generators"
            generators.mkdir(parents=True, exist_ok=True)
            for name in MASKED_GENERATORS:
                (generators / name).symlink_to("/dev/null")
            version = chroot(tree, "cl-metadata", "--version", check=False)
            providers = chroot(tree, "cl-metadata", "providers", check=False)
            manifest = {
                "base": base.name, "deb": deb.name, "deb_sha256": file_digest(deb),
                "kver": (base / "kver").read_text().strip(),
                "version": version.stdout.strip(),
                "providers": [line.split()[0] for line in providers.stdout.splitlines()
                              if line.strip()],
                "providers_error": "",
            }
            if providers.returncode != 0:
                # While providers are being added, one missing module breaks the listing; the
                # ids whose own module loads still work (the agent loads only the one it needs).
                manifest["providers_error"] = (providers.stderr.strip().splitlines() or ["?"])[-1]
                probe = chroot(tree, "python3", "-c", PROVIDER_PROBE, check=False)
                if probe.returncode == 0:
                    manifest["providers"] = json.loads(probe.stdout)
            used_mb = int(run(["du", "-sm", "--apparent-size", str(tree)]).stdout.split()[0])
            size_mb = int(used_mb * 1.3) + 128
            run([tool("mkfs.ext4"), "-q", "-F", "-L", "clmtest-root", "-E", "root_owner=0:0",
                 "-d", str(tree), str(staging / "rootfs.img"), f"{size_mb}M"])
            run(["rm", "-rf", "--one-file-system", str(tree)])
            for name in ("vmlinuz", "initrd.img"):
                os.link(base / name, staging / name)
            (staging / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
            log(f"image: built in {time.monotonic() - started:.0f} s ({size_mb} MiB rootfs)")
    _prune("image", path)
    manifest = json.loads((path / "manifest.json").read_text())
    return Image(path, path / "rootfs.img", path / "vmlinuz", path / "initrd.img", manifest)
