"""The end-to-end harness's own logic, without booting anything (runs anywhere, fast): the
QEMU command line stays locked down, the driver refuses the host's network namespace, the
guest's results archive is read back faithfully, accelerator and archive choice."""

from __future__ import annotations

import io
import json
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from e2e_boot import Unsafe, check_namespace, qemu_command
from e2e_host import archive_url, choose_accel
from e2e_results import BootResult, read_results
from e2e_catalog import SCENARIOS
from e2e_scenarios import guest_files

GUEST = Path(__file__).resolve().parent / "guest" / "rootfs"


def spec(tmp_path, **extra) -> dict:
    base = {"run_dir": str(tmp_path), "accel": "tcg", "bound": 180, "kernel": "/k",
            "initrd": "/i", "rootfs": "/r.img", "append": "root=/dev/vda", "host_netns": "x",
            "fake_server": ["/venv/bin/python", "-m", "cl_metadata.fakeserver", "--stdio",
                            "--fault", "*=status:503@10s"]}
    base.update(extra)
    return base


def option(command, flag):
    return [command[i + 1] for i, word in enumerate(command) if word == flag]


def test_qemu_is_bounded_without_defaults_and_restricted(tmp_path):
    command = qemu_command(spec(tmp_path))
    assert command[:5] == ["timeout", "-k", "5", "180", "qemu-system-x86_64"]
    assert "-nodefaults" in command and "-no-user-config" in command and "-no-reboot" in command
    (netdev,) = option(command, "-netdev")
    assert netdev.startswith("user,id=n0,restrict=on,ipv6=off,net=169.254.169.0/24,")
    assert netdev.count("guestfwd=") == 1 and "hostfwd" not in netdev
    assert netdev.endswith(",guestfwd=tcp:169.254.169.254:80-cmd:/venv/bin/python -m "
                           "cl_metadata.fakeserver --stdio --fault '*=status:503@10s'")
    # a fixed MAC: the network scenarios' drives match the NIC by it
    assert option(command, "-device")[-1] == ("virtio-net-pci,netdev=n0,romfile=,"
                                              "mac=52:54:00:12:34:56")
    # the root disk is the first disk (/dev/vda) and never written
    assert option(command, "-drive")[0] == "if=none,id=root,file=/r.img,format=raw,snapshot=on"


def test_no_platform_means_no_guestfwd_and_login_means_loopback_hostfwd_only(tmp_path):
    (netdev,) = option(qemu_command(spec(tmp_path, fake_server=None, login={"key": "k"})),
                       "-netdev")
    assert "guestfwd" not in netdev
    assert netdev.endswith(",hostfwd=tcp:127.0.0.1:2222-:22")


def test_a_comma_in_the_fake_server_command_is_refused(tmp_path):
    with pytest.raises(Unsafe, match="comma"):
        qemu_command(spec(tmp_path, fake_server=["python3", "--fault", "/a=malformed:x,y"]))


@pytest.mark.parametrize("drive, device", [("iso", "ide-cd,drive=cd"),
                                           ("vfat", "virtio-blk-pci,drive=cd")])
def test_config_drive_is_read_only(tmp_path, drive, device):
    command = qemu_command(spec(tmp_path, drive={"format": drive, "path": "/cd"}))
    assert option(command, "-drive")[-1].startswith("if=none,id=cd,file=/cd,format=raw,")
    assert "readonly=on" in option(command, "-drive")[-1]
    assert option(command, "-device")[-1] == device


def test_smbios_tables_are_passed_as_given_and_only_when_asked(tmp_path):
    assert option(qemu_command(spec(tmp_path)), "-smbios") == []
    tables = ["type=1,manufacturer=Amazon EC2,product=t3.micro", "type=3,asset=Amazon EC2"]
    assert option(qemu_command(spec(tmp_path, smbios=tables)), "-smbios") == tables


def test_fw_cfg_entry_is_one_option_and_a_comma_is_refused(tmp_path):
    drive = {"format": "fw_cfg", "name": "opt/org.cl-metadata/meta-data", "path": "/d/raw"}
    command = qemu_command(spec(tmp_path, drive=drive))
    assert option(command, "-fw_cfg") == ["name=opt/org.cl-metadata/meta-data,file=/d/raw"]
    assert len(option(command, "-drive")) == 2  # root and results only: no extra disk
    with pytest.raises(Unsafe, match="comma"):
        qemu_command(spec(tmp_path, drive=dict(drive, path="/d,x/raw")))


