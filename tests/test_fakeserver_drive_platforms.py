"""The fake-server tool for the drive and local platforms: no HTTP routes, each platform's drive
written as a directory and, where the tools exist, as the image format the platform uses."""

import os
import shutil
import subprocess

import pytest

from cl_metadata.fakeserver.cli import main as cli_main
from cl_metadata.fakeserver.instance import load_instance
from cl_metadata.fakeserver.render import renderer_for

SAMPLE = load_instance(None)
LABELS = {"cloudstack-configdrive": "config-2", "ibmcloud": "cidata",
          "ibmcloud-classic": "config-2", "kubevirt": "config-2", "nocloud": "cidata",
          "powervs": "config-2", "proxmoxve": "cidata", "qemu": "fw_cfg", "vmware": "guestinfo"}
# the image format each platform really uses (docs/protocols.md)
IMAGES = [("nocloud", "vfat"), ("ibmcloud-classic", "vfat"), ("ibmcloud", "iso"),
          ("kubevirt", "iso"), ("powervs", "iso"), ("cloudstack-configdrive", "iso"),
          ("proxmoxve", "iso")]
TOOLS = {"vfat": ("mkfs.vfat", "mcopy", "mtype", "blkid"), "iso": ("xorriso", "blkid")}


def tool(name):
    return shutil.which(name, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")


def read_from_image(fmt, image, relpath, tmp_path):
    if fmt == "vfat":
        return subprocess.run([tool("mtype"), "-i", str(image), f"::/{relpath}"],
                              capture_output=True, check=True).stdout
    target = tmp_path / ("extracted-" + relpath.replace("/", "_"))
    subprocess.run([tool("xorriso"), "-osirrox", "on", "-indev", str(image), "-extract",
                    f"/{relpath}", str(target)], capture_output=True, check=True)
    return target.read_bytes()


@pytest.mark.parametrize("platform", sorted(LABELS))
def test_no_http_and_a_labelled_drive(platform):
    renderer = renderer_for(platform)
    assert renderer.routes(SAMPLE) == []
    assert renderer.DRIVE_LABEL == LABELS[platform]


@pytest.mark.parametrize("platform", sorted(LABELS))
def test_cli_writes_the_drive_directory(tmp_path, platform, capsys):
    dest = tmp_path / "drive"
    assert cli_main(["--platform", platform, "--write-drive", str(dest)]) == 0
    expected = renderer_for(platform).drive_files(SAMPLE)
    written = {str(path.relative_to(dest)): path.read_bytes()
               for path in dest.rglob("*") if path.is_file()}
    assert written == expected
    assert capsys.readouterr().out == f"{dest}\n"


@pytest.mark.parametrize("platform, fmt", IMAGES)
def test_cli_writes_the_platform_image(tmp_path, platform, fmt):
    missing = [name for name in TOOLS[fmt] if tool(name) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)}")
    image = tmp_path / f"drive.{fmt}"
    assert cli_main(["--platform", platform, "--write-drive", str(image),
                     "--drive-format", fmt]) == 0
    label = subprocess.run([tool("blkid"), "-o", "value", "-s", "LABEL", str(image)],
                           capture_output=True, text=True, check=True).stdout.strip()
    assert label == LABELS[platform]
    for relpath, content in renderer_for(platform).drive_files(SAMPLE).items():
        assert read_from_image(fmt, image, relpath, tmp_path) == content, relpath
