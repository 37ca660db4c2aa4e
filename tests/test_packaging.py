"""Packages: the .deb (built, inspected, installed into a clean Debian root), the RPM spec, the sdist.

Tools missing → the test is skipped with the reason (tests/setup-system-deps installs them).
The clean root is debootstrapped once from the host's configured Debian archive into a cache
outside the repository ($CL_METADATA_TEST_CACHE, default /var/cache/cl-metadata-test) and used
through an overlay (or a copy) per run, so the cached tree never changes.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Dict, Iterator, List, Optional

import pytest

import cl_metadata

REPO = Path(__file__).resolve().parents[1]
UNITS = REPO / "units"
VERSION = cl_metadata.__version__
UNIT_FILES = ["cl-metadata.service", "cl-metadata-sshkeys@.service", "cl-metadata-sshkeys.target",
              "cl-metadata-sshkeys.service", "cl-metadata-checkin.service",
              "cl-metadata-firstboot-checkin.service", "afterburn.service"]
ALIASES = {"coreos-metadata.service": "cl-metadata.service",
           "coreos-metadata-sshkeys@.service": "cl-metadata-sshkeys@.service",
           "afterburn-sshkeys@.service": "cl-metadata-sshkeys@.service",
           "afterburn-sshkeys.target": "cl-metadata-sshkeys.target",
           "afterburn-checkin.service": "cl-metadata-checkin.service",
           "afterburn-firstboot-checkin.service": "cl-metadata-firstboot-checkin.service"}
DEB_UNIT_DIR = "/lib/systemd/system"  # bookworm's debhelper only handles units there
# every file in units/ → where the .deb puts it
DEB_PLACES = dict(
    {f"units/{name}": f"{DEB_UNIT_DIR}/{name}" for name in UNIT_FILES},
    **{"units/tmpfiles.d/cl-metadata.conf": "/usr/lib/tmpfiles.d/cl-metadata.conf",
       "units/sshd_config.d/90-cl-metadata.conf": "/etc/ssh/sshd_config.d/90-cl-metadata.conf",
       "units/preset/90-cl-metadata.preset": "/lib/systemd/system-preset/90-cl-metadata.preset"})
SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
ROOTFS_INCLUDE = ["python3", "openssh-server"]  # openssh-server: sshd -T reads our drop-in
ROOTFS_PREFETCH = ["python3-requests", "python3-yaml"]  # downloaded into the cache, not installed
ROOTFS_RECIPE = "1"  # bump when the way the cached root is built changes


def run(cmd: List[str], **kwargs) -> subprocess.CompletedProcess:
    kwargs.setdefault("timeout", 600)
    kwargs.setdefault("text", True)
    return subprocess.run(cmd, capture_output=True, **kwargs)


def test_unit_files_listed_here_are_all_of_units():
    on_disk = {str(p.relative_to(REPO)) for p in UNITS.rglob("*") if p.is_file()}
    assert on_disk == set(DEB_PLACES)


# --- the .deb -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def deb(tmp_path_factory) -> Path:
    if shutil.which("dpkg-buildpackage") is None or shutil.which("dpkg-checkbuilddeps") is None:
        pytest.skip("dpkg-dev is not installed (tests/setup-system-deps installs it)")
    unmet = run(["dpkg-checkbuilddeps", str(REPO / "packaging/debian/control")],
                env=dict(os.environ, PATH=SYSTEM_PATH))
    if unmet.returncode != 0:
        pytest.skip(f"Debian build dependencies missing: {unmet.stderr.strip()}")
    outdir = tmp_path_factory.mktemp("deb")
    result = run([str(REPO / "packaging/build-deb"), str(outdir)])
    assert result.returncode == 0, result.stderr
    debs = sorted(outdir.glob("*.deb"))
    assert [d.name for d in debs] == [f"cl-metadata_{VERSION}-1_all.deb"]
    assert result.stdout.strip() == str(debs[0])
    return debs[0]


def deb_members(deb: Path) -> Dict[str, str]:
    """Path → "" for files/dirs, or the link target for symlinks."""
    listing = run(["dpkg-deb", "--fsys-tarfile", str(deb)], text=False, timeout=60).stdout
    members = {}
    with tarfile.open(fileobj=io.BytesIO(listing)) as tar:
        for member in tar.getmembers():
            members[member.name.lstrip(".")] = member.linkname if member.issym() else ""
    return members


def test_deb_contains_module_binary_units_tmpfiles_and_sshd_drop_in(deb, tmp_path):
    members = deb_members(deb)
    site = "/usr/lib/python3/dist-packages/cl_metadata"
    for path in (f"{site}/__init__.py", f"{site}/cli.py", f"{site}/journal.py", f"{site}/log.py",
                 f"{site}/providers/__init__.py", "/usr/bin/cl-metadata",
                 f"{site}/imageimport/cli.py", "/usr/bin/cl-metadata-import-image",
                 *DEB_PLACES.values()):
        assert members.get(path) == "", f"{path} missing from {deb.name}"
    for alias, target in ALIASES.items():
        assert members[f"{DEB_UNIT_DIR}/{alias}"] == target
    # every unit's Documentation= names this file, so it stays uncompressed
    assert members.get("/usr/share/doc/cl-metadata/README.md") == ""
    # shipped bytes are the repository's
    run(["dpkg-deb", "-x", str(deb), str(tmp_path)]).check_returncode()
    for source, place in DEB_PLACES.items():
        assert (tmp_path / place.lstrip("/")).read_bytes() == (REPO / source).read_bytes()
    assert (tmp_path / "usr/bin/cl-metadata").read_text().startswith("#!/usr/bin/python3")


def test_deb_metadata(deb):
    fields = {name: run(["dpkg-deb", "-f", str(deb), name]).stdout.strip()
              for name in ("Package", "Version", "Architecture", "Depends", "Recommends")}
    assert fields["Package"] == "cl-metadata" and fields["Version"] == f"{VERSION}-1"
    assert fields["Architecture"] == "all"
    depends = {d.strip().split()[0] for d in fields["Depends"].split(",")}
    assert {"python3-requests", "python3-yaml"} <= depends
    assert fields["Recommends"] == "python3-systemd"


def test_deb_maintainer_scripts_never_start_stop_or_restart_units(deb, tmp_path):
    run(["dpkg-deb", "-e", str(deb), str(tmp_path)]).check_returncode()
    scripts = {p.name: p.read_text() for p in tmp_path.iterdir()
               if p.name in ("preinst", "postinst", "prerm", "postrm")}
    assert "preinst" not in scripts  # nothing stopped before an upgrade
    for name, text in scripts.items():
        assert "deb-systemd-invoke" not in text, f"{name} starts/stops/restarts units"
    assert (tmp_path / "conffiles").read_text().split() == [
        "/etc/ssh/sshd_config.d/90-cl-metadata.conf"]
    postinst = scripts["postinst"]
    for unit in ("cl-metadata-sshkeys.target", "cl-metadata-sshkeys.service",
                 "cl-metadata-checkin.service", "cl-metadata-firstboot-checkin.service"):
        assert f"deb-systemd-helper enable '{unit}'" in postinst
    # the attributes unit is only re-enabled where an administrator had enabled it;
    # afterburn.service has no [Install] section: nothing to enable
    assert "deb-systemd-helper --quiet was-enabled 'cl-metadata.service'" in postinst
    assert "afterburn.service" not in postinst
    assert "systemd-tmpfiles ${DPKG_ROOT:+--root=\"$DPKG_ROOT\"} --create cl-metadata.conf" in postinst


# --- a clean Debian root ------------------------------------------------------------------------

def host_codename() -> str:
    fields = dict(line.split("=", 1) for line in Path("/etc/os-release").read_text().splitlines()
                  if "=" in line)
    if fields.get("ID") != "debian" or not fields.get("VERSION_CODENAME"):
        pytest.skip("the host is not Debian: no archive configuration to bootstrap from")
    return fields["VERSION_CODENAME"].strip('"')


def debian_archive_url(suite: str) -> Optional[str]:
    """The archive URI the host's apt uses for ``suite`` (one reader, shared with tests/e2e)."""
    from e2e.e2e_host import archive_url

    try:
        return archive_url(suite)
    except RuntimeError:
        return None


