"""cl_metadata.sources.labels: config drive labels read from the devices themselves, for the
initrd, where udev has made no /dev/disk/by-label link yet.

The images are real ones made by the tools that make config drives (xorriso, mkfs.vfat,
mkfs.ext4), never mounted. The device listing runs on a sysfs-like tree in a temporary
directory with the images as its device nodes: no disk of this machine is listed or opened.
"""

from __future__ import annotations

import inspect
import os
import shutil
import subprocess

import pytest

from cl_metadata.errors import ConfigDriveNotFound
from cl_metadata.sources import configdrive, labels
from cl_metadata.sources.configdrive import find_labelled_device, open_config_drive
from cl_metadata.sources.deadline import Deadline
from cl_metadata.sources.labels import candidate_devices, probe, read_label

ISO_TOOL = shutil.which("xorriso") or shutil.which("genisoimage")
needs_iso_tool = pytest.mark.skipif(ISO_TOOL is None, reason="needs xorriso or genisoimage")
needs_mkfs_vfat = pytest.mark.skipif(shutil.which("mkfs.vfat") is None,
                                     reason="needs mkfs.vfat (Debian package dosfstools)")
needs_mkfs_ext4 = pytest.mark.skipif(shutil.which("mkfs.ext4") is None,
                                     reason="needs mkfs.ext4 (Debian package e2fsprogs)")
MiB = 1 << 20


def make_iso(path, label):
    tree = path.parent / f"{path.name}.tree"
    (tree / "openstack/latest").mkdir(parents=True)
    (tree / "openstack/latest/meta_data.json").write_text("{}")
    if os.path.basename(ISO_TOOL) == "xorriso":
        argv = [ISO_TOOL, "-as", "mkisofs", "-quiet", "-r", "-J", "-V", label, "-o", str(path),
                str(tree)]
    else:
        argv = [ISO_TOOL, "-quiet", "-r", "-J", "-V", label, "-o", str(path), str(tree)]
    subprocess.run(argv, check=True, capture_output=True, timeout=60)
    return path


def make_vfat(path, label, *, fat=None, kib=4096):
    argv = ["mkfs.vfat", "-C", str(path), str(kib)]
    if label is not None:
        argv[1:1] = ["-n", label]
    if fat is not None:
        argv[1:1] = ["-F", str(fat)]
    subprocess.run(argv, check=True, capture_output=True, timeout=60)
    return path


def blkid_label(path):
    """What util-linux's own prober says, when it is installed: the oracle for the readers."""
    if shutil.which("blkid") is None:
        return None
    result = subprocess.run(["blkid", "-p", "-s", "LABEL", "-o", "value", str(path)],
                            capture_output=True, text=True, timeout=60)
    return result.stdout.strip() or None


# --- reading a label --------------------------------------------------------------------------

@needs_iso_tool
@pytest.mark.parametrize("label", ["config-2", "cidata", "CONTEXT"])
def test_iso9660_volume_identifier_is_the_label(tmp_path, label):
    image = make_iso(tmp_path / "drive.iso", label)
    assert read_label(str(image)) == label
    assert blkid_label(image) in (None, label)


@needs_mkfs_vfat
@pytest.mark.parametrize("fat, kib, label", [(12, 1440, "cidata"), (16, 16384, "CIDATA"),
                                             (32, 66000, "config-2")])
def test_vfat_boot_sector_label_on_fat12_16_and_32(tmp_path, fat, kib, label):
    image = make_vfat(tmp_path / "drive.img", label, fat=fat, kib=kib)
    # FAT32 keeps its label at 0x47, the others at 0x2B: both are where mkfs.vfat -n wrote it
    offset = 0x47 if fat == 32 else 0x2B
    assert image.read_bytes()[offset:offset + 11] == label.encode().ljust(11)
    assert read_label(str(image)) == label
    assert blkid_label(image) in (None, label)


@needs_mkfs_vfat
def test_vfat_without_a_label_has_none(tmp_path):
    image = make_vfat(tmp_path / "drive.img", None)
    assert image.read_bytes()[0x2B:0x36] == b"NO NAME    "
    assert read_label(str(image)) is None


