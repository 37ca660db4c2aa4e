"""The dracut module (packaging/dracut/30cl-metadata): its units checked by systemd's verifier,
an initramfs really built with it by dracut and unpacked (the units, the agent and its Python
inside, the agent run there in a chroot), and the network arguments the agent writes read back
by dracut's own parser functions (dracut-network's net-lib.sh).

Needs the Debian packages dracut-core and dracut-network (tests/setup-system-deps); the build
and the chroot need root.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import cl_metadata
from cl_metadata import registry
from cl_metadata.fakeserver.drive import write_tree
from cl_metadata.fakeserver.instance import load_instance
from cl_metadata.fakeserver.render import renderer_for
from cl_metadata.network import kargs
from cl_metadata.providers.base import HOSTNAME

from network_fixtures import FIXTURES, platform_descriptions
from test_rd_network_kargs import SAMPLE_KARGS
from test_units import DOCUMENTATION, KILL_SWITCH, make_root, parse_unit, single, values, verify

REPO = Path(__file__).resolve().parents[1]
MODULE = REPO / "packaging/dracut/30cl-metadata"
KARGS_UNIT = "cl-metadata-rd-network-kargs.service"
HOSTNAME_UNIT = "cl-metadata-rd-hostname.service"
UNITS = [KARGS_UNIT, HOSTNAME_UNIT]
DRACUT_BASE = Path("/usr/lib/dracut")
NET_LIB = DRACUT_BASE / "modules.d/40network/net-lib.sh"
DRACUT_LIB = DRACUT_BASE / "modules.d/99base/dracut-lib.sh"
# Afterburn's initrd hostname unit runs on these platforms: their DHCP gives no hostname
HOSTNAME_PLATFORMS = ["aliyun", "azure", "azurestack", "digitalocean", "exoscale", "hetzner",
                      "ibmcloud", "kubevirt", "oraclecloud", "proxmoxve", "scaleway", "upcloud",
                      "vultr"]


def dracut_unit(name: str):
    return parse_unit(MODULE / name)


# --- the units ----------------------------------------------------------------------------------

@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = make_root(tmp_path)
    for name in UNITS:
        shutil.copy(MODULE / name, root / "usr/lib/systemd/system" / name)
    shell = root / "bin/sh"  # the hostname unit's relabel line
    shell.parent.mkdir(parents=True, exist_ok=True)
    shell.write_text("#!/bin/sh\nexit 0\n")
    shell.chmod(0o755)
    return root


@pytest.mark.parametrize("name", UNITS)
def test_unit_passes_systemd_analyze_verify_without_any_warning(root, name):
    result = verify(root, name)
    assert result.returncode == 0, result.stderr
    assert result.stdout + result.stderr == ""


@pytest.mark.parametrize("name", UNITS)
def test_initrd_units_have_documentation_the_kill_switch_and_no_emergency_shell(name):
    u = dracut_unit(name)
    assert single(u, "Unit", "Documentation") == DOCUMENTATION
    assert values(u, "Unit", "ConditionKernelCommandLine")[0] == KILL_SWITCH
    assert single(u, "Unit", "ConditionPathExists") == "/etc/initrd-release"
    # Afterburn's OnFailure=emergency.target turned a missing drive into an emergency shell
    assert values(u, "Unit", "OnFailure") == []
    assert single(u, "Service", "Type") == "oneshot"
    assert single(u, "Service", "TimeoutStartSec") == "90"


def test_kargs_unit_runs_before_dracut_reads_the_command_line():
    u = dracut_unit(KARGS_UNIT)
    assert single(u, "Unit", "DefaultDependencies") == "no"
    assert "dracut-cmdline.service" in single(u, "Unit", "Before").split()
    assert values(u, "Unit", "Wants") == [] and "network" not in single(u, "Unit", "After")
    assert single(u, "Service", "ExecStart") == (
        "/usr/bin/cl-metadata rd-network-kargs ${CL_METADATA_OPT_PROVIDER} "
        "--settings=/etc/cl-metadata/cl-metadata.conf "
        '"--default-value=${CL_METADATA_NETWORK_KARGS_DEFAULT}"')
    assert values(u, "Service", "Environment") == ["CL_METADATA_OPT_PROVIDER=--cmdline",
                                                   "CL_METADATA_NETWORK_KARGS_DEFAULT="]
    # the file the agent writes by default is the one dracut reads
    assert kargs.KARGS_PATH.startswith("/etc/cmdline.d/") and kargs.KARGS_PATH.endswith(".conf")


def test_kargs_unit_loads_the_drivers_the_module_installs():
    # before udev is triggered nothing loads the drivers a config drive's disk or CD-ROM needs,
    # so devtmpfs has no node to read its label from: the unit loads them, best effort
    prefix = "-/sbin/modprobe -a -q "
    pre = single(dracut_unit(KARGS_UNIT), "Service", "ExecStartPre")
    assert pre.startswith(prefix)
    loaded = pre[len(prefix):].split()
    # installkernel() puts the same list into the initrd, host-only builds included
    script = ('instmods() { echo "hostonly=[$hostonly] $*"; }; hostonly=yes; '
              f'. {MODULE}/module-setup.sh; installkernel')
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"hostonly=[] {' '.join(loaded)}\n"
    assert {"virtio_blk", "virtio_scsi", "sd_mod", "sr_mod", "isofs", "vfat"} <= set(loaded)


def test_hostname_unit_writes_the_real_roots_hostname_on_afterburns_platforms():
    u = dracut_unit(HOSTNAME_UNIT)
    conditions = values(u, "Unit", "ConditionKernelCommandLine")[1:]
    assert conditions == [f"|ignition.platform.id={p}" for p in HOSTNAME_PLATFORMS]
    for platform in HOSTNAME_PLATFORMS:  # each is a platform of ours that gives a hostname
        assert HOSTNAME in registry.get(platform).provider.features, platform
    assert single(u, "Service", "ExecStart") == (
        "/usr/bin/cl-metadata --cmdline --hostname=/sysroot/etc/hostname")
    after = " ".join(values(u, "Unit", "After")).split()
    assert "initrd-root-fs.target" in after
    assert {"ignition-files.service", "initrd.target"} <= set(single(u, "Unit", "Before").split())


# --- dracut's own parser reads the arguments ----------------------------------------------------

def _dracut_parse(args):
    """Each argument parsed by net-lib.sh's ip_to_var / route_to_var / parse_ifname_opts."""
    if not (NET_LIB.exists() and DRACUT_LIB.exists()):
        pytest.skip("dracut-network is not installed (Debian package dracut-network)")
    script = [f". {DRACUT_LIB} 2>/dev/null", f". {NET_LIB}"]
    for arg in args:
        key, _, value = arg.partition("=")
        quoted = "'" + value + "'"
        if key == "ip":
            script.append(f"ip_to_var {quoted}; echo \"ip|$ip|$gw|$mask|$dev|$autoconf|$macaddr\"")
        elif key == "rd.route":
            script.append(f"route_to_var {quoted}; "
                          "echo \"route|$route_mask|$route_gw|$route_dev\"")
        elif key == "ifname":
            script.append(f"parse_ifname_opts {quoted}; echo \"ifname|$ifname_if|$ifname_mac\"")
        else:
            script.append(f"echo {key}")
    result = subprocess.run(["bash", "-c", "\n".join(script)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def test_dracut_reads_each_field_where_it_was_written():
    args = ["ip=10.0.0.1:::255.255.255.254::bond0:none::0c:c4:7a:e1:3d:d0",
            "ip=[2001:db8::15]::[2001:db8::1]:64::eth0:none",
            "ip=bond0:dhcp6::00:11:22:33:44:77", "ip=enx525400123456:dhcp",
            "rd.route=[::/0]:[fe80::1]:eth0", "rd.route=10.0.0.0/8:10.60.2.1:bond0.602",
            "ifname=enxfa163e4c2d7a:fa:16:3e:4c:2d:7a"]
    assert _dracut_parse(args) == [
        "ip|10.0.0.1||255.255.255.254|bond0|none|0c:c4:7a:e1:3d:d0",
        "ip|2001:db8::15|2001:db8::1|64|eth0|none|",
        "ip||||bond0|dhcp6|00:11:22:33:44:77",
        "ip||||enx525400123456|dhcp|",
        "route|::/0|fe80::1|eth0",
        "route|10.0.0.0/8|10.60.2.1|bond0.602",
        "ifname|enxfa163e4c2d7a|fa:16:3e:4c:2d:7a"]


@pytest.mark.parametrize("name", sorted(FIXTURES) + sorted(platform_descriptions()))
def test_dracut_parses_every_fixtures_arguments(name):
    interfaces, netdevs = {**FIXTURES, **platform_descriptions()}[name]
    rendered = kargs.render(interfaces, netdevs)
    if not rendered.kargs:
        pytest.skip("nothing dracut can hold")
    parsed = _dracut_parse(rendered.kargs)
    devices = []
    for arg, line in zip(rendered.kargs, parsed):
        fields = line.split("|")
        if fields[0] == "ip":
            _, ip, gw, mask, dev, autoconf, mac = fields
            assert autoconf in ("none", "dhcp", "dhcp6"), arg
            assert dev and (autoconf != "none" or (ip and mask)), arg
            devices.append(dev)
        elif fields[0] == "route":
            assert all(fields[1:]), arg
        elif fields[0] == "ifname":
            assert re.fullmatch(r"enx[0-9a-f]{12}", fields[1]) and fields[1][3:] == \
                fields[2].replace(":", ""), arg
    # dracut's network-legacy stops the boot on a second ip= for one device
    assert len(devices) == len(set(devices))


# --- an initramfs built with the module ---------------------------------------------------------

@pytest.fixture(scope="module")
def initramfs(tmp_path_factory):
    """The unpacked initramfs dracut builds with --modules cl-metadata, and dracut's log."""
    if shutil.which("dracut") is None or not (DRACUT_BASE / "dracut-install").exists():
        pytest.skip("dracut is not installed (Debian package dracut-core)")
    if not (DRACUT_BASE / "modules.d/40network").exists():
        pytest.skip("dracut's network module is not installed (Debian package dracut-network)")
    if os.geteuid() != 0:
        pytest.skip("building an initramfs needs root")
    agent = Path(sys.executable).parent / "cl-metadata"
    if not agent.exists():
        pytest.skip(f"no cl-metadata command next to {sys.executable}")
    work = tmp_path_factory.mktemp("dracut")
    base = work / "base"  # dracut's library with our module added: the host's stays untouched
    shutil.copytree(DRACUT_BASE, base, symlinks=True)
    shutil.copytree(MODULE, base / "modules.d/30cl-metadata")
    image = work / "initrd.img"
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8",
           "dracutbasedir": str(base), "CL_METADATA_DRACUT_AGENT": str(agent)}
    build = subprocess.run(
        ["dracut", "--no-kernel", "--no-hostonly", "--no-early-microcode", "--no-compress",
         "--force", "--kver", os.uname().release, "--modules", "cl-metadata",
         "--tmpdir", str(work), str(image)],
        capture_output=True, text=True, timeout=600, env=env)
    assert build.returncode == 0, build.stdout + build.stderr
    listing = subprocess.run(["lsinitrd", str(image)], capture_output=True, text=True,
                             timeout=120)
    assert listing.returncode == 0, listing.stderr
    root = work / "root"
    root.mkdir()
    with image.open("rb") as archive:
        subprocess.run(["cpio", "-idm", "--quiet"], stdin=archive, cwd=root, check=True,
                       timeout=120)
    return {"root": root, "log": build.stdout + build.stderr, "listing": listing.stdout,
            "agent": agent}


def test_the_module_and_what_it_depends_on_are_included(initramfs):
    for module in ("cl-metadata", "systemd", "network"):
        assert f"*** Including module: {module} ***" in initramfs["log"]


def test_units_wants_links_and_cmdline_d_are_inside(initramfs):
    root = initramfs["root"]
    unit_dir = root / "usr/lib/systemd/system"
    for name in UNITS:
        assert (unit_dir / name).read_bytes() == (MODULE / name).read_bytes()
        assert os.readlink(unit_dir / "initrd.target.wants" / name) == f"../{name}"
        assert f"usr/lib/systemd/system/initrd.target.wants/{name}" in initramfs["listing"]
    assert (root / "etc/cmdline.d").is_dir()
    assert (root / "usr/bin/cl-metadata").read_bytes() == initramfs["agent"].read_bytes()


def test_the_agent_and_its_python_are_inside(initramfs):
    root = initramfs["root"]
    package = Path(cl_metadata.__file__).parent
    for relpath in ("network/kargs.py", "cli.py", "outputs/fsutil.py", "sources/configdrive.py"):
        assert (root / str(package / relpath).lstrip("/")).is_file(), relpath
    assert not (root / str(package / "fakeserver").lstrip("/")).exists()  # a test tool
    import requests
    import yaml

    for module in (requests, yaml):
        assert (root / module.__file__.lstrip("/")).is_file()
    interpreter = os.path.realpath(sys.executable)
    assert (root / interpreter.lstrip("/")).is_file()
    for tool in ("mount", "umount", "modprobe"):
        assert any((root / d / tool).exists() for d in ("usr/bin", "bin", "usr/sbin", "sbin"))


def chroot(root: Path, *argv: str, **environ: str) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", **environ}
    return subprocess.run(["chroot", str(root), *argv], capture_output=True, text=True,
                          timeout=120, env=env)


@pytest.fixture
def initrd_root(initramfs, tmp_path):
    """The unpacked initramfs with a proxmoxve drive at /drive and a fresh /etc/cmdline.d."""
    root = initramfs["root"]
    drive = root / "drive"
    shutil.rmtree(drive, ignore_errors=True)
    write_tree(dict(renderer_for("proxmoxve").drive_files(load_instance(None))), drive)
    for path in (root / "etc/cmdline.d").iterdir():
        path.unlink()
    shutil.rmtree(root / "sysroot", ignore_errors=True)
    yield root
    shutil.rmtree(drive, ignore_errors=True)


def test_the_units_commands_run_in_the_initrd(initrd_root):
    root = initrd_root
    (root / "cmdline").write_text("root=/dev/vda ignition.platform.id=proxmoxve\n")
    env = {"CL_METADATA_CMDLINE": "/cmdline", "CL_METADATA_CONFIG_DRIVE": "/drive"}
    # the network unit's command, as its ExecStart= expands with the unit's defaults
    result = chroot(root, "/usr/bin/cl-metadata", "rd-network-kargs", "--cmdline",
                    "--settings=/etc/cl-metadata/cl-metadata.conf", "--default-value=", **env)
    assert result.returncode == 0, result.stderr
    written = root / kargs.KARGS_PATH.lstrip("/")
    assert written.read_text() == SAMPLE_KARGS + "\n"
    assert oct(written.stat().st_mode & 0o777) == "0o644"
    # the hostname unit's command, once the root file system is at /sysroot
    (root / "sysroot/etc").mkdir(parents=True)
    result = chroot(root, "/usr/bin/cl-metadata", "--cmdline",
                    "--hostname=/sysroot/etc/hostname", **env)
    assert result.returncode == 0, result.stderr
    assert (root / "sysroot/etc/hostname").read_text() == "demo-1\n"


def test_an_ip_argument_keeps_the_initrd_from_getting_any(initrd_root):
    root = initrd_root
    (root / "cmdline").write_text("ignition.platform.id=proxmoxve ip=dhcp rd.neednet=1\n")
    result = chroot(root, "/usr/bin/cl-metadata", "rd-network-kargs", "--cmdline",
                    "--default-value=ip=dhcp6", CL_METADATA_CMDLINE="/cmdline",
                    CL_METADATA_CONFIG_DRIVE="/drive")
    assert result.returncode == 0, result.stderr
    assert list((root / "etc/cmdline.d").iterdir()) == []