def test_driver_refuses_the_hosts_network_namespace():
    mine = os.readlink("/proc/self/ns/net")
    with pytest.raises(Unsafe, match="host's network namespace"):
        check_namespace(mine)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root for unshare --net")
def test_driver_accepts_a_fresh_namespace_and_brings_lo_up():
    code = ("import os, sys; sys.path.insert(0, %r); from e2e_boot import check_namespace; "
            "print(check_namespace('host'))" % str(Path(__file__).parent))
    done = subprocess.run(["unshare", "--net", "--", "python3", "-c", code], capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("net:[") and done.stdout.strip() != os.readlink("/proc/self/ns/net")


def add(tar, name, data=b"", *, mode=0o644, uid=0, kind=tarfile.REGTYPE, target=""):
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.uid, info.gid, info.linkname = kind, mode, uid, uid, target
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)


def test_results_archive_is_read_back_as_the_guest_had_it(tmp_path):
    disk = tmp_path / "results.img"
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        add(tar, "run/metadata", kind=tarfile.DIRTYPE, mode=0o755)
        add(tar, "run/metadata/coreos", b"A=1\n")
        add(tar, "home/core/.ssh", kind=tarfile.SYMTYPE, uid=1000, target="/var/lib/x")
        add(tar, "var/lib/x", kind=tarfile.DIRTYPE, mode=0o1777)
        add(tar, "out/units", b"Id=a.service\nResult=success\n\nId=b.service\nResult=exit-code\n")
        add(tar, "out/cmdline", b"root=/dev/vda clmtest.scenario=x\n")
        add(tar, "out/journal.jsonl", json.dumps({"MESSAGE": [104, 105, 255], "PRIORITY": "3",
                                                  "_SYSTEMD_UNIT": "a.service"}).encode() + b"\n")
    disk.write_bytes(buffer.getvalue() + b"\0" * 65536)  # the rest of the disk is zeros
    report = read_results(disk)
    assert report["files"] == {
        "/run/metadata": {"type": "dir", "mode": 0o755, "uid": 0, "gid": 0},
        "/run/metadata/coreos": {"type": "file", "mode": 0o644, "uid": 0, "gid": 0, "size": 4,
                                 "content": "A=1\n"},
        "/home/core/.ssh": {"type": "link", "target": "/var/lib/x", "mode": 0o644, "uid": 1000,
                            "gid": 1000},
        "/var/lib/x": {"type": "dir", "mode": 0o1777, "uid": 0, "gid": 0},
    }
    assert report["units"] == {"a.service": {"Id": "a.service", "Result": "success"},
                               "b.service": {"Id": "b.service", "Result": "exit-code"}}
    assert report["cmdline"] == ["root=/dev/vda", "clmtest.scenario=x"]
    assert report["journal"][0]["MESSAGE"] == "hi\ufffd"


def test_a_guest_that_never_reported_leaves_no_report(tmp_path):
    (tmp_path / "results.img").write_bytes(b"\0" * 65536)
    (tmp_path / "boot.json").write_text(json.dumps({"rc": 124, "timed_out": True}))
    boot = BootResult.load(tmp_path)
    assert boot.report is None and not boot.completed and boot.journal == []


def test_activation_time_from_systemd_timestamps(tmp_path):
    boot = BootResult(tmp_path, {}, {"units": {
        "ran.service": {"ExecMainStartTimestampMonotonic": "2000000",
                        "ExecMainExitTimestampMonotonic": "3250000"},
        "target.target": {"ExecMainStartTimestampMonotonic": "0",
                          "InactiveExitTimestampMonotonic": "1000000",
                          "ActiveEnterTimestampMonotonic": "1500000"}}}, [], "", [], "")
    assert boot.activation("ran.service") == 1.25
    assert boot.activation("target.target") == 0.5
    assert boot.activation("missing.service") is None