@needs_mkfs_ext4
def test_other_filesystems_are_ignored_whatever_their_label(tmp_path):
    image = tmp_path / "drive.img"
    image.write_bytes(b"")
    os.truncate(image, 4 * MiB)
    subprocess.run(["mkfs.ext4", "-q", "-L", "config-2", str(image)], check=True,
                   capture_output=True, timeout=60)
    assert blkid_label(image) in (None, "config-2")  # it has the label; it is not a drive
    assert read_label(str(image)) is None


@needs_iso_tool
@needs_mkfs_vfat
@pytest.mark.parametrize("kind", ["iso", "vfat"])
def test_truncated_images_are_skipped(tmp_path, kind):
    whole = (make_iso(tmp_path / "whole", "config-2") if kind == "iso"
             else make_vfat(tmp_path / "whole", "config-2"))
    # just short of the structure holding the label: the descriptor, the boot sector
    cut = 32768 + 2047 if kind == "iso" else 511
    short = tmp_path / "short"
    short.write_bytes(whole.read_bytes()[:cut])
    assert read_label(str(whole)) == "config-2"
    assert read_label(str(short)) is None


def _boot_sector(**changes):
    """A FAT16 boot sector labelled CIDATA, with ``changes`` as {offset: bytes}."""
    sector = bytearray(512)
    sector[11:17] = bytes([0x00, 0x02, 0x04, 0x01, 0x00, 0x02])  # 512 B/sector, 4, 1, 2 FATs
    sector[22:24] = b"\x10\x00"
    sector[0x26] = 0x29
    sector[0x2B:0x36] = b"CIDATA     "
    sector[0x36:0x3E] = b"FAT16   "
    sector[510:512] = b"\x55\xaa"
    for offset, value in changes.items():
        position = int(offset[1:], 16)
        sector[position:position + len(value)] = value
    return bytes(sector)


def _pvd(**changes):
    image = bytearray(32768 + 2048)
    image[32768:32774] = b"\x01CD001"
    image[32774] = 1
    image[32768 + 40:32768 + 72] = b"config-2".ljust(32)
    for offset, value in changes.items():
        position = 32768 + int(offset[1:], 16)
        image[position:position + len(value)] = value
    return bytes(image)


@pytest.mark.parametrize("content, label", [
    (_boot_sector(), "CIDATA"),
    (_boot_sector(o1fe=b"\x00\x00"), None),      # no boot signature
    (_boot_sector(o0b=b"\x00\x03"), None),       # 768 bytes a sector
    (_boot_sector(o0d=b"\x03"), None),           # 3 sectors a cluster
    (_boot_sector(o10=b"\x00"), None),           # no FAT
    (_boot_sector(o26=b"\x28"), None),           # an old boot record without a label field
    (_boot_sector(o36=b"NTFS    "), None),
    (_boot_sector(o2b=b"\xff\xfeABCDEFGHI"), None),  # not ASCII: no drive's label
    (_pvd(), "config-2"),
    (_pvd(o0=b"\x02"), None),                    # a supplementary descriptor, not the primary
    (_pvd(o1=b"CD002"), None),
    (_pvd(o6=b"\x02"), None),
    (_pvd(o28=b" " * 32), None),                 # an empty volume identifier
    (b"", None),
    (os.urandom(64 * 1024), None),
    (b"\x55\xaa" * 40000, None),
])
def test_garbage_and_near_misses_have_no_label(tmp_path, content, label):
    image = tmp_path / "image"
    image.write_bytes(content)
    assert read_label(str(image)) == label


@pytest.fixture
def opened(monkeypatch):
    """The paths read_label opened."""
    paths = []
    real_open = os.open

    def recording_open(path, flags, *args, **kwargs):
        paths.append((os.fspath(path), flags))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(labels.os, "open", recording_open)
    return paths


