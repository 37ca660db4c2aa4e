"""``--provider auto``: the platform from the firmware's SMBIOS (DMI) strings, never the network.

Clouds stamp their name into the virtual firmware, and Linux shows it under
``/sys/class/dmi/id`` (``CL_METADATA_DMI_DIR`` stands in for that directory in tests). Each
rule below is a string a platform's firmware is documented or observed to report (the strings
cloud-init's ds-identify and systemd's hwdb match); the first rule that matches names the
provider. A machine no rule matches has no platform: the run succeeds with a notice.

Probing a metadata address instead would let anything on the local network that answers
there pose as the platform, so only these local strings are read. A string with control
characters or longer than ``MAX_LENGTH`` is ignored with a notice (never echoed): no firmware
reports one, and it matches no rule.
"""

from __future__ import annotations

import logging
import os
from typing import Dict, Mapping, NamedTuple, Optional, Tuple

from cl_metadata.log import NOTICE

log = logging.getLogger("cl_metadata")

DMI_DIR = "/sys/class/dmi/id"
DMI_DIR_ENV = "CL_METADATA_DMI_DIR"
MAX_LENGTH = 256  # SMBIOS strings are short; the kernel shows at most a page

FIELDS = ("sys_vendor", "product_name", "product_version", "chassis_asset_tag", "board_vendor",
          "board_name", "bios_vendor", "bios_version")


class Rule(NamedTuple):
    field: str
    match: str  # "is": the whole string; "prefix", "suffix"
    value: str
    provider: str


# First match wins: chassis asset tags are the most specific, then vendors, then names.
RULES: Tuple[Rule, ...] = (
    # Azure's Hyper-V hosts (Azure Stack Hub reports the same tag: set it explicitly there)
    Rule("chassis_asset_tag", "is", "7783-7084-3265-9085-8269-3286-77", "azure"),
    Rule("chassis_asset_tag", "is", "OracleCloud.com", "oraclecloud"),
    Rule("chassis_asset_tag", "is", "OpenTelekomCloud", "openstack"),
    Rule("chassis_asset_tag", "is", "SAP CCloud VM", "openstack"),
    Rule("chassis_asset_tag", "is", "HUAWEICLOUD", "openstack"),
    Rule("sys_vendor", "is", "Amazon EC2", "aws"),  # Nitro instances
    Rule("bios_version", "suffix", ".amazon", "aws"),  # Xen instances ("4.11.amazon")
    Rule("sys_vendor", "is", "Google", "gcp"),
    Rule("product_name", "is", "Google Compute Engine", "gcp"),
    Rule("sys_vendor", "is", "DigitalOcean", "digitalocean"),
    Rule("sys_vendor", "is", "Hetzner", "hetzner"),
    Rule("sys_vendor", "is", "Scaleway", "scaleway"),
    Rule("sys_vendor", "is", "UpCloud", "upcloud"),
    Rule("sys_vendor", "is", "Vultr", "vultr"),
    Rule("sys_vendor", "is", "Linode", "akamai"),
    Rule("sys_vendor", "is", "Akamai", "akamai"),
    Rule("sys_vendor", "is", "Alibaba Cloud", "aliyun"),
    Rule("product_name", "is", "Alibaba Cloud ECS", "aliyun"),
    Rule("product_name", "prefix", "Exoscale", "exoscale"),
    Rule("sys_vendor", "is", "Nutanix", "nutanix"),
    Rule("sys_vendor", "is", "KubeVirt", "kubevirt"),
    Rule("product_name", "is", "OpenStack Nova", "openstack"),
    Rule("product_name", "is", "OpenStack Compute", "openstack"),
    Rule("sys_vendor", "is", "VMware, Inc.", "vmware"),
    # LXD virtual machines (a plain QEMU system otherwise); containers show the host's DMI
    Rule("board_name", "is", "LXD", "lxd"),
)


def _matches(rule: Rule, text: str) -> bool:
    if rule.match == "prefix":
        return text.startswith(rule.value)
    if rule.match == "suffix":
        return text.endswith(rule.value)
    return text == rule.value


def _clean(field: str, raw: bytes) -> Optional[str]:
    """The string, or None (with a notice) when it cannot be a firmware's string."""
    text = raw.decode("utf-8", "replace").strip()
    if len(raw) > MAX_LENGTH or any(ord(c) < 0x20 or c == "\x7f" or c == "\ufffd"
                                    for c in text):
        log.log(NOTICE, "DMI %s ignored: longer than %d bytes or not printable text", field,
                MAX_LENGTH)
        return None
    return text


def read_strings(environ: Mapping[str, str] = os.environ) -> Dict[str, str]:
    """The readable, acceptable DMI strings by field name (missing files are left out)."""
    directory = environ.get(DMI_DIR_ENV) or DMI_DIR
    strings: Dict[str, str] = {}
    for field in FIELDS:
        try:
            with open(os.path.join(directory, field), "rb") as f:
                raw = f.read(MAX_LENGTH + 2)  # + the kernel's newline, + one to see "too long"
        except OSError:
            continue
        if raw.endswith(b"\n"):
            raw = raw[:-1]
        text = _clean(field, raw)
        if text:
            strings[field] = text
    return strings


def identify(environ: Mapping[str, str] = os.environ) -> Optional[str]:
    """The provider id the firmware names, or None."""
    strings = read_strings(environ)
    for rule in RULES:
        text = strings.get(rule.field)
        if text is not None and _matches(rule, text):
            log.debug("platform %s from DMI %s", rule.provider, rule.field)
            return rule.provider
    return None