def test_an_entry_without_its_unit_counts_for_the_unit_whose_main_pid_it_has(tmp_path):
    # journald leaves _SYSTEMD_UNIT out when the sender exited before it read the cgroup
    journal = [{"MESSAGE": "a", "_PID": "210", "_SYSTEMD_UNIT": "a.service"},
               {"MESSAGE": "b", "_PID": "212"},
               {"MESSAGE": "other", "_PID": "212", "_SYSTEMD_UNIT": "c.service"},
               {"MESSAGE": "stranger", "_PID": "999"}]
    units = {"a.service": {"ExecMainPID": "210"}, "b.service": {"ExecMainPID": "212"},
             "never.service": {"ExecMainPID": "0"}}
    boot = BootResult(tmp_path, {}, {"units": units}, journal, "", [], "")
    assert boot.messages("a.service") == ["a"]
    assert boot.messages("b.service") == ["b"]
    assert boot.messages("never.service") == []
    assert boot.messages() == ["a", "b", "other", "stranger"]


@pytest.mark.parametrize("requested, modules, writable, expected", [
    (None, ["kvm", "kvm_pvm"], True, "tcg"),  # this machine kind: PVM cannot run a stock kernel
    (None, ["kvm", "kvm_intel"], True, "kvm"),
    (None, ["kvm", "kvm_amd"], False, "tcg"),  # /dev/kvm not usable
    (None, [], True, "tcg"),
    ("tcg", ["kvm", "kvm_intel"], True, "tcg"),
    ("kvm", [], False, "kvm"),  # an explicit choice is obeyed
])
def test_accelerator_choice(tmp_path, monkeypatch, requested, modules, writable, expected):
    monkeypatch.delenv("CL_METADATA_E2E_ACCEL", raising=False)
    for name in modules:
        (tmp_path / "module" / name).mkdir(parents=True)
    device = tmp_path / "kvm"
    device.touch(mode=0o600 if writable else 0o000)
    if os.geteuid() == 0 and not writable:
        device = tmp_path / "no-such-device"  # root can write anything that exists
    assert choose_accel(requested, modules=tmp_path / "module", kvm_device=str(device)) == expected


def test_accelerator_override_must_be_known(monkeypatch):
    monkeypatch.setenv("CL_METADATA_E2E_ACCEL", "hvf")
    with pytest.raises(ValueError, match="auto, kvm or tcg"):
        choose_accel()


def test_archive_url_from_deb822_or_one_line_sources(tmp_path):
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "a.sources").write_text(
        "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n\n"
        "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\n")
    assert archive_url("bookworm", tmp_path) == "http://mirror.example/debian"
    (tmp_path / "sources.list.d" / "a.sources").unlink()
    (tmp_path / "sources.list").write_text(
        "# comment\ndeb [arch=amd64] http://old.example/debian bookworm main\n")
    assert archive_url("bookworm", tmp_path) == "http://old.example/debian"
    with pytest.raises(RuntimeError, match="no Debian archive for trixie"):
        archive_url("trixie", tmp_path)


def test_scenarios_are_named_uniquely_and_say_so_on_the_kernel_command_line():
    names = [s.name for s in SCENARIOS]
    assert len(set(names)) == len(names) == 24
    assert sorted({s.issue for s in SCENARIOS}) == ([str(n) for n in range(1, 9)]
                                                   + ["issue 11", "issue 12", "issue 13",
                                                      "issue 15", "issue 6"])
    for scenario in SCENARIOS:
        words = scenario.kernel_cmdline().split()
        assert f"clmtest.scenario={scenario.name}" in words
        assert (f"clmtest.hold={scenario.hold}" in words) == scenario.login


def test_scenario_links_name_a_unit_dir_and_a_unit():
    for path, content in guest_files(SCENARIOS).items():
        if path.endswith("/links"):
            for line in content.decode().splitlines():
                linkdir, unit = line.split()
                assert linkdir.endswith((".wants", ".requires")) and unit.endswith(".service")


@pytest.mark.parametrize("script", ["usr/lib/clmtest/report", "usr/lib/clmtest/setup",
                                    "usr/lib/systemd/system-generators/clmtest-generator"])
def test_guest_scripts_are_executable_shell(script):
    path = GUEST / script
    assert os.access(path, os.X_OK)
    assert subprocess.run(["sh", "-n", str(path)], capture_output=True).returncode == 0