def test_fifos_character_devices_directories_and_links_are_never_opened(tmp_path, opened):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    (tmp_path / "dir").mkdir()
    (tmp_path / "image").write_bytes(_boot_sector())
    os.symlink(tmp_path / "image", tmp_path / "link")  # devtmpfs nodes are never links
    for path in (fifo, "/dev/null", tmp_path / "dir", tmp_path / "link", tmp_path / "absent"):
        assert read_label(str(path)) is None
    assert opened == []
    assert read_label(str(tmp_path / "image")) == "CIDATA"
    # read-only, and an empty CD-ROM drive's open must not wait for media
    assert opened == [(str(tmp_path / "image"), os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC
                       | os.O_NOCTTY | os.O_NOFOLLOW)]


# --- listing and probing devices ------------------------------------------------------------

class FakeBlock:
    """A /sys/class/block-like tree and a /dev-like directory in a temporary directory."""

    def __init__(self, root):
        self.sys = root / "sys-class-block"
        self.dev = root / "dev"
        self.sys.mkdir()
        self.dev.mkdir()

    def add(self, name, size, *, devname=None, uevent=True, node=None):
        entry = self.sys / name
        entry.mkdir()
        (entry / "size").write_text(f"{size // 512}\n" if isinstance(size, int) else size)
        if uevent:
            (entry / "uevent").write_text(f"MAJOR=11\nMINOR=0\nDEVNAME={devname or name}\n"
                                          "DEVTYPE=disk\n")
        if node is not None:
            path = self.dev / (devname or name)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(node)
        return str(self.dev / (devname or name))

    def probe(self, wanted, deadline=None):
        return probe(wanted, deadline, sys_block_dir=str(self.sys), dev_dir=str(self.dev))


@pytest.fixture
def block(tmp_path):
    return FakeBlock(tmp_path)


def test_only_small_disks_with_media_are_candidates(block):
    sr1 = block.add("sr1", 400 * 1024)
    vdb = block.add("vdb", 64 * MiB)
    vdb1 = block.add("vdb1", 1 << 30)  # a partition, at the size limit
    cciss = block.add("cciss!c0d0", 2 * MiB, uevent=False, devname="cciss/c0d0")
    block.add("sr0", 0)                # a CD-ROM drive without media
    block.add("vda", 256 << 30)        # the machine's own disk
    block.add("vdc", (1 << 30) + 512)
    for name in ("loop0", "ram0", "zram0", "dm-0", "md127", "nbd0"):
        block.add(name, MiB)           # not a drive a hypervisor attaches
    block.add("vdd", "not a number\n")
    block.add("vde", MiB, devname="../etc/passwd")
    assert candidate_devices(str(block.sys), str(block.dev)) == [cciss, sr1, vdb, vdb1]


def test_no_sysfs_is_no_candidates(tmp_path):
    assert candidate_devices(str(tmp_path / "absent"), str(tmp_path)) == []


def test_probe_finds_the_first_wanted_label_and_leaves_large_disks_unopened(block, opened):
    block.add("sr0", 0)
    block.add("vda", 256 << 30, node=_pvd())  # would say config-2, if it were read
    block.add("vdb", MiB, node=_boot_sector())
    sr1 = block.add("sr1", 400 * 1024, node=_pvd())
    assert block.probe(["CONFIG-2", "config-2"]) == (sr1, "config-2")
    assert block.probe(["CIDATA", "config-2"]) == (str(block.dev / "vdb"), "CIDATA")
    assert block.probe(["cidata", "CONTEXT"]) is None  # labels compare exactly, as blkid's
    assert {path for path, _ in opened} == {sr1, str(block.dev / "vdb")}


def test_probe_skips_nodes_that_are_missing_or_not_devices(block, opened):
    block.add("sr0", MiB)                              # no node yet: its driver is still probing
    os.mkfifo(block.dev / "sr1")
    block.add("sr1", MiB)
    vdb = block.add("vdb", MiB, node=_pvd())
    assert block.probe(["config-2"]) == (vdb, "config-2")
    assert [path for path, _ in opened] == [vdb]


