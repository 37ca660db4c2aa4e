"""cl_metadata.sources.configdrive: finding, mounting, confined reading, always unmounting.

Directory-based tests run anywhere. The mount lifecycle tests need root, losetup and
mkfs.ext4; ext4 on a loop device stands in for iso9660/vfat, which this host kernel cannot
mount (the QEMU tests in ``tests/e2e/`` cover the real fs types).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import tempfile

import pytest

from cl_metadata.sources import configdrive
from cl_metadata.sources.configdrive import find_labelled_device, open_config_drive
from cl_metadata.context import Context
from cl_metadata.sources.deadline import Deadline
from cl_metadata.errors import (ConfigDriveError, ConfigDriveNotFound, InvalidMetadata,
                                UsageError)

META = b'{"uuid": "83679162-1378-4288-a2d4-70e13ec132aa", "hostname": "node-1"}'
USER_DATA = b"#cloud-config\nsecret: hunter2\n\x00\xff"
SECRET = "hunter2-outside-the-drive"


def _write(path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _build_tree(root) -> None:
    _write(root / "openstack/latest/meta_data.json", META)
    _write(root / "openstack/latest/user_data", USER_DATA)
    _write(root / "cloudstack/metadata/instance_id.txt", b"i-123\n")


@pytest.fixture
def drive_root(tmp_path):
    root = tmp_path / "drive"
    _build_tree(root)
    (tmp_path / "outside.txt").write_text(SECRET)
    return root


@pytest.fixture
def drive(drive_root):
    with open_config_drive(["config-2"], override=str(drive_root)) as opened:
        yield opened


@pytest.fixture
def private_tmp(tmp_path, monkeypatch):
    """mkdtemp() lands here, so a leftover mount point is visible to the test."""
    directory = tmp_path / "tmp"
    directory.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(directory))
    return directory


# --- reading inside a directory ----------------------------------------------------------------

def test_reads_exact_bytes_text_and_json(drive):
    assert drive.read("openstack/latest/user_data") == USER_DATA
    assert drive.read_text("cloudstack/metadata/instance_id.txt") == "i-123\n"
    assert drive.read_json("openstack/latest/meta_data.json") == json.loads(META)
    # redundant separators and "." are harmless spellings of the same file
    assert drive.read("./openstack//latest/user_data") == USER_DATA


def test_exists_reports_files_and_directories(drive):
    assert drive.exists("openstack/latest/meta_data.json")
    assert drive.exists("openstack/latest")
    assert not drive.exists("openstack/latest/network_data.json")
    assert not drive.exists("ec2/latest/meta-data.json")


@pytest.mark.parametrize("relpath", ["openstack/latest/network_data.json",
                                     "ec2/latest/meta-data.json"])
def test_missing_file_is_none_when_optional_else_an_error(drive, relpath):
    assert drive.read(relpath, optional=True) is None
    assert drive.read_text(relpath, optional=True) is None
    assert drive.read_json(relpath, optional=True) is None
    with pytest.raises(ConfigDriveError) as err:
        drive.read_json(relpath)
    assert str(err.value) == f"{relpath}: missing"
    assert err.value.source == relpath
    assert not isinstance(err.value, ConfigDriveNotFound)


def test_file_used_as_a_directory_is_an_error(drive):
    with pytest.raises(ConfigDriveError) as err:
        drive.read("openstack/latest/meta_data.json/x", optional=True)
    assert str(err.value) == "openstack/latest/meta_data.json/x: meta_data.json is not a directory"


@pytest.mark.parametrize("target_outside", [True, False], ids=["escaping", "inside"])
def test_symlinked_file_is_refused(drive_root, drive, target_outside):
    target = drive_root.parent / "outside.txt" if target_outside else "meta_data.json"
    os.symlink(target, drive_root / "openstack/latest/link.json")
    for read in (drive.read, drive.read_text, drive.read_json):
        with pytest.raises(ConfigDriveError) as err:
            read("openstack/latest/link.json", optional=True)
        assert str(err.value) == ("openstack/latest/link.json: "
                                  "symlinks are not followed on a config drive")
        assert SECRET not in str(err.value)
    with pytest.raises(ConfigDriveError, match="symlinks are not followed"):
        drive.exists("openstack/latest/link.json")


@pytest.mark.parametrize("target_outside", [True, False], ids=["escaping", "inside"])
def test_symlinked_directory_is_refused(drive_root, drive, tmp_path, target_outside):
    if target_outside:
        _write(tmp_path / "elsewhere/latest/meta_data.json", b'{"uuid": "evil"}')
        os.symlink(tmp_path / "elsewhere", drive_root / "ec2")
    else:
        os.symlink("openstack", drive_root / "ec2")
    relpath = "ec2/latest/meta_data.json"
    with pytest.raises(ConfigDriveError) as err:
        drive.read_json(relpath, optional=True)
    assert str(err.value) == f"{relpath}: symlinks are not followed on a config drive"
    with pytest.raises(ConfigDriveError, match="symlinks are not followed"):
        drive.exists(relpath)


@pytest.mark.parametrize("relpath, cause", [
    ("../outside.txt", "'..' is not allowed"),
    ("openstack/../../outside.txt", "'..' is not allowed"),
    ("openstack/latest/..", "'..' is not allowed"),
    ("/etc/passwd", "absolute paths are not allowed"),
    ("", "not a usable path"),
    ("a\0b", "not a usable path"),
])
def test_paths_leaving_the_root_are_rejected(drive, relpath, cause):
    for call in (drive.read, drive.exists):
        with pytest.raises(ConfigDriveError) as err:
            call(relpath)
        assert cause in str(err.value)


def test_size_cap_uses_fstat(drive_root, drive):
    _write(drive_root / "big", b"x" * 101)
    _write(drive_root / "fits", b"y" * 100)
    assert drive.read("fits", max_bytes=100) == b"y" * 100
    with pytest.raises(ConfigDriveError) as err:
        drive.read_text("big", max_bytes=100)
    assert str(err.value) == "big: exceeds 100 bytes"
    assert err.value.source == "big"
    _write(drive_root / "huge", b"z" * ((1 << 20) + 1))
    with pytest.raises(ConfigDriveError, match="^huge: exceeds 1048576 bytes$"):
        drive.read("huge")


def test_size_cap_holds_when_fstat_understates_the_size(drive_root, drive, monkeypatch):
    """A file that grows (or lies) after fstat is still cut at max_bytes + 1 bytes."""
    _write(drive_root / "growing", b"g" * 5000)
    real_fstat = os.fstat

    def small_fstat(fd):
        st = list(real_fstat(fd))
        st[6] = 10  # st_size
        return os.stat_result(st)

    reads = []
    real_read = os.read

    def counting_read(fd, n):
        reads.append(n)
        return real_read(fd, n)

    monkeypatch.setattr(os, "fstat", small_fstat)
    monkeypatch.setattr(os, "read", counting_read)
    with pytest.raises(ConfigDriveError, match="^growing: exceeds 100 bytes$"):
        drive.read("growing", max_bytes=100)
    assert sum(reads) == 101


def _blocked(signum, frame):
    raise AssertionError("opening the FIFO blocked")


def test_fifo_and_directory_are_not_regular_files(drive_root, drive):
    os.mkfifo(drive_root / "fifo")  # O_NONBLOCK: opening it must not wait for a writer
    previous = signal.signal(signal.SIGALRM, _blocked)
    signal.alarm(5)  # turn a regression into a failure instead of a hung test run
    try:
        for relpath in ("fifo", "openstack/latest"):
            with pytest.raises(ConfigDriveError) as err:
                drive.read(relpath, optional=True)
            assert str(err.value) == f"{relpath}: not a regular file"
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def test_invalid_utf8_names_the_file_not_the_content(drive_root, drive):
    _write(drive_root / "bad.txt", b"abc\xffdef-hunter2")
    assert drive.read("bad.txt") == b"abc\xffdef-hunter2"
    with pytest.raises(InvalidMetadata) as err:
        drive.read_text("bad.txt")
    assert str(err.value) == "bad.txt: not valid UTF-8 (byte 3)"
    assert err.value.source == "bad.txt"


@pytest.mark.parametrize("content, cause", [
    (b'{"uuid": "hunter2" "x": 1}', "invalid JSON: Expecting ',' delimiter at line 1 column 20"),
    (b'{"admin_pass": "hunter2"}\n]', "invalid JSON: Extra data at line 2 column 1"),
    (b'{"a": NaN, "b": "hunter2"}', "invalid JSON: non-standard JSON constant NaN"),
    (b"[" * 100000, "invalid JSON: nested too deeply"),
])
def test_bad_json_reports_position_not_content(drive_root, drive, content, cause):
    _write(drive_root / "meta.json", content)
    with pytest.raises(InvalidMetadata) as err:
        drive.read_json("meta.json")
    assert str(err.value) == f"meta.json: {cause}"
    assert err.value.source == "meta.json"
    assert "hunter2" not in str(err.value)


def test_reading_after_the_block_is_refused(drive_root):
    with open_config_drive(["config-2"], override=str(drive_root)) as drive:
        pass
    with pytest.raises(ConfigDriveError, match="no longer open"):
        drive.read("openstack/latest/meta_data.json")


# --- choosing the source -----------------------------------------------------------------------

def test_override_directory_is_read_directly(drive_root, caplog):
    caplog.set_level(logging.INFO, logger="cl_metadata")
    with open_config_drive(["config-2"], override=str(drive_root),
                           by_label_dir="/nonexistent") as drive:
        assert drive.source == f"directory {drive_root}"
        assert drive.read("openstack/latest/meta_data.json") == META
    assert f"config drive: using directory {drive_root}" in caplog.messages


@pytest.mark.parametrize("kind", ["missing", "regular file"])
def test_override_that_is_neither_dir_nor_block_device_is_a_usage_error(tmp_path, kind):
    path = tmp_path / "not-a-drive"
    if kind == "regular file":
        path.write_bytes(b"x")
    with pytest.raises(UsageError) as err:
        with open_config_drive(["config-2"], override=str(path)):
            pass
    assert "CL_METADATA_CONFIG_DRIVE" in str(err.value)
    assert str(path) in str(err.value)
    assert err.value.exit_code == 2


def test_context_passes_the_environment_override(drive_root):
    ctx = Context(deadline=Deadline(5), environ={"CL_METADATA_CONFIG_DRIVE": str(drive_root)})
    with ctx.config_drive(["config-2"]) as drive:
        assert drive.read_json("openstack/latest/meta_data.json") == json.loads(META)


@pytest.fixture
def decoy_by_label(tmp_path):
    """A by-label dir whose config-2 points at a regular file: reaching it is an error."""
    by_label = tmp_path / "by-label"
    by_label.mkdir()
    (tmp_path / "decoy").write_bytes(b"")
    os.symlink(tmp_path / "decoy", by_label / "config-2")
    return by_label


def test_premounted_directory_comes_before_labels(drive_root, tmp_path, decoy_by_label):
    premounted = [str(tmp_path / "absent"), str(drive_root)]
    with open_config_drive(["config-2"], premounted=premounted,
                           by_label_dir=str(decoy_by_label)) as drive:
        assert drive.source == f"directory {drive_root}"
        assert drive.read_text("cloudstack/metadata/instance_id.txt") == "i-123\n"


def test_override_comes_before_premounted(drive_root, tmp_path):
    other = tmp_path / "other"
    _write(other / "cloudstack/metadata/instance_id.txt", b"other\n")
    with open_config_drive(["config-2"], override=str(drive_root),
                           premounted=[str(other)]) as drive:
        assert drive.read_text("cloudstack/metadata/instance_id.txt") == "i-123\n"


def test_label_pointing_at_a_non_block_device_is_refused(tmp_path, decoy_by_label, private_tmp):
    with pytest.raises(ConfigDriveError) as err:
        with open_config_drive(["config-2"], by_label_dir=str(decoy_by_label)):
            pass
    assert not isinstance(err.value, ConfigDriveNotFound)
    assert str(err.value) == (f"{decoy_by_label}/config-2: points to {tmp_path}/decoy, "
                              "not a block device")
    assert os.listdir(private_tmp) == []  # nothing was mounted or created


def test_no_labelled_drive_is_not_found(tmp_path):
    by_label = tmp_path / "by-label"
    by_label.mkdir()
    os.symlink(tmp_path / "gone", by_label / "config-2")  # dangling: udev removed the device
    with pytest.raises(ConfigDriveNotFound) as err:
        with open_config_drive(["config-2", "CONFIG-2"], by_label_dir=str(by_label), wait=0):
            pass
    assert err.value.cause == "no drive labelled config-2 or CONFIG-2 (waited 0 s)"
    assert err.value.source == str(by_label)


def test_labels_are_tried_in_order(tmp_path):
    by_label = tmp_path / "by-label"
    by_label.mkdir()
    for name in ("sr0", "vdb"):
        (tmp_path / name).write_bytes(b"")
    os.symlink(tmp_path / "vdb", by_label / "CONFIG-2")
    assert find_labelled_device(["config-2", "CONFIG-2"], by_label_dir=str(by_label)) == (
        str(tmp_path / "vdb"), "CONFIG-2")
    os.symlink("../sr0", by_label / "config-2")
    assert find_labelled_device(["config-2", "CONFIG-2"], by_label_dir=str(by_label)) == (
        str(tmp_path / "sr0"), "config-2")


class FakeClock:
    def __init__(self):
        self.now = 1000.0
        self.sleeps = []
        self.on_sleep = None

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(round(seconds, 6))
        self.now += seconds
        if self.on_sleep:
            self.on_sleep(len(self.sleeps))


def test_polls_until_the_label_appears(tmp_path):
    by_label = tmp_path / "by-label"
    by_label.mkdir()
    (tmp_path / "sr0").write_bytes(b"")
    clock = FakeClock()
    clock.on_sleep = lambda n: n == 3 and os.symlink(tmp_path / "sr0", by_label / "cidata")
    found = find_labelled_device(["cidata", "CIDATA"], by_label_dir=str(by_label), wait=5,
                                 sleep=clock.sleep, clock=clock)
    assert found == (str(tmp_path / "sr0"), "cidata")
    assert clock.sleeps == [0.1, 0.1, 0.1]


def test_wait_is_capped_by_the_deadline(tmp_path):
    clock = FakeClock()
    deadline = Deadline(0.25, clock=clock)
    with pytest.raises(ConfigDriveNotFound) as err:
        find_labelled_device(["config-2"], by_label_dir=str(tmp_path), wait=30,
                             deadline=deadline, sleep=clock.sleep, clock=clock)
    assert clock.sleeps == [0.1, 0.1, 0.05]
    assert err.value.cause == "no drive labelled config-2 (waited 0.25 s)"


# --- mounting a real block device (root only) --------------------------------------------------

def _mounts():
    """(mount point, mount options, fs type, source) from /proc/self/mountinfo."""
    entries = []
    with open("/proc/self/mountinfo") as mountinfo:
        for line in mountinfo:
            fields = line.split()
            sep = fields.index("-")
            entries.append((fields[4], fields[5], fields[sep + 1], fields[sep + 2]))
    return entries


def _mounted_at(path):
    return [entry for entry in _mounts() if entry[0] == str(path)]


needs_loop = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("losetup") or not shutil.which("mkfs.ext4"),
    reason="needs root, losetup and mkfs.ext4")


@pytest.fixture
def loop_drive(tmp_path, private_tmp):
    """An ext4 image labelled config-2 on a loop device, and a by-label dir pointing at it."""
    tree = tmp_path / "tree"
    _build_tree(tree)
    os.symlink("meta_data.json", tree / "openstack/latest/link.json")
    image = tmp_path / "drive.img"
    subprocess.run(["mkfs.ext4", "-q", "-L", "config-2", "-d", str(tree), str(image), "4M"],
                   check=True, capture_output=True)
    attach = subprocess.run(["losetup", "--find", "--show", str(image)],
                            capture_output=True, text=True)
    if attach.returncode != 0:
        pytest.skip(f"cannot attach a loop device: {attach.stderr.strip()}")
    device = attach.stdout.strip()
    by_label = tmp_path / "by-label"
    by_label.mkdir()
    os.symlink(device, by_label / "config-2")
    try:
        yield device, str(by_label)
    finally:
        for mount_point, _, _, source in _mounts():
            if source == device:  # only after a failed test: never leave the device busy
                subprocess.run(["umount", "-l", mount_point], capture_output=True)
        subprocess.run(["losetup", "-d", device], capture_output=True)


@needs_loop
def test_mounts_read_only_reads_and_unmounts(loop_drive, private_tmp, caplog):
    device, by_label = loop_drive
    caplog.set_level(logging.DEBUG, logger="cl_metadata")
    with open_config_drive(["config-2", "CONFIG-2"], by_label_dir=by_label,
                           fs_types=("ext4",)) as drive:
        assert drive.source == f"{device} (label config-2)"
        assert drive.read_json("openstack/latest/meta_data.json") == json.loads(META)
        assert drive.read("openstack/latest/user_data") == USER_DATA
        assert drive.read("ec2/latest/meta-data.json", optional=True) is None
        with pytest.raises(ConfigDriveError, match="symlinks are not followed"):
            drive.read("openstack/latest/link.json")
        [(mount_point, options, fs_type, source)] = [m for m in _mounts() if m[3] == device]
        assert os.path.dirname(mount_point) == str(private_tmp)
        assert os.path.basename(mount_point).startswith("cl-metadata-drive-")
        assert (fs_type, source) == ("ext4", device)
        assert {"ro", "nosuid", "nodev", "noexec"} <= set(options.split(","))
    assert f"config drive: mounted {device} (ext4, label config-2)" in caplog.messages
    assert f"config drive: unmounted {mount_point}" in caplog.messages
    assert [m for m in _mounts() if m[3] == device] == []
    assert os.listdir(private_tmp) == []


@needs_loop
@pytest.mark.parametrize("exc_type", [RuntimeError, KeyboardInterrupt, SystemExit])
def test_exception_inside_the_block_still_unmounts(loop_drive, private_tmp, exc_type):
    device, by_label = loop_drive
    with pytest.raises(exc_type):
        with open_config_drive(["config-2"], by_label_dir=by_label, fs_types=("ext4",)) as drive:
            assert _mounted_at(drive.root)
            raise exc_type("stop")
    assert _mounted_at(drive.root) == []
    assert [m for m in _mounts() if m[3] == device] == []
    assert os.listdir(private_tmp) == []


@needs_loop
def test_fs_types_are_tried_in_order_and_failure_cleans_up(loop_drive, private_tmp):
    device, by_label = loop_drive
    with pytest.raises(ConfigDriveError) as err:
        with open_config_drive(["config-2"], by_label_dir=by_label, fs_types=("iso9660",)):
            pass
    assert not isinstance(err.value, ConfigDriveNotFound)
    assert err.value.source == device
    assert str(err.value).startswith(f"{device}: cannot mount (tried iso9660): ")
    assert len(str(err.value)) > len(f"{device}: cannot mount (tried iso9660): ")
    assert [m for m in _mounts() if m[3] == device] == []
    assert os.listdir(private_tmp) == []

    with open_config_drive(["config-2"], by_label_dir=by_label,
                           fs_types=("iso9660", "vfat", "ext4")) as drive:
        assert drive.read_text("cloudstack/metadata/instance_id.txt") == "i-123\n"
    assert os.listdir(private_tmp) == []


@needs_loop
def test_override_block_device_is_mounted(loop_drive, private_tmp):
    device, _ = loop_drive
    with open_config_drive(["config-2"], override=device, fs_types=("ext4",)) as drive:
        assert drive.source == device
        assert drive.read("openstack/latest/meta_data.json") == META
    assert [m for m in _mounts() if m[3] == device] == []
    assert os.listdir(private_tmp) == []


@needs_loop
def test_failed_umount_falls_back_to_a_logged_lazy_unmount(loop_drive, private_tmp,
                                                           monkeypatch, caplog):
    device, by_label = loop_drive
    real_run = configdrive._run
    calls = []

    def run(args):
        calls.append(list(args))
        if args[0] == "umount" and "-l" not in args:
            return 32, "umount: target is busy."
        return real_run(args)

    monkeypatch.setattr(configdrive, "_run", run)
    caplog.set_level(logging.DEBUG, logger="cl_metadata")
    with open_config_drive(["config-2"], by_label_dir=by_label, fs_types=("ext4",)) as drive:
        mount_point = drive.root
    assert calls[1:] == [["umount", mount_point], ["umount", "-l", mount_point]]
    assert any(r.levelno == logging.WARNING and "lazily unmounted" in r.getMessage()
               for r in caplog.records)
    assert [m for m in _mounts() if m[3] == device] == []
    assert os.listdir(private_tmp) == []

