"""The platform id on the kernel command line, and the aliases of old OEM ids.

Keys are read in order ``ignition.platform.id``, ``flatcar.oem.id``, ``coreos.oem.id``; for
each key the first occurrence with a non-empty value counts (Afterburn's rule), and the first
key that has one wins.
"""

from __future__ import annotations

import os
from typing import Dict, List, Mapping, Optional, Tuple

from cl_metadata.errors import UsageError

PROC_CMDLINE = "/proc/cmdline"
CMDLINE_ENV = "CL_METADATA_CMDLINE"
PLATFORM_KEYS = ("ignition.platform.id", "flatcar.oem.id", "coreos.oem.id")

# Every platform id a Flatcar, Container Linux or Fedora CoreOS kernel command line can carry
# that is not itself a provider id, and its one outcome: the provider that reads that platform,
# or None for "this platform has no metadata service" (the run succeeds with a notice and
# writes nothing). Ids with a provider of their own (ec2, gce, azure, openstack, packet, qemu, …)
# are never listed: the id picks the era of the attribute names (ec2 → COREOS_EC2_*,
# aws → AFTERBURN_AWS_*). README "Old OEM ids on the kernel command line" is this table.
KERNEL_IDS: Mapping[str, Optional[str]] = {
    "brightbox": "openstack-metadata",  # OpenStack-based: its EC2-compatible metadata service
    "rackspace": "openstack",  # OpenStack config drive
    "rackspace-onmetal": "openstack",
    "metal": None,  # bare metal: Ignition's config comes from a URL, nothing serves metadata
    "pxe": None,  # Flatcar's PXE images (Flatcar maps it to Ignition's metal)
    "virtualbox": None,  # guest properties carry only Ignition's config
    "vagrant": None,  # Container Linux's Vagrant OEM configured the box itself
    "hyperv": None,  # Hyper-V KVP carries no instance metadata Afterburn or Ignition reads
    "applehv": None,  # Apple Hypervisor: Ignition's config over vsock, nothing else
    "zvm": None,  # z/VM reader device: Ignition's config only
    "cloudsigma": None,  # Container Linux OEM with its own agent; no Afterburn provider
    "interoute": None,
    "niftycloud": None,
    "ionoscloud": None,  # Ignition reads user-data only; no Afterburn provider
    "none": None,  # an explicit "no platform" for drop-ins and the settings file
}
# the ids above that stand for a provider
OEM_ALIASES: Mapping[str, str] = {oem: provider for oem, provider in KERNEL_IDS.items()
                                  if provider is not None}
# the ids above whose platform has no metadata service
NO_METADATA_IDS = frozenset(oem for oem, provider in KERNEL_IDS.items() if provider is None)


def tokenize(text: str) -> List[Tuple[str, str]]:
    """Split a kernel command line into (key, value) pairs.

    Words are separated by whitespace; double quotes group a word (the kernel's own rule) and
    are removed. A word without ``=`` has an empty value.
    """
    pairs: List[Tuple[str, str]] = []
    word: List[str] = []
    quoted = False
    in_word = False
    for ch in text:
        if ch == '"':
            quoted = not quoted
            in_word = True
        elif ch.isspace() and not quoted:
            if in_word:
                pairs.append(_split("".join(word)))
            word, in_word = [], False
        else:
            word.append(ch)
            in_word = True
    if in_word:
        pairs.append(_split("".join(word)))
    return pairs


def _split(word: str) -> Tuple[str, str]:
    key, _, value = word.partition("=")
    return key, value


def parse(text: str) -> Dict[str, str]:
    """Each key mapped to its first non-empty (whitespace-trimmed) value."""
    values: Dict[str, str] = {}
    for key, value in tokenize(text):
        value = value.strip()
        if value and key not in values:
            values[key] = value
    return values


def platform_id(values: Mapping[str, str]) -> Optional[Tuple[str, str]]:
    """(key, id) of the first platform key present, or None."""
    for key in PLATFORM_KEYS:
        if key in values:
            return key, values[key]
    return None


def read(environ: Mapping[str, str] = os.environ) -> Dict[str, str]:
    """Parse /proc/cmdline, or the file named by ``CL_METADATA_CMDLINE``."""
    path = environ.get(CMDLINE_ENV) or PROC_CMDLINE
    try:
        with open(path, "rb") as f:
            raw = f.read(1 << 16)
    except OSError as err:
        raise UsageError(f"cannot read kernel command line {path}: {err.strerror}") from None
    return parse(raw.decode("utf-8", "replace"))
