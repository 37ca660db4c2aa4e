"""Packages: the .debs (built, inspected, linted, installed into a clean Debian root), the RPM
spec, the sdist and the wheel.

Distributions split the agent from its test tools: ``cl-metadata`` (the agent, units, tmpfiles,
the sshd drop-in, manual pages, bash completion) and ``cl-metadata-fakeserver`` (the fake
metadata server); the RPM spec has the same split as a subpackage.

Tools missing → the test is skipped with the reason (tests/setup-system-deps installs them).
The clean root is debootstrapped once from the host's configured Debian archive into a cache
outside the repository ($CL_METADATA_TEST_CACHE, default /var/cache/cl-metadata-test) and used
through an overlay (or a copy) per run, so the cached tree never changes.
"""

from __future__ import annotations

import contextlib
import fcntl
import gzip
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
              "cl-metadata-firstboot-checkin.service", "cl-metadata-network.service",
              "cl-metadata-watch.service", "afterburn.service"]
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
# files of the repository → where the agent's .deb puts them, besides the units
DEB_EXTRA_PLACES = {
    "man/cl-metadata.1": "/usr/share/man/man1/cl-metadata.1.gz",
    "man/cl-metadata-import-image.1": "/usr/share/man/man1/cl-metadata-import-image.1.gz",
    "packaging/completion/cl-metadata": "/usr/share/bash-completion/completions/cl-metadata",
    **{f"packaging/dracut/30cl-metadata/{name}": f"/usr/lib/dracut/modules.d/30cl-metadata/{name}"
       for name in ("module-setup.sh", "python-files", "cl-metadata-rd-network-kargs.service",
                    "cl-metadata-rd-hostname.service")}}
FAKESERVER_PACKAGE = "cl-metadata-fakeserver"
SITE = "/usr/lib/python3/dist-packages/cl_metadata"
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
def debs(tmp_path_factory) -> Dict[str, Path]:
    """Package name → the .deb packaging/build-deb built."""
    if shutil.which("dpkg-buildpackage") is None or shutil.which("dpkg-checkbuilddeps") is None:
        pytest.skip("dpkg-dev is not installed (tests/setup-system-deps installs it)")
    unmet = run(["dpkg-checkbuilddeps", str(REPO / "packaging/debian/control")],
                env=dict(os.environ, PATH=SYSTEM_PATH))
    if unmet.returncode != 0:
        pytest.skip(f"Debian build dependencies missing: {unmet.stderr.strip()}")
    outdir = tmp_path_factory.mktemp("deb")
    result = run([str(REPO / "packaging/build-deb"), str(outdir)])
    assert result.returncode == 0, result.stderr
    built = sorted(outdir.glob("*.deb"))
    assert [d.name for d in built] == [f"{FAKESERVER_PACKAGE}_{VERSION}-1_all.deb",
                                       f"cl-metadata_{VERSION}-1_all.deb"]
    assert result.stdout.splitlines() == [str(d) for d in built]
    return {d.name.split("_")[0]: d for d in built}


@pytest.fixture(scope="module")
def deb(debs) -> Path:
    """The agent's package (what an image installs; tests/e2e finds it as cl-metadata_*.deb)."""
    return debs["cl-metadata"]


def deb_members(deb: Path) -> Dict[str, str]:
    """Path → "" for files/dirs, or the link target for symlinks."""
    listing = run(["dpkg-deb", "--fsys-tarfile", str(deb)], text=False, timeout=60).stdout
    members = {}
    with tarfile.open(fileobj=io.BytesIO(listing)) as tar:
        for member in tar.getmembers():
            members[member.name.lstrip(".")] = member.linkname if member.issym() else ""
    return members


def deb_files(deb: Path) -> List[str]:
    """Paths of the regular files and symlinks (not directories) a .deb installs."""
    listing = run(["dpkg-deb", "--fsys-tarfile", str(deb)], text=False, timeout=60).stdout
    with tarfile.open(fileobj=io.BytesIO(listing)) as tar:
        return [m.name.lstrip(".") for m in tar.getmembers() if not m.isdir()]


