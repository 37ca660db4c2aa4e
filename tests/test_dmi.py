"""``--provider auto``: the platform from fake /sys/class/dmi/id directories, one per cloud."""

from __future__ import annotations

import logging

import pytest

from cl_metadata import dmi, registry

# What each cloud's firmware reports (the fields a rule reads; the rest as a typical KVM guest)
CLOUDS = {
    "aws-nitro": ({"sys_vendor": "Amazon EC2", "product_name": "m5.large",
                   "chassis_asset_tag": "Amazon EC2"}, "aws"),
    "aws-xen": ({"sys_vendor": "Xen", "product_name": "HVM domU",
                 "bios_version": "4.11.amazon"}, "aws"),
    "azure": ({"sys_vendor": "Microsoft Corporation", "product_name": "Virtual Machine",
               "chassis_asset_tag": "7783-7084-3265-9085-8269-3286-77"}, "azure"),
    "gcp": ({"sys_vendor": "Google", "product_name": "Google Compute Engine"}, "gcp"),
    "digitalocean": ({"sys_vendor": "DigitalOcean", "product_name": "Droplet"}, "digitalocean"),
    "hetzner": ({"sys_vendor": "Hetzner", "product_name": "vServer"}, "hetzner"),
    "oraclecloud": ({"sys_vendor": "QEMU", "product_name": "Standard PC (i440FX + PIIX, 1996)",
                     "chassis_asset_tag": "OracleCloud.com"}, "oraclecloud"),
    "aliyun": ({"sys_vendor": "Alibaba Cloud", "product_name": "Alibaba Cloud ECS"}, "aliyun"),
    "exoscale": ({"sys_vendor": "Exoscale", "product_name": "Exoscale Compute Platform"},
                 "exoscale"),
    "scaleway": ({"sys_vendor": "Scaleway", "product_name": "SCW-DEV1-S"}, "scaleway"),
    "upcloud": ({"sys_vendor": "UpCloud", "product_name": "Cloud Server"}, "upcloud"),
    "vultr": ({"sys_vendor": "Vultr", "product_name": "VC2"}, "vultr"),
    "linode": ({"sys_vendor": "Linode", "product_name": "Compute Instance"}, "akamai"),
    "akamai": ({"sys_vendor": "Akamai", "product_name": "Compute Instance"}, "akamai"),
    "nutanix": ({"sys_vendor": "Nutanix", "product_name": "AHV"}, "nutanix"),
    "kubevirt": ({"sys_vendor": "KubeVirt", "product_name": "None"}, "kubevirt"),
    "openstack-nova": ({"sys_vendor": "OpenStack Foundation", "product_name": "OpenStack Nova"},
                       "openstack"),
    "open-telekom-cloud": ({"sys_vendor": "QEMU", "product_name": "Standard PC",
                            "chassis_asset_tag": "OpenTelekomCloud"}, "openstack"),
    "vmware": ({"sys_vendor": "VMware, Inc.", "product_name": "VMware7,1"}, "vmware"),
    "lxd-vm": ({"sys_vendor": "QEMU", "product_name": "Standard PC (Q35 + ICH9, 2009)",
                "board_vendor": "Canonical Ltd.", "board_name": "LXD"}, "lxd"),
}
UNRECOGNISED = {
    "plain-qemu": {"sys_vendor": "QEMU", "product_name": "Standard PC (Q35 + ICH9, 2009)",
                   "bios_vendor": "SeaBIOS", "bios_version": "1.16.2-debian-1.16.2-1"},
    "laptop": {"sys_vendor": "LENOVO", "product_name": "21CB", "board_vendor": "LENOVO"},
    "almost-google": {"sys_vendor": "Googlex", "product_name": "Google Compute Engine 2"},
    "empty": {},
}


def dmi_dir(tmp_path, strings):
    directory = tmp_path / "dmi-id"
    directory.mkdir()
    for field, value in strings.items():
        # the kernel ends each string with a newline
        (directory / field).write_bytes(value.encode() + b"\n"
                                        if isinstance(value, str) else value)
    return {dmi.DMI_DIR_ENV: str(directory)}


@pytest.mark.parametrize("cloud", sorted(CLOUDS))
def test_each_cloud_is_identified(tmp_path, cloud):
    strings, provider = CLOUDS[cloud]
    assert dmi.identify(dmi_dir(tmp_path, strings)) == provider


@pytest.mark.parametrize("machine", sorted(UNRECOGNISED))
def test_other_machines_have_no_platform(tmp_path, machine):
    assert dmi.identify(dmi_dir(tmp_path, UNRECOGNISED[machine])) is None


def test_every_rule_names_a_builtin_provider_and_a_field_that_is_read():
    for rule in dmi.RULES:
        assert rule.provider in registry.BUILTIN, rule
        assert rule.field in dmi.FIELDS and rule.match in ("is", "prefix", "suffix"), rule


@pytest.mark.parametrize("value", [
    b"Amazon EC2\x1b[2J",  # a control character
    b"Amazon EC2\nGoogle",  # a second line
    b"Amazon EC2" + b" " * 300,  # absurd length, even though it strips to a match
    b"Amazon \xff EC2",  # not text
])
def test_a_hostile_string_is_unrecognised_with_a_notice(tmp_path, caplog, value):
    environ = dmi_dir(tmp_path, {"sys_vendor": value, "product_name": "HVM domU"})
    logger = logging.getLogger("cl_metadata")
    logger.propagate, saved = True, logger.propagate
    try:
        with caplog.at_level(logging.DEBUG, logger="cl_metadata"):
            assert dmi.identify(environ) is None
    finally:
        logger.propagate = saved
    notices = [r for r in caplog.records if r.levelno == 25]
    assert [r.getMessage() for r in notices] == [
        "DMI sys_vendor ignored: longer than 256 bytes or not printable text"]
    assert "EC2" not in caplog.text  # the string itself is never logged


def test_a_hostile_field_does_not_hide_a_good_one(tmp_path):
    environ = dmi_dir(tmp_path, {"sys_vendor": b"\x00\x01",
                                 "product_name": "Google Compute Engine"})
    assert dmi.identify(environ) == "gcp"


def test_missing_directory_is_no_platform(tmp_path):
    assert dmi.identify({dmi.DMI_DIR_ENV: str(tmp_path / "absent")}) is None
