"""Filesystem labels read straight from block devices, for when udev has not named them yet.

Config drives are normally found through udev's ``/dev/disk/by-label`` links. In the initrd the
agent runs before udev is triggered, so no link exists yet, although devtmpfs already has a node
for every device whose driver is loaded. This module lists those devices from sysfs and reads
the label of the two filesystems config drives use, the way ``blkid -L`` would:

- iso9660: the Primary Volume Descriptor at byte 32768 (type 1, ``CD001``), its volume
  identifier (bytes 40-71, space padded);
- vfat: the boot sector's volume label (byte 0x2B on FAT12/16, 0x47 on FAT32; ``NO NAME``
  means none).

It is pure Python rather than a ``blkid`` call: no extra program in the initrd, no process per
device, and reads we bound ourselves. Devices are opened read-only and with ``O_NONBLOCK`` (a
CD-ROM drive without media must not wait for one), 2.5 KiB is read from each (the boot
sector and the descriptor at 32 KiB), and nothing is ever written. Devices a hypervisor never presents as a drive (loop, RAM, device
mapper, MD, NBD) and devices without media or larger than a config drive ever is are skipped
from their sysfs entries alone, without being opened.
"""

from __future__ import annotations

import logging
import os
import stat
import struct
from typing import List, Optional, Sequence, Tuple

from cl_metadata.sources.deadline import Deadline

log = logging.getLogger("cl_metadata")

SYS_CLASS_BLOCK = "/sys/class/block"
DEV_DIR = "/dev"
# Config drives are a few MiB (OpenStack's vfat drive is 64 MiB); the machine's own disks are
# far larger and are left alone.
MAX_DRIVE_BYTES = 1 << 30
# kernel name prefixes of block devices that are not disks a hypervisor attaches
NOT_DRIVES = ("loop", "ram", "zram", "dm-", "md", "nbd")

SECTOR = 512  # the unit of /sys/class/block/*/size, whatever the device's own sector size
ISO_PVD_OFFSET = 32768
ISO_PVD_SIZE = 2048
FAT_BOOT_SECTOR_SIZE = 512
FAT_NO_LABEL = "NO NAME"

_OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY | os.O_NOFOLLOW


def read_label(path: str) -> Optional[str]:
    """The iso9660 or vfat label of the block device or image file at ``path``.

    ``None`` when it is neither filesystem, has no label, is too short, cannot be read, or is
    not a block device or regular file (a FIFO, a character device or a directory is never
    opened).
    """
    try:
        if not _is_device_or_image(os.lstat(path).st_mode):
            return None
        fd = os.open(path, _OPEN_FLAGS)
    except OSError as exc:
        log.debug("label probe: cannot open %s: %s", path, exc.strerror)
        return None
    try:
        if not _is_device_or_image(os.fstat(fd).st_mode):  # replaced since lstat()
            return None
        return (_iso9660_label(_pread(fd, ISO_PVD_SIZE, ISO_PVD_OFFSET))
                or _vfat_label(_pread(fd, FAT_BOOT_SECTOR_SIZE, 0)))
    except OSError as exc:  # a drive without media, a read error
        log.debug("label probe: cannot read %s: %s", path, exc.strerror)
        return None
    finally:
        os.close(fd)


def _is_device_or_image(mode: int) -> bool:
    return stat.S_ISBLK(mode) or stat.S_ISREG(mode)


def _pread(fd: int, size: int, offset: int) -> bytes:
    data = os.pread(fd, size, offset)
    return data if len(data) == size else b""  # short: a truncated image or a tiny device


def _iso9660_label(pvd: bytes) -> Optional[str]:
    if len(pvd) != ISO_PVD_SIZE or pvd[0] != 1 or pvd[1:6] != b"CD001" or pvd[6] != 1:
        return None
    return _text(pvd[40:72])


def _vfat_label(boot: bytes) -> Optional[str]:
    if len(boot) != FAT_BOOT_SECTOR_SIZE or boot[510:512] != b"\x55\xaa":
        return None
    bytes_per_sector, sectors_per_cluster, reserved, fats = struct.unpack_from("<HBHB", boot, 11)
    if (bytes_per_sector not in (512, 1024, 2048, 4096) or sectors_per_cluster == 0
            or sectors_per_cluster & (sectors_per_cluster - 1) or reserved == 0
            or fats not in (1, 2)):
        return None
    fat16_size = struct.unpack_from("<H", boot, 22)[0]
    # FAT32 has no 16-bit FAT size; its extended boot record sits 28 bytes further on
    ext = 0x40 if fat16_size == 0 else 0x24
    signature, label, fs_type = boot[ext + 2], boot[ext + 7:ext + 18], boot[ext + 18:ext + 26]
    if signature != 0x29 or not fs_type.startswith(b"FAT"):
        return None  # 0x28: an old record without a label field
    text = _text(label)
    return None if text == FAT_NO_LABEL else text


def _text(field: bytes) -> Optional[str]:
    try:
        text = field.rstrip(b" \0").decode("ascii")
    except UnicodeDecodeError:
        return None  # not a label any config drive carries
    return text or None


def candidate_devices(sys_block_dir: str = SYS_CLASS_BLOCK, dev_dir: str = DEV_DIR) -> List[str]:
    """Device node paths worth probing, in kernel name order, judged from sysfs alone."""
    try:
        names = sorted(os.listdir(sys_block_dir))
    except OSError:
        return []
    devices = []
    for name in names:
        if name.startswith(NOT_DRIVES):
            continue
        entry = os.path.join(sys_block_dir, name)
        try:
            with open(os.path.join(entry, "size"), encoding="ascii") as f:
                size = int(f.read().strip()) * SECTOR
        except (OSError, ValueError):
            continue
        if not 0 < size <= MAX_DRIVE_BYTES:  # 0: no media (an empty CD-ROM drive)
            continue
        devname = _devname(entry) or name.replace("!", "/")  # cciss!c0d0 is /dev/cciss/c0d0
        if devname.startswith("/") or ".." in devname.split("/"):
            continue
        devices.append(os.path.join(dev_dir, devname))
    return devices


def _devname(entry: str) -> Optional[str]:
    """DEVNAME from the device's uevent file: where devtmpfs put its node, under /dev."""
    try:
        with open(os.path.join(entry, "uevent"), encoding="utf-8") as f:
            for line in f:
                key, _, value = line.strip().partition("=")
                if key == "DEVNAME" and value:
                    return value
    except (OSError, UnicodeDecodeError):
        pass
    return None


def probe(labels: Sequence[str], deadline: Optional[Deadline] = None, *,
          sys_block_dir: str = SYS_CLASS_BLOCK,
          dev_dir: str = DEV_DIR) -> Optional[Tuple[str, str]]:
    """(device path, label) for the first of ``labels`` (in their order) some device carries.

    Stops reading devices when ``deadline`` has expired. Labels compare exactly, as udev's
    links and ``blkid -L`` do.
    """
    found = {}
    for device in candidate_devices(sys_block_dir, dev_dir):
        if deadline is not None and deadline.expired():
            log.debug("label probe: deadline reached before %s", device)
            break
        label = read_label(device)
        if label is not None:
            found.setdefault(label, device)
    for label in labels:
        if label in found:
            return found[label], label
    return None