def test_deb_contains_module_binary_units_tmpfiles_and_sshd_drop_in(deb, tmp_path):
    members = deb_members(deb)
    site = SITE
    for path in (f"{site}/__init__.py", f"{site}/cli.py", f"{site}/journal.py", f"{site}/log.py",
                 f"{site}/providers/__init__.py", "/usr/bin/cl-metadata",
                 f"{site}/imageimport/cli.py", "/usr/bin/cl-metadata-import-image",
                 *DEB_PLACES.values(), *DEB_EXTRA_PLACES.values()):
        assert members.get(path) == "", f"{path} missing from {deb.name}"
    for alias, target in ALIASES.items():
        assert members[f"{DEB_UNIT_DIR}/{alias}"] == target
    # every unit's Documentation= names this file, so it stays uncompressed
    assert members.get("/usr/share/doc/cl-metadata/README.md") == ""
    # shipped bytes are the repository's
    run(["dpkg-deb", "-x", str(deb), str(tmp_path)]).check_returncode()
    for source, place in DEB_PLACES.items():
        assert (tmp_path / place.lstrip("/")).read_bytes() == (REPO / source).read_bytes()
    for source, place in DEB_EXTRA_PLACES.items():
        shipped = (tmp_path / place.lstrip("/")).read_bytes()
        if place.endswith(".gz"):
            shipped = gzip.decompress(shipped)
        assert shipped == (REPO / source).read_bytes()
    assert (tmp_path / "usr/bin/cl-metadata").read_text().startswith("#!/usr/bin/python3")


def test_dracut_module_is_shipped_with_its_setup_executable(deb, parsed_spec, tmp_path):
    # dracut sources module-setup.sh only from an executable file; the units stay out of
    # systemd's own directories (they run in the initrd only)
    run(["dpkg-deb", "-x", str(deb), str(tmp_path)]).check_returncode()
    module = tmp_path / "usr/lib/dracut/modules.d/30cl-metadata"
    assert sorted(p.name for p in module.iterdir()) == [
        "cl-metadata-rd-hostname.service", "cl-metadata-rd-network-kargs.service",
        "module-setup.sh", "python-files"]
    assert os.stat(module / "module-setup.sh").st_mode & 0o777 == 0o755
    assert not list(tmp_path.glob("lib/systemd/system/cl-metadata-rd-*"))
    assert "/usr/lib/dracut/modules.d/30cl-metadata/" in spec_files(parsed_spec)
    assert re.search(r"^chmod 0755 \S+/lib/dracut/modules.d/30cl-metadata/module-setup.sh$",
                     parsed_spec, re.M)


def test_agent_deb_carries_no_fake_server(deb):
    assert [m for m in deb_members(deb) if "fakeserver" in m or "fake-server" in m] == []


def test_fakeserver_deb_holds_the_fake_server_and_nothing_of_the_agent(debs, deb, tmp_path):
    files, agent = set(deb_files(debs[FAKESERVER_PACKAGE])), set(deb_files(deb))
    for path in ("/usr/bin/cl-metadata-fake-server", f"{SITE}/fakeserver/__init__.py",
                 f"{SITE}/fakeserver/cli.py", f"{SITE}/fakeserver/sample-instance.yaml",
                 f"{SITE}/fakeserver/render/openstack.py",
                 "/usr/share/man/man1/cl-metadata-fake-server.1.gz",
                 f"/usr/share/doc/{FAKESERVER_PACKAGE}/copyright"):
        assert path in files, f"{path} missing"
    # every file is the fake server's (or its documentation); none is in both packages
    assert [p for p in files if not (p.startswith((f"{SITE}/fakeserver/",
                                                   f"/usr/share/doc/{FAKESERVER_PACKAGE}/"))
                                     or "fake-server" in p
                                     or p == f"/usr/share/lintian/overrides/{FAKESERVER_PACKAGE}")
            ] == []
    assert files & agent == set()
    run(["dpkg-deb", "-x", str(debs[FAKESERVER_PACKAGE]), str(tmp_path)]).check_returncode()
    page = tmp_path / "usr/share/man/man1/cl-metadata-fake-server.1.gz"
    assert gzip.decompress(page.read_bytes()) == (
        REPO / "man/cl-metadata-fake-server.1").read_bytes()