def cache_dir() -> Path:
    return Path(os.environ.get("CL_METADATA_TEST_CACHE", "/var/cache/cl-metadata-test"))


def chroot(root: Path, *cmd: str, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {"PATH": SYSTEM_PATH, "LANG": "C.UTF-8", "DEBIAN_FRONTEND": "noninteractive",
           "HOME": "/root"}
    return run(["chroot", str(root), *cmd], env=env, timeout=timeout)


def cached_rootfs(suite: str, mirror: str) -> Path:
    """A minbase root with apt lists and the dependencies' .debs downloaded; built once."""
    key = hashlib.sha256(repr((ROOTFS_RECIPE, suite, mirror, ROOTFS_INCLUDE, ROOTFS_PREFETCH,
                               os.uname().machine)).encode()).hexdigest()[:16]
    base = cache_dir()
    base.mkdir(parents=True, exist_ok=True)
    rootfs = base / f"rootfs-{key}"
    with open(base / f"rootfs-{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (rootfs / ".cl-metadata-complete").exists():
            return rootfs
        building = base / f"rootfs-{key}.building"
        shutil.rmtree(building, ignore_errors=True)
        result = run(["debootstrap", "--variant=minbase", "--include=" + ",".join(ROOTFS_INCLUDE),
                      suite, str(building), mirror], timeout=1800)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        for cmd in (["apt-get", "clean"], ["apt-get", "update", "-q"],
                    ["apt-get", "install", "-y", "-q", "--download-only",
                     "--no-install-recommends", *ROOTFS_PREFETCH]):
            step = chroot(building, *cmd)
            assert step.returncode == 0, f"{cmd}: {step.stderr[-2000:]}"
        (building / ".cl-metadata-complete").write_text(f"{suite} {mirror}\n")
        shutil.rmtree(rootfs, ignore_errors=True)
        building.rename(rootfs)
    return rootfs


@contextlib.contextmanager
def scratch_root(rootfs: Path, work: Path) -> Iterator[Path]:
    """A writable view of the cached root: an overlay when the kernel allows, else a copy."""
    merged, upper, scratch = work / "root", work / "upper", work / "overlay-work"
    for d in (merged, upper, scratch):
        d.mkdir()
    options = f"lowerdir={rootfs},upperdir={upper},workdir={scratch}"
    if run(["mount", "-t", "overlay", "overlay", "-o", options, str(merged)]).returncode == 0:
        try:
            yield merged
        finally:
            run(["umount", "--lazy", str(merged)])
    else:
        merged.rmdir()
        run(["cp", "-a", "--reflink=auto", str(rootfs), str(merged)]).check_returncode()
        yield merged


@pytest.fixture(scope="module")
def installed_root(deb, tmp_path_factory) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("installing into a Debian root needs root (chroot, mount)")
    if shutil.which("debootstrap") is None:
        pytest.skip("debootstrap is not installed (tests/setup-system-deps installs it)")
    suite = host_codename()
    mirror = debian_archive_url(suite)
    if mirror is None:
        pytest.skip(f"no Debian archive for {suite} in the host's apt sources")
    rootfs = cached_rootfs(suite, mirror)
    with scratch_root(rootfs, tmp_path_factory.mktemp("debian-root")) as root:
        shutil.copy(deb, root / "tmp" / deb.name)
        result = chroot(root, "apt-get", "install", "-y", "-q", "--no-install-recommends",
                        f"/tmp/{deb.name}")
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        yield root


def test_installed_agent_runs_in_a_clean_debian_root(installed_root):
    result = chroot(installed_root, "cl-metadata", "--version", timeout=60)
    assert (result.returncode, result.stdout) == (0, f"cl-metadata {VERSION}\n"), result.stderr
    status = chroot(installed_root, "dpkg-query", "-W", "-f=${Status} ${Version}", "cl-metadata")
    assert status.stdout == f"install ok installed {VERSION}-1"
    # the dependencies came from the archive, and the optional journal module is not required
    probe = chroot(installed_root, "python3", "-c",
                   "import requests, yaml, cl_metadata.journal as j;"
                   "print(j.load_native('systemd.journal') is None)")
    assert probe.stdout == "True\n", probe.stderr


def enabled_links(root: Path) -> Dict[str, str]:
    base = root / "etc/systemd/system"
    return {str(p.relative_to(base)): os.readlink(p) for p in sorted(base.rglob("cl-metadata*"))
            if p.is_symlink()}


def test_install_enables_keys_and_check_in_units_but_not_the_attributes_unit(installed_root):
    assert enabled_links(installed_root) == {
        "multi-user.target.wants/cl-metadata-sshkeys.target":
            f"{DEB_UNIT_DIR}/cl-metadata-sshkeys.target",
        "cl-metadata-sshkeys.target.requires/cl-metadata-sshkeys.service":
            f"{DEB_UNIT_DIR}/cl-metadata-sshkeys.service",
        "multi-user.target.wants/cl-metadata-checkin.service":
            f"{DEB_UNIT_DIR}/cl-metadata-checkin.service",
        "multi-user.target.wants/cl-metadata-firstboot-checkin.service":
            f"{DEB_UNIT_DIR}/cl-metadata-firstboot-checkin.service",
    }


def test_debian_sshd_reads_our_fragment(installed_root):
    (installed_root / "run/sshd").mkdir(exist_ok=True)  # sshd -T insists on it
    result = chroot(installed_root, "/usr/sbin/sshd", "-T", timeout=60)
    assert result.returncode == 0, result.stderr
    assert ("authorizedkeysfile .ssh/authorized_keys .ssh/authorized_keys.d/cl-metadata"
            in result.stdout.splitlines())


def test_purge_removes_the_enable_links(installed_root):
    result = chroot(installed_root, "apt-get", "purge", "-y", "-q", "cl-metadata")
    assert result.returncode == 0, result.stderr
    assert enabled_links(installed_root) == {}
    assert not (installed_root / "etc/ssh/sshd_config.d/90-cl-metadata.conf").exists()


# --- Debian and RPM sources agree with the repository -------------------------------------------

def test_debian_install_and_links_files_cover_every_unit_file():
    install = (REPO / "packaging/debian/cl-metadata.install").read_text().split()
    pairs = dict(zip(install[::2], install[1::2]))
    assert {src: f"/{dst}{Path(src).name}" for src, dst in pairs.items()} == DEB_PLACES
    links = (REPO / "packaging/debian/cl-metadata.links").read_text().split()
    assert dict(zip(links[1::2], links[::2])) == {
        f"lib/systemd/system/{alias}": f"lib/systemd/system/{target}"
        for alias, target in ALIASES.items()}


def test_versions_agree():
    changelog = (REPO / "packaging/debian/changelog").read_text().splitlines()[0]
    assert changelog.startswith(f"cl-metadata ({VERSION}-")
    spec = (REPO / "packaging/rpm/cl-metadata.spec").read_text()
    assert re.search(rf"^Version:\s+{re.escape(VERSION)}$", spec, re.M)


@pytest.fixture(scope="module")
def parsed_spec() -> str:
    if shutil.which("rpmspec") is None:
        pytest.skip("rpmspec is not installed (Debian package: rpm)")
    spec = REPO / "packaging/rpm/cl-metadata.spec"
    result = run(["rpmspec", "-P", str(spec)], timeout=60)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    query = run(["rpmspec", "-q", "--qf", "%{name} %{version} %{arch}\n", str(spec)], timeout=60)
    assert query.stdout == f"cl-metadata {VERSION} noarch\n", query.stderr
    return result.stdout


def test_rpm_scriptlets_cover_every_unit_and_never_restart(parsed_spec):
    code = [line for line in parsed_spec.splitlines() if not line.startswith("#")]
    assert not [line for line in code if "_with_restart" in line]
    for macro in ("%systemd_post", "%systemd_preun", "%systemd_postun"):
        lines = [line for line in parsed_spec.splitlines() if line.startswith(macro + " ")]
        assert len(lines) == 1, macro
        assert sorted(lines[0].split()[1:]) == sorted(UNIT_FILES)
    assert "%tmpfiles_create cl-metadata.conf" in parsed_spec.splitlines()


def test_rpm_files_cover_every_unit_file_and_alias(parsed_spec):
    files = parsed_spec.split("\n%files", 1)[1].split("\n%changelog", 1)[0].splitlines()
    for name in [*UNIT_FILES, *ALIASES]:
        assert f"%{{_unitdir}}/{name}" in files, name
    assert "%{_tmpfilesdir}/cl-metadata.conf" in files
    assert "%{_presetdir}/90-cl-metadata.preset" in files
    assert "/usr/bin/cl-metadata-import-image" in files  # rpmspec -P expands %{_bindir}
    assert "%config(noreplace) /etc/ssh/sshd_config.d/90-cl-metadata.conf" in files
    for alias, target in ALIASES.items():
        assert re.search(rf"^ln -s {re.escape(target)} \S+%{{_unitdir}}/{re.escape(alias)}$",
                         parsed_spec, re.M), alias


# --- the sdist ----------------------------------------------------------------------------------

def repo_files() -> List[str]:
    """What the packages are built from: tracked and new files, never ignored build debris."""
    listed = run(["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others",
                  "--exclude-standard"], timeout=60)
    if listed.returncode != 0:
        pytest.skip("not a git checkout")
    return [f for f in listed.stdout.split("\0") if f and (REPO / f).exists()]


def test_sdist_contains_units_packaging_and_tests(tmp_path):
    src = tmp_path / "src"
    for name in repo_files():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, src / name, follow_symlinks=False)
    outdir = tmp_path / "dist"
    try:
        import build  # noqa: F401  (the PyPA front-end, as `python -m build` uses)
        cmd = [sys.executable, "-m", "build", "--sdist", "--no-isolation", "--outdir", str(outdir)]
    except ImportError:  # same PEP 517 hook, called directly
        cmd = [sys.executable, "-c", "import sys; from setuptools import build_meta as b; "
               "print(b.build_sdist(sys.argv[1]))", str(outdir)]
    result = run(cmd, cwd=src, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    (sdist,) = outdir.glob("*.tar.gz")
    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    expected = [*DEB_PLACES, "packaging/build-deb", "packaging/debian/rules",
                "packaging/debian/control", "packaging/debian/changelog",
                "packaging/debian/source/format", "packaging/rpm/cl-metadata.spec",
                "tests/test_units.py", "tests/test_packaging.py", "README.md", "pyproject.toml"]
    assert [n for n in expected if n not in names] == []
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
