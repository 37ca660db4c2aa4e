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

# Container Linux OEM ids that never had a provider of the same name. Ids with a provider of
# their own (ec2, gce, azure, openstack, packet, …) are never aliased: the id picks the era of
# the attribute names (ec2 → COREOS_EC2_*, aws → AFTERBURN_AWS_*).
OEM_ALIASES: Mapping[str, str] = {
    "cloudstack": "cloudstack-configdrive",  # what ct's drop-in selected for the OEM
    "brightbox": "openstack-metadata",  # an EC2-compatible metadata service
    "rackspace": "openstack",  # OpenStack config drive
    "rackspace-onmetal": "openstack",
}


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