def deb_fields(deb: Path, *names: str) -> Dict[str, str]:
    return {name: run(["dpkg-deb", "-f", str(deb), name]).stdout.strip() for name in names}


def test_deb_metadata(deb):
    fields = deb_fields(deb, "Package", "Version", "Architecture", "Depends", "Recommends",
                        "Section", "Maintainer")
    assert fields["Package"] == "cl-metadata" and fields["Version"] == f"{VERSION}-1"
    assert fields["Architecture"] == "all"
    depends = {d.strip().split()[0] for d in fields["Depends"].split(",")}
    assert {"python3-requests", "python3-yaml"} <= depends
    assert fields["Recommends"] == "python3-systemd"
    # a "cl-" name would otherwise be filed under Common Lisp
    assert fields["Section"] == "admin"
    assert "localhost" not in fields["Maintainer"]


def test_fakeserver_deb_depends_on_the_same_agent_version(debs):
    fields = deb_fields(debs[FAKESERVER_PACKAGE], "Package", "Version", "Architecture",
                        "Depends", "Section")
    assert (fields["Package"], fields["Version"], fields["Architecture"]) == (
        FAKESERVER_PACKAGE, f"{VERSION}-1", "all")
    assert f"cl-metadata (= {VERSION}-1)" in [d.strip() for d in fields["Depends"].split(",")]
    assert fields["Section"] == "devel"


def test_lintian_pedantic_finds_nothing_not_overridden(debs):
    """Every tag lintian reports, info and pedantic included, is fixed or overridden with a
    reason in packaging/debian/*.lintian-overrides."""
    if shutil.which("lintian") is None:
        pytest.skip("lintian is not installed (tests/setup-system-deps installs it)")
    # info tags fail through the listing: lintian 2.116's --fail-on=info counts overridden ones
    result = run(["lintian", "--pedantic", "--display-info", "--no-cfg", "--fail-on",
                  "error,warning,pedantic", *map(str, debs.values())], timeout=600)
    tags = [line for line in result.stdout.splitlines() if re.match(r"^[EWIPX]: ", line)]
    assert (result.returncode, tags) == (0, [])
    # an override without a reason above it is not reviewed
    for overrides in (REPO / "packaging/debian").glob("*.lintian-overrides"):
        lines = overrides.read_text().splitlines()
        for i, line in enumerate(lines):
            if line and not line.startswith("#"):
                assert i > 0 and lines[i - 1].startswith("# "), f"{overrides.name}: {line}"


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


def test_fake_server_installs_beside_the_agent_from_its_own_package(installed_root, debs):
    probe = ["python3", "-c", "import cl_metadata.fakeserver"]
    assert chroot(installed_root, *probe).returncode != 0  # the agent alone has no fake server
    fake = debs[FAKESERVER_PACKAGE]
    shutil.copy(fake, installed_root / "tmp" / fake.name)
    result = chroot(installed_root, "apt-get", "install", "-y", "-q", "--no-install-recommends",
                    f"/tmp/{fake.name}")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    listed = chroot(installed_root, "cl-metadata-fake-server", "--list-platforms", timeout=60)
    assert listed.returncode == 0 and "openstack-metadata" in listed.stdout.split(), listed.stderr


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

def install_pairs(package: str) -> Dict[str, str]:
    """``source destination`` lines of debian/PACKAGE.install (one-field lines are taken from
    the Python install tree)."""
    lines = (REPO / f"packaging/debian/{package}.install").read_text().splitlines()
    return dict(line.split() for line in lines if len(line.split()) == 2)


