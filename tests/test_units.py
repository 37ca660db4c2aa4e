"""The systemd units in units/: systemd's own verifier, exact settings, install behaviour.

systemd-analyze and systemctl work on a throw-away root (``--root``) holding the host's unit
library, our units as the packages install them (with the Container Linux alias symlinks) and a
stub /usr/bin/cl-metadata, so no running systemd is needed and the host is never touched.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path
from typing import Dict, List, Tuple

import pytest

REPO = Path(__file__).resolve().parents[1]
UNITS = REPO / "units"
BINARY = "/usr/bin/cl-metadata"
SERVICES = ["cl-metadata.service", "cl-metadata-sshkeys.service", "cl-metadata-sshkeys@.service",
            "cl-metadata-checkin.service", "cl-metadata-firstboot-checkin.service",
            "afterburn.service"]
NETWORK_UNIT = "cl-metadata-network.service"  # before the network, unlike every other service
WATCH_UNIT = "cl-metadata-watch.service"  # long-running, unlike every other service
UNIT_FILES = SERVICES + [NETWORK_UNIT, WATCH_UNIT, "cl-metadata-sshkeys.target"]
KEY_UNITS = ["cl-metadata-sshkeys.service", "cl-metadata-sshkeys@.service"]
# what the packages ship next to the units (packaging/debian/cl-metadata.links, the spec)
ALIASES = {"coreos-metadata.service": "cl-metadata.service",
           "coreos-metadata-sshkeys@.service": "cl-metadata-sshkeys@.service",
           "afterburn-sshkeys@.service": "cl-metadata-sshkeys@.service",
           "afterburn-sshkeys.target": "cl-metadata-sshkeys.target",
           "afterburn-checkin.service": "cl-metadata-checkin.service",
           "afterburn-firstboot-checkin.service": "cl-metadata-firstboot-checkin.service"}
AGENT_DEADLINE = 60  # the agent's default overall deadline, seconds
SETTINGS = "--settings=/etc/cl-metadata/cl-metadata.conf"
KILL_SWITCH = "!cl-metadata=disabled"
DOCUMENTATION = "file:/usr/share/doc/cl-metadata/README.md"

def parse_unit(path: Path) -> Dict[str, List[Tuple[str, str]]]:
    """Sections → (key, value) pairs in order; repeated keys kept (systemd's list semantics)."""
    sections: Dict[str, List[Tuple[str, str]]] = {}
    current = None
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped[0] in "#;":
            continue
        assert not stripped.endswith("\\"), f"{path.name}: line continuations are not used"
        if stripped.startswith("["):
            current = sections.setdefault(stripped.strip("[]"), [])
            continue
        key, sep, value = stripped.partition("=")
        assert sep and current is not None, f"{path.name}: stray line {line!r}"
        current.append((key.strip(), value.strip()))
    return sections


def values(unit: Dict[str, List[Tuple[str, str]]], section: str, key: str) -> List[str]:
    return [v for k, v in unit.get(section, []) if k == key]


def single(unit, section: str, key: str) -> str:
    found = values(unit, section, key)
    assert len(found) == 1, f"[{section}] {key}= appears {len(found)} times"
    return found[0]


def unit(name: str):
    return parse_unit(UNITS / name)


# --- a throw-away systemd root ------------------------------------------------------------------

def _host_unit_dir() -> Path:
    for candidate in (Path("/usr/lib/systemd/system"), Path("/lib/systemd/system")):
        if (candidate / "sysinit.target").exists():
            return candidate
    pytest.skip("no systemd unit library on this host (/usr/lib/systemd/system/sysinit.target)")


def make_root(base: Path, *, stub_binary: bool = True) -> Path:
    if shutil.which("systemd-analyze") is None or shutil.which("systemctl") is None:
        pytest.skip("systemd-analyze/systemctl not installed (Debian package: systemd)")
    root = base / "root"
    unit_dir = root / "usr/lib/systemd/system"
    shutil.copytree(_host_unit_dir(), unit_dir, symlinks=True)
    for name in UNIT_FILES:
        shutil.copy(UNITS / name, unit_dir / name)
    for alias, target in ALIASES.items():
        (unit_dir / alias).symlink_to(target)
    preset_dir = root / "usr/lib/systemd/system-preset"
    preset_dir.mkdir(parents=True)
    shutil.copy(UNITS / "preset/90-cl-metadata.preset", preset_dir)
    (root / "etc/systemd/system").mkdir(parents=True)
    if stub_binary:
        binary = root / BINARY.lstrip("/")
        binary.parent.mkdir(parents=True, exist_ok=True)
        binary.write_text("#!/bin/sh\nexit 0\n")
        binary.chmod(0o755)
        kill = root / "bin/kill"  # the watch unit's ExecReload=
        kill.parent.mkdir(parents=True, exist_ok=True)
        kill.write_text("#!/bin/sh\nexit 0\n")
        kill.chmod(0o755)
    return root


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return make_root(tmp_path)


def verify(root: Path, *names: str) -> subprocess.CompletedProcess:
    return subprocess.run(["systemd-analyze", "verify", f"--root={root}", *names],
                          capture_output=True, text=True, timeout=60)


def links(root: Path) -> Dict[str, str]:
    """Symlinks systemctl created under /etc/systemd/system: relative path → target."""
    base = root / "etc/systemd/system"
    return {str(p.relative_to(base)): os.readlink(p) for p in sorted(base.rglob("*"))
            if p.is_symlink()}


def systemctl(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["systemctl", f"--root={root}", *args], capture_output=True,
                          text=True, timeout=60)


# --- systemd's verifier -------------------------------------------------------------------------

@pytest.mark.parametrize("name", [
    "cl-metadata.service", "cl-metadata-sshkeys.service", "cl-metadata-sshkeys@core.service",
    "cl-metadata-sshkeys.target", "cl-metadata-checkin.service",
    "cl-metadata-firstboot-checkin.service", "afterburn.service", "cl-metadata-network.service",
    "cl-metadata-watch.service",
    "coreos-metadata.service", "coreos-metadata-sshkeys@core.service",
    "afterburn-sshkeys@core.service", "afterburn-sshkeys.target", "afterburn-checkin.service",
    "afterburn-firstboot-checkin.service"])
def test_unit_passes_systemd_analyze_verify_without_any_warning(root, name):
    result = verify(root, name)
    assert result.returncode == 0, result.stderr
    assert result.stdout + result.stderr == ""


def test_verify_in_this_setup_does_report_a_broken_unit(root):
    # control: a typo in a copy of our unit is reported, so silence above means something
    text = (UNITS / "cl-metadata.service").read_text().replace("TimeoutStartSec=",
                                                                  "TimeoutStartSek=")
    (root / "etc/systemd/system/cl-metadata-typo.service").write_text(text)
    result = verify(root, "cl-metadata-typo.service")
    assert "Unknown key 'TimeoutStartSek'" in result.stderr


def test_verify_requires_the_agent_at_usr_bin(tmp_path):
    # without the stub, every ExecStart= fails: the units really run /usr/bin/cl-metadata
    root = make_root(tmp_path, stub_binary=False)
    result = verify(root, "cl-metadata.service")
    assert result.returncode != 0
    assert f"Command {BINARY} is not executable" in result.stderr


def test_container_linux_consumer_unit_works_unchanged(root):
    consumer = root / "etc/systemd/system/etcd-member.service"
    consumer.write_text(
        "[Unit]\nRequires=coreos-metadata.service\nAfter=coreos-metadata.service\n"
        "[Service]\nEnvironmentFile=/run/metadata/coreos\n"
        f"ExecStart={BINARY} ${{COREOS_OPENSTACK_IPV4_LOCAL}}\n")
    result = verify(root, "etcd-member.service")
    assert result.returncode == 0 and result.stdout + result.stderr == "", result.stderr
    # control: the same consumer pointing at a name nobody ships fails to verify
    consumer.write_text(consumer.read_text().replace("coreos-metadata.service",
                                                     "no-such-metadata.service"))
    assert "no-such-metadata.service not found" in verify(root, "etcd-member.service").stderr


def test_drop_in_written_for_coreos_metadata_applies_to_cl_metadata(root):
    # ct wrote coreos-metadata.service.d/20-clct-provider-override.conf; systemd loads drop-ins
    # of every name of a unit. A probe key that systemd warns about shows the file is read.
    drop_in = root / "etc/systemd/system/coreos-metadata.service.d/20-clct-provider-override.conf"
    drop_in.parent.mkdir(parents=True)
    drop_in.write_text("[Service]\nEnvironment=COREOS_METADATA_OPT_PROVIDER="
                       "--provider=openstack-metadata\nProbeKeyForTest=1\n")
    assert "Unknown key 'ProbeKeyForTest'" in verify(root, "cl-metadata.service").stderr


# --- exact settings -----------------------------------------------------------------------------

@pytest.mark.parametrize("name", SERVICES)
def test_every_service_is_a_bounded_oneshot_after_network_online(name):
    u = unit(name)
    assert single(u, "Service", "Type") == "oneshot"
    assert single(u, "Service", "RemainAfterExit") == "yes"
    timeout = single(u, "Service", "TimeoutStartSec")
    assert timeout.isdigit() and AGENT_DEADLINE < int(timeout) <= 3 * AGENT_DEADLINE
    assert single(u, "Service", "NotifyAccess") == "main"  # else STATUS= lines are dropped
    assert values(u, "Service", "Environment")[0] == "CL_METADATA_OPT_PROVIDER=--cmdline"
    assert SETTINGS in single(u, "Service", "ExecStart").split()  # the image's settings
    assert "network-online.target" in single(u, "Unit", "Wants").split()
    assert "network-online.target" in single(u, "Unit", "After").split()
    assert values(u, "Install", "Alias") == []  # see test_aliases_*: shipped as symlinks
    assert single(u, "Service", "NoNewPrivileges") == "yes"


def test_attributes_unit():
    u = unit("cl-metadata.service")
    assert single(u, "Service", "ExecStart") == (
        "/usr/bin/cl-metadata ${CL_METADATA_OPT_PROVIDER} $COREOS_METADATA_OPT_PROVIDER"
        f" {SETTINGS} $CL_METADATA_OPT_ATTRIBUTES")
    # Flatcar's layout is one drop-in replacing this variable
    assert values(u, "Service", "Environment") == [
        "CL_METADATA_OPT_PROVIDER=--cmdline",
        "CL_METADATA_OPT_ATTRIBUTES=--attributes=/run/metadata/coreos"]
    assert values(u, "Unit", "ConditionKernelCommandLine") == [KILL_SWITCH]  # consumers decide
    assert single(u, "Install", "RequiredBy") == "metadata.target"
    assert values(u, "Install", "WantedBy") == []  # pulled in, never enabled by itself
    assert single(u, "Service", "ProtectSystem") == "strict"
    assert single(u, "Service", "ReadWritePaths").split() == ["-/run/metadata",
                                                              "-/run/cl-metadata"]
    assert single(u, "Service", "ProtectHome") == "yes"


def test_ssh_keys_template():
    u = unit("cl-metadata-sshkeys@.service")
    assert single(u, "Service", "ExecStart") == (
        "/usr/bin/cl-metadata ${CL_METADATA_OPT_PROVIDER} $COREOS_METADATA_OPT_PROVIDER"
        f" {SETTINGS} --ssh-keys=%i")
    assert single(u, "Install", "DefaultInstance") == "core"
    assert single(u, "Install", "RequiredBy") == "cl-metadata-sshkeys.target"
    assert values(u, "Install", "Also") == []
    assert values(u, "Service", "ProtectHome") == []  # writes into home directories


def test_image_users_keys_unit():
    u = unit("cl-metadata-sshkeys.service")
    assert single(u, "Service", "ExecStart") == (
        "/usr/bin/cl-metadata ${CL_METADATA_OPT_PROVIDER} $COREOS_METADATA_OPT_PROVIDER"
        f" {SETTINGS} --ssh-keys-default")
    assert single(u, "Install", "RequiredBy") == "cl-metadata-sshkeys.target"
    assert values(u, "Service", "ProtectHome") == []


@pytest.mark.parametrize("name", KEY_UNITS)
def test_keys_units_need_no_kernel_command_line_and_come_before_logins(name):
    u = unit(name)
    # the agent decides (kernel command line, drop-in, settings file): no platform list here
    assert values(u, "Unit", "ConditionKernelCommandLine") == [KILL_SWITCH]
    assert set(single(u, "Unit", "Before").split()) == {
        "sshd.service", "ssh.service", "systemd-user-sessions.service"}


def test_afterburn_unit_writes_afterburns_file():
    u = unit("afterburn.service")
    assert single(u, "Service", "ExecStart") == (
        "/usr/bin/cl-metadata ${CL_METADATA_OPT_PROVIDER} $AFTERBURN_OPT_PROVIDER"
        f" {SETTINGS} --attributes-flavor=afterburn --attributes=/run/metadata/afterburn")
    assert "Install" not in u  # pulled in by its consumers, never enabled
    assert single(u, "Service", "ProtectSystem") == "strict"
    assert single(u, "Service", "ReadWritePaths").split() == ["-/run/metadata",
                                                              "-/run/cl-metadata"]


@pytest.mark.parametrize("name", UNIT_FILES)
def test_every_unit_has_documentation_and_the_kill_switch(name):
    u = unit(name)
    assert single(u, "Unit", "Documentation") == DOCUMENTATION
    assert values(u, "Unit", "ConditionKernelCommandLine")[0] == KILL_SWITCH


def test_fedora_coreos_consumer_unit_works_unchanged(root):
    consumer = root / "etc/systemd/system/app.service"
    consumer.write_text(
        "[Unit]\nRequires=afterburn.service\nAfter=afterburn.service\n"
        "[Service]\nEnvironmentFile=/run/metadata/afterburn\n"
        f"ExecStart={BINARY} ${{AFTERBURN_AWS_IPV4_LOCAL}}\n")
    result = verify(root, "app.service")
    assert result.returncode == 0 and result.stdout + result.stderr == "", result.stderr


def test_afterburn_names_enable_our_units(root):
    assert systemctl(root, "preset", *UNIT_FILES).returncode == 0
    # what Fedora CoreOS's Ignition configs and presets enable
    result = systemctl(root, "enable", "afterburn-sshkeys@core.service",
                       "afterburn-checkin.service")
    assert result.returncode == 0, result.stderr
    assert links(root)["cl-metadata-sshkeys.target.requires/cl-metadata-sshkeys@core.service"] == (
        "/usr/lib/systemd/system/cl-metadata-sshkeys@.service")
    for alias in ("afterburn-sshkeys.target", "afterburn-checkin.service"):
        assert systemctl(root, "is-enabled", alias).stdout.strip() == "alias", alias


def test_ssh_keys_target():
    u = unit("cl-metadata-sshkeys.target")
    assert single(u, "Install", "WantedBy") == "multi-user.target"
    assert values(u, "Install", "RequiredBy") == []  # a failed fetch must not fail the boot
    assert single(u, "Install", "Also") == "cl-metadata-sshkeys.service"


@pytest.mark.parametrize("name, first_boot", [
    ("cl-metadata-checkin.service", False),
    ("cl-metadata-firstboot-checkin.service", True),
])
def test_check_in_units(name, first_boot):
    u = unit(name)
    assert single(u, "Service", "ExecStart") == (
        f"/usr/bin/cl-metadata ${{CL_METADATA_OPT_PROVIDER}} {SETTINGS} --check-in")
    # no platform conditions: a platform named by the settings file or DMI checks in too
    assert values(u, "Unit", "ConditionKernelCommandLine") == [KILL_SWITCH]
    assert values(u, "Unit", "ConditionFirstBoot") == (["yes"] if first_boot else [])
    # after the system is up (multi-user, boot-complete); an explicit After=multi-user.target
    # avoids Afterburn's ordering loop (coreos/afterburn#802)
    assert set(single(u, "Unit", "After").split()) == {
        "network-online.target", "multi-user.target", "boot-complete.target"}
    assert single(u, "Install", "WantedBy") == "multi-user.target"


def test_network_unit_runs_before_any_network_manager_and_never_uses_the_network():
    u = unit(NETWORK_UNIT)
    assert single(u, "Service", "ExecStart") == (
        f"/usr/bin/cl-metadata ${{CL_METADATA_OPT_PROVIDER}} $COREOS_METADATA_OPT_PROVIDER "
        f"{SETTINGS} --local-only $CL_METADATA_OPT_NETWORK")
    assert values(u, "Service", "Environment") == [
        "CL_METADATA_OPT_PROVIDER=--cmdline",
        "CL_METADATA_OPT_NETWORK=--network-units=/run/systemd/network",
        "CL_METADATA_TIMEOUT=20"]
    assert single(u, "Unit", "DefaultDependencies") == "no"
    assert {"network-pre.target", "systemd-networkd.service", "NetworkManager.service"} <= set(
        " ".join(values(u, "Unit", "Before")).split())
    assert "network-online.target" not in " ".join(values(u, "Unit", "After") +
                                                   values(u, "Unit", "Wants"))
    assert single(u, "Unit", "Wants") == "network-pre.target"
    assert single(u, "Install", "WantedBy") == "sysinit.target"
    # no address family that reaches a network: --local-only never asks one
    assert single(u, "Service", "RestrictAddressFamilies") == "AF_UNIX AF_NETLINK"
    assert int(single(u, "Service", "TimeoutStartSec")) > 20  # above the agent's own deadline
    assert single(u, "Service", "NoNewPrivileges") == "yes"
    assert values(u, "Unit", "ConditionKernelCommandLine") == [KILL_SWITCH]


def test_watch_unit_is_a_watched_notify_service_off_the_boot_path():
    u = unit(WATCH_UNIT)
    assert single(u, "Service", "ExecStart") == (
        f"/usr/bin/cl-metadata watch ${{CL_METADATA_OPT_PROVIDER}} {SETTINGS} "
        "--ssh-keys-default")
    assert values(u, "Service", "Environment") == ["CL_METADATA_OPT_PROVIDER=--cmdline"]
    assert single(u, "Service", "Type") == "notify"
    assert single(u, "Service", "NotifyAccess") == "main"
    # well above the agent's 20 s keep-alive and a look's 60 s deadline
    assert int(single(u, "Service", "WatchdogSec")) == 3 * AGENT_DEADLINE
    assert single(u, "Service", "Restart") == "on-failure"
    assert single(u, "Service", "ExecReload") == "/bin/kill -HUP $MAINPID"
    assert "RemainAfterExit" not in dict(u["Service"])
    # after the boot's key unit and multi-user.target: a dead platform holds up no boot
    assert set(single(u, "Unit", "After").split()) == {
        "network-online.target", "cl-metadata-sshkeys.service", "multi-user.target"}
    assert single(u, "Install", "WantedBy") == "multi-user.target"
    # the key unit's sandbox: writes into homes as the user
    keys = unit("cl-metadata-sshkeys.service")
    for key in ("ProtectSystem", "PrivateTmp", "NoNewPrivileges", "RestrictAddressFamilies"):
        assert single(u, "Service", key) == single(keys, "Service", key)
    assert values(u, "Service", "ProtectHome") == []


def test_tmpfiles_lines():
    lines = [line.split() for line in (UNITS / "tmpfiles.d/cl-metadata.conf").read_text()
             .splitlines() if line.strip() and not line.startswith("#")]
    assert lines == [["d", "/run/metadata", "0755", "root", "root", "-"],
                     ["d", "/run/cl-metadata", "0700", "root", "root", "-"]]


@pytest.mark.skipif(os.geteuid() != 0, reason="systemd-tmpfiles --root sets owners: needs root")
@pytest.mark.skipif(shutil.which("systemd-tmpfiles") is None, reason="systemd-tmpfiles missing")
def test_tmpfiles_creates_the_directories(tmp_path):
    conf = UNITS / "tmpfiles.d/cl-metadata.conf"
    result = subprocess.run(["systemd-tmpfiles", f"--root={tmp_path}", "--create", str(conf)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    for path, mode in (("run/metadata", 0o755), ("run/cl-metadata", 0o700)):
        st = (tmp_path / path).lstat()
        assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == mode, path
        assert (st.st_uid, st.st_gid) == (0, 0)


def test_sshd_drop_in():
    lines = [line for line in (UNITS / "sshd_config.d/90-cl-metadata.conf").read_text()
             .splitlines() if line.strip() and not line.startswith("#")]
    assert lines == ["AuthorizedKeysFile .ssh/authorized_keys .ssh/authorized_keys.d/cl-metadata"]


# --- enabling: the preset, the aliases, one user more -------------------------------------------

PRESET_LINKS = {
    "multi-user.target.wants/cl-metadata-sshkeys.target":
        "/usr/lib/systemd/system/cl-metadata-sshkeys.target",
    "cl-metadata-sshkeys.target.requires/cl-metadata-sshkeys.service":
        "/usr/lib/systemd/system/cl-metadata-sshkeys.service",
    "multi-user.target.wants/cl-metadata-checkin.service":
        "/usr/lib/systemd/system/cl-metadata-checkin.service",
    "multi-user.target.wants/cl-metadata-firstboot-checkin.service":
        "/usr/lib/systemd/system/cl-metadata-firstboot-checkin.service",
}


def test_preset_enables_keys_and_check_in_but_not_the_attributes_unit(root):
    # what %systemd_post does on Fedora-like systems
    result = systemctl(root, "preset", *UNIT_FILES)
    assert result.returncode == 0, result.stderr
    assert links(root) == PRESET_LINKS


def test_enabling_the_target_enables_the_default_instance(root):
    assert systemctl(root, "enable", "cl-metadata-sshkeys.target").returncode == 0
    assert links(root) == {k: v for k, v in PRESET_LINKS.items() if "sshkeys" in k}


def test_aliases_resolve_and_can_be_enabled_after_the_preset(root):
    assert systemctl(root, "preset", *UNIT_FILES).returncode == 0
    # Container Linux configs enable units by their old names
    result = systemctl(root, "enable", "coreos-metadata-sshkeys@alice.service",
                       "coreos-metadata.service")
    assert result.returncode == 0, result.stderr
    found = links(root)
    assert found["cl-metadata-sshkeys.target.requires/cl-metadata-sshkeys@alice.service"] == (
        "/usr/lib/systemd/system/cl-metadata-sshkeys@.service")
    assert found["metadata.target.requires/cl-metadata.service"] == (
        "/usr/lib/systemd/system/cl-metadata.service")
    assert systemctl(root, "is-enabled", "coreos-metadata.service").stdout.strip() == "alias"


def test_disabling_one_user_keeps_the_others(root):
    assert systemctl(root, "enable", "cl-metadata-sshkeys.target",
                     "cl-metadata-sshkeys@alice.service").returncode == 0
    assert systemctl(root, "disable", "cl-metadata-sshkeys@alice.service").returncode == 0
    assert links(root) == {k: v for k, v in PRESET_LINKS.items() if "sshkeys" in k}