def test_probe_reads_nothing_once_the_deadline_has_passed(block, opened):
    block.add("sr0", MiB, node=_pvd())
    assert block.probe(["config-2"], Deadline(0)) is None
    assert opened == []


# --- finding a drive: by-label links first, then the devices ------------------------------------

class FakeClock:
    def __init__(self):
        self.now = 1000.0
        self.on_sleep = None

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds
        if self.on_sleep:
            self.on_sleep(self.now - 1000.0)


def test_empty_by_label_dir_and_the_probe_finds_the_image(tmp_path, block):
    by_label = tmp_path / "by-label"
    by_label.mkdir()
    sr0 = block.add("sr0", 400 * 1024, node=_pvd())
    assert find_labelled_device(["config-2", "CONFIG-2"], by_label_dir=str(by_label),
                                probe=block.probe) == (sr0, "config-2")


@needs_iso_tool
def test_the_probe_finds_a_real_iso_image_when_udev_made_no_link(tmp_path, block):
    sr0 = block.add("sr0", 400 * 1024)
    make_iso(block.dev / "sr0", "cidata")
    assert find_labelled_device(["cidata", "CIDATA"], by_label_dir=str(tmp_path / "absent"),
                                probe=block.probe) == (sr0, "cidata")


def test_a_by_label_link_wins_and_the_devices_are_not_read(tmp_path, block):
    by_label = tmp_path / "by-label"
    by_label.mkdir()
    (tmp_path / "vdb").write_bytes(b"")
    os.symlink(tmp_path / "vdb", by_label / "config-2")
    calls = []
    found = find_labelled_device(["config-2"], by_label_dir=str(by_label),
                                 probe=lambda *args: calls.append(args))
    assert found == (str(tmp_path / "vdb"), "config-2") and calls == []


def test_probes_once_a_second_while_waiting_and_finds_a_late_device(tmp_path, block):
    clock = FakeClock()
    times = []

    def recording_probe(wanted, deadline):
        times.append(round(clock() - 1000.0, 1))
        return block.probe(wanted, deadline)

    # the CD-ROM drive's node appears 1.5 s in (its driver was loaded just before)
    clock.on_sleep = lambda t: (t >= 1.5 and not (block.dev / "sr0").exists()
                                and block.add("sr0", MiB, node=_pvd()))
    found = find_labelled_device(["config-2"], by_label_dir=str(tmp_path), wait=5,
                                 sleep=clock.sleep, clock=clock, probe=recording_probe)
    assert found == (str(block.dev / "sr0"), "config-2")
    assert len(times) == 3 and times[0] == 0.0 and 1.0 <= times[1] < 1.5 <= times[2] < 2.5


def test_without_a_drive_the_last_probe_is_at_the_end_of_the_wait(tmp_path, block):
    clock = FakeClock()
    times = []

    def recording_probe(wanted, deadline):
        times.append(round(clock() - 1000.0, 1))
        return None

    with pytest.raises(ConfigDriveNotFound) as err:
        find_labelled_device(["config-2"], by_label_dir=str(tmp_path), wait=2.5,
                             sleep=clock.sleep, clock=clock, probe=recording_probe)
    assert err.value.cause == "no drive labelled config-2 (waited 2.5 s)"
    assert len(times) == 4 and times[0] == 0.0 and times[-1] == 2.5


def test_without_a_wait_the_devices_are_read_once(tmp_path):
    calls = []
    with pytest.raises(ConfigDriveNotFound):
        find_labelled_device(["cidata"], by_label_dir=str(tmp_path),
                             probe=lambda *args: calls.append(args))
    assert calls == [(["cidata"], None)]


def test_config_drives_are_looked_for_on_the_devices_by_default():
    # the agent's own runs (Context.config_drive) probe; find_labelled_device alone does not
    default = inspect.signature(open_config_drive).parameters["probe"].default
    assert default is labels.probe
    assert inspect.signature(find_labelled_device).parameters["probe"].default is None
    assert configdrive.PROBE_INTERVAL == 1.0