def test_debian_install_and_links_files_cover_every_unit_file():
    pairs = install_pairs("cl-metadata")
    assert {src: f"/{dst}{Path(src).name}" for src, dst in pairs.items()
            if src.startswith("units/")} == DEB_PLACES
    links = (REPO / "packaging/debian/cl-metadata.links").read_text().split()
    assert dict(zip(links[1::2], links[::2])) == {
        f"lib/systemd/system/{alias}": f"lib/systemd/system/{target}"
        for alias, target in ALIASES.items()}


def test_every_manual_page_is_installed_by_both_packagings():
    pages = sorted(p.name for p in (REPO / "man").glob("*.1"))
    debian = sorted(Path(line).name for package in ("cl-metadata", FAKESERVER_PACKAGE)
                    for line in (REPO / f"packaging/debian/{package}.manpages")
                    .read_text().split())
    assert debian == pages
    assert (REPO / f"packaging/debian/{FAKESERVER_PACKAGE}.manpages").read_text().split() == [
        "man/cl-metadata-fake-server.1"]
    spec = (REPO / "packaging/rpm/cl-metadata.spec").read_text()
    installed = re.search(r"^for page in (.+); do$", spec, re.M).group(1).split()
    assert sorted(installed) == pages
    assert install_pairs("cl-metadata")["packaging/completion/cl-metadata"] == \
        "usr/share/bash-completion/completions/"


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
    assert query.stdout == (f"cl-metadata {VERSION} noarch\n"
                            f"{FAKESERVER_PACKAGE} {VERSION} noarch\n"), query.stderr
    return result.stdout


def spec_files(parsed_spec: str, package: str = "") -> List[str]:
    """The lines of the %files section of the main package, or of subpackage ``package``."""
    body = parsed_spec.split("\n%changelog", 1)[0]
    for section in body.split("\n%files")[1:]:
        header, _, lines = section.partition("\n")
        if header.split("-f")[0].strip() == package:
            return lines.splitlines()
    raise AssertionError(f"no %files {package}")


def test_rpm_scriptlets_cover_every_unit_and_never_restart(parsed_spec):
    code = [line for line in parsed_spec.splitlines() if not line.startswith("#")]
    assert not [line for line in code if "_with_restart" in line]
    for macro in ("%systemd_post", "%systemd_preun", "%systemd_postun"):
        lines = [line for line in parsed_spec.splitlines() if line.startswith(macro + " ")]
        assert len(lines) == 1, macro
        assert sorted(lines[0].split()[1:]) == sorted(UNIT_FILES)
    assert "%tmpfiles_create cl-metadata.conf" in parsed_spec.splitlines()


def test_rpm_files_cover_every_unit_file_and_alias(parsed_spec):
    files = spec_files(parsed_spec)
    for name in [*UNIT_FILES, *ALIASES]:
        assert f"%{{_unitdir}}/{name}" in files, name
    assert "%{_tmpfilesdir}/cl-metadata.conf" in files
    assert "%{_presetdir}/90-cl-metadata.preset" in files
    assert "/usr/bin/cl-metadata-import-image" in files  # rpmspec -P expands %{_bindir}
    assert "%config(noreplace) /etc/ssh/sshd_config.d/90-cl-metadata.conf" in files
    for alias, target in ALIASES.items():
        assert re.search(rf"^ln -s {re.escape(target)} \S+%{{_unitdir}}/{re.escape(alias)}$",
                         parsed_spec, re.M), alias


def test_rpm_fake_server_is_a_subpackage(parsed_spec):
    agent, fake = spec_files(parsed_spec), spec_files(parsed_spec, "fakeserver")
    assert "/usr/bin/cl-metadata-fake-server" not in agent
    (exclude,) = [line for line in agent if line.startswith("%exclude")]
    assert exclude.endswith("/cl_metadata/fakeserver/")
    assert "/usr/bin/cl-metadata-fake-server" in fake
    assert [line for line in fake if line.endswith("/cl_metadata/fakeserver/")]
    assert "%license LICENSE" in agent and "%license LICENSE" in fake
    assert re.search(r"^Requires:\s+cl-metadata = ", parsed_spec.split("%package fakeserver")[1],
                     re.M)


def test_rpmlint_finds_nothing_not_filtered():
    if shutil.which("rpmlint") is None:
        pytest.skip("rpmlint is not installed (tests/setup-system-deps installs it)")
    rpm_dir = REPO / "packaging/rpm"
    result = run(["rpmlint", "-r", str(rpm_dir / "cl-metadata.rpmlintrc"),
                  str(rpm_dir / "cl-metadata.spec")], timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 errors, 0 warnings" in result.stdout
    filters = (rpm_dir / "cl-metadata.rpmlintrc").read_text().splitlines()
    for i, line in enumerate(filters):
        if line.startswith("addFilter"):
            assert filters[i - 1].startswith("# "), line  # each filter says why


# --- the sdist and the wheel -------------------------------------------------------------------

def repo_files() -> List[str]:
    """What the packages are built from: tracked and new files, never ignored build debris."""
    listed = run(["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others",
                  "--exclude-standard"], timeout=60)
    if listed.returncode != 0:
        pytest.skip("not a git checkout")
    return [f for f in listed.stdout.split("\0") if f and (REPO / f).exists()]


def build_dist(tmp_path: Path, kind: str) -> Path:
    """``python -m build --KIND`` (sdist or wheel) of a copy of the tree; the archive."""
    src = tmp_path / "src"
    for name in repo_files():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, src / name, follow_symlinks=False)
    outdir = tmp_path / "dist"
    try:
        import build  # noqa: F401  (the PyPA front-end, as `python -m build` uses)
        cmd = [sys.executable, "-m", "build", f"--{kind}", "--no-isolation", "--outdir",
               str(outdir)]
    except ImportError:  # same PEP 517 hook, called directly
        cmd = [sys.executable, "-c", "import sys; from setuptools import build_meta as b; "
               f"print(b.build_{kind}(sys.argv[1]))", str(outdir)]
    result = run(cmd, cwd=src, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    (archive,) = outdir.glob("*.tar.gz" if kind == "sdist" else "*.whl")
    return archive


def test_wheel_carries_the_licence_and_its_metadata(tmp_path):
    import zipfile

    with zipfile.ZipFile(build_dist(tmp_path, "wheel")) as wheel:
        names = wheel.namelist()
        (metadata,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        (licence,) = [n for n in names if n.endswith("LICENSE")]
        assert licence.startswith(metadata.split("/")[0] + "/")  # in .dist-info/, not the package
        assert wheel.read(licence) == (REPO / "LICENSE").read_bytes()
        fields = wheel.read(metadata).decode().split("\n\n", 1)[0].splitlines()
    assert "Classifier: License :: OSI Approved :: Apache Software License" in fields
    assert [f for f in fields if f.startswith("License-File: ")] == ["License-File: LICENSE"]
    assert "Apache License" in (REPO / "LICENSE").read_text().splitlines()[1]


def test_sdist_contains_units_packaging_and_tests(tmp_path):
    sdist = build_dist(tmp_path, "sdist")
    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    expected = [*DEB_PLACES, *DEB_EXTRA_PLACES, "LICENSE", "man/cl-metadata-fake-server.1",
                "packaging/build-deb", "packaging/debian/rules",
                "packaging/debian/control", "packaging/debian/changelog",
                "packaging/debian/source/format", "packaging/rpm/cl-metadata.spec",
                "tests/test_units.py", "tests/test_packaging.py", "README.md", "pyproject.toml"]
    assert [n for n in expected if n not in names] == []
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
