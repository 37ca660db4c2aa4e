"""VMware: network configuration from guestinfo (docs/protocols.md), as Afterburn, and user-data.

guestinfo is read with open-vm-tools' ``vmware-rpctool "info-get <key>"``, else ``vmtoolsd
--cmd "info-get <key>"`` (no hypervisor backdoor access from Python); with neither installed
asking for network units is an error that says so. Keys:

- ``guestinfo.metadata``: YAML (or JSON) whose top-level ``network`` key is netplan-shaped
  network config (v2 ``ethernets``; v1 is read too) → networkd units, priority 10; every
  other key is ignored. Not set → no units.
- ``guestinfo.metadata.encoding``: ``base64``/``b64``, ``gzip+base64``/``gz+b64``, or empty /
  not set for plain text.
- ``guestinfo.ignition.config.data`` with ``guestinfo.ignition.config.data.encoding`` (empty,
  ``base64``/``b64``, ``gzip``/``gz``, ``gzip+base64``/``gz+b64`` and the other spellings
  Ignition takes): ``--user-data``, as Ignition reads it (not from the OVF environment).

VMware limits a guestinfo value to 64 KiB; a tool answer over 128 KiB, or a decoded document
over 1 MiB, is refused. Afterburn's other key, ``guestinfo.afterburn.initrd.network-kargs``,
feeds an initrd output this agent does not have.
"""

from __future__ import annotations

import base64
import binascii
import os
import shutil
import subprocess
import zlib
from typing import Optional

from cl_metadata.errors import InvalidMetadata, MetadataError
from cl_metadata.parsing.encodings import is_gzip, strict_base64
from cl_metadata.sources import nocloud_format as nocloud
from cl_metadata.parsing.fields import Fields
from cl_metadata.providers.base import NETWORK_UNITS, USER_DATA, Provider

TOOLS = (("vmware-rpctool",), ("vmtoolsd", "--cmd"))
METADATA = "guestinfo.metadata"
ENCODING = "guestinfo.metadata.encoding"
ENCODINGS = {"": "plain", "base64": "base64", "b64": "base64", "gzip+base64": "gzip",
             "gz+b64": "gzip"}
MAX_ANSWER = 128 * 1024
MAX_DOCUMENT = 1 << 20
TOOL_TIMEOUT = 10.0
NO_VALUE = "No value found"  # the tools' answer for a key that is not set
UNIT_PRIORITY = 10
# User-data: (value key, encoding key) pairs, the first one set wins. Ignition's keys; a
# cloud-init style guestinfo.userdata / guestinfo.userdata.encoding pair goes after them.
USER_DATA_KEYS = (("guestinfo.ignition.config.data", "guestinfo.ignition.config.data.encoding"),)
# Ignition's encoding names → what to undo here (a gzip stream is inflated by the writer)
USER_DATA_ENCODINGS = {"": "raw", "base64": "base64", "b64": "base64", "gz": "gzip",
                       "gzip": "gzip", "gz+base64": "gzip+base64", "gzip+base64": "gzip+base64",
                       "gz+b64": "gzip+base64", "gzip+b64": "gzip+base64"}


class VmwareProvider(Provider):
    id = "vmware"
    description = "VMware guestinfo (network units, user-data)"
    source = "local"
    features = frozenset({NETWORK_UNITS, USER_DATA})
    user_data_source = "guestinfo " + USER_DATA_KEYS[0][0]
    user_data_encoding = "what " + USER_DATA_KEYS[0][1] + " names"

    def network(self):
        raw = guestinfo(METADATA)
        if raw is None:
            return [], []
        document = nocloud.parse_meta_data(decode(raw, guestinfo(ENCODING)), METADATA)
        fields = Fields(METADATA)
        network = fields.mapping(document.get("network"), "network")
        if network and "version" not in network:  # netplan itself has no version key
            network = {"version": 2, **network}
        return nocloud.network_interfaces(network, fields, "network.", UNIT_PRIORITY)

    def user_data(self) -> Optional[bytes]:
        for key, encoding_key in USER_DATA_KEYS:
            raw = guestinfo(key)
            if raw is not None:
                return decode_user_data(raw, guestinfo(encoding_key), key, encoding_key)
        return None


def guestinfo(key: str) -> Optional[bytes]:
    """The value of ``key``, ``None`` when it is not set."""
    for tool, *options in TOOLS:
        path = shutil.which(tool)
        if path:
            break
    else:
        raise MetadataError("neither vmware-rpctool nor vmtoolsd is installed "
                            "(open-vm-tools); cannot read guestinfo", source=key)
    try:
        done = subprocess.run([path, *options, f"info-get {key}"], stdin=subprocess.DEVNULL,
                              capture_output=True, timeout=TOOL_TIMEOUT, check=False,
                              env={"PATH": os.environ.get("PATH", os.defpath), "LC_ALL": "C"})
    except subprocess.TimeoutExpired:
        raise MetadataError(f"{tool} timed out after {TOOL_TIMEOUT:g} s", source=key) from None
    except OSError as exc:
        raise MetadataError(f"cannot run {tool}: {exc.strerror}", source=key) from None
    if done.returncode != 0:
        detail = done.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or [""]
        if NO_VALUE in detail[0] or NO_VALUE.encode() in done.stdout:
            return None
        raise MetadataError(f"{tool} failed (exit status {done.returncode}): "
                            f"{detail[0][:200]!r}", source=key)
    if len(done.stdout) > MAX_ANSWER:
        raise InvalidMetadata(f"exceeds {MAX_ANSWER} bytes", source=key)
    return done.stdout[:-1] if done.stdout.endswith(b"\n") else done.stdout  # the tool adds one


def decode_user_data(raw: bytes, encoding: Optional[bytes], key: str, encoding_key: str) -> bytes:
    """User-data under ``key`` with the transport encoding ``encoding_key`` names undone."""
    name = (encoding or b"").decode("ascii", "replace").strip().lower()
    if name not in USER_DATA_ENCODINGS:
        raise InvalidMetadata("not one of " + ", ".join(e for e in USER_DATA_ENCODINGS if e) +
                              " or empty", source=encoding_key)
    kind = USER_DATA_ENCODINGS[name]
    data = strict_base64(raw, key) if kind in ("base64", "gzip+base64") else raw
    if kind.startswith("gzip") and not is_gzip(data):
        raise InvalidMetadata(f"{encoding_key} says gzip, but the data is not gzip-compressed",
                              source=key)
    return data


def decode(raw: bytes, encoding: Optional[bytes]) -> str:
    """``guestinfo.metadata`` as text, after the encoding ``guestinfo.metadata.encoding`` names."""
    name = (encoding or b"").decode("ascii", "replace").strip().lower()
    if name not in ENCODINGS:
        raise InvalidMetadata("not one of " + ", ".join(e for e in ENCODINGS if e) +
                              " or empty", source=ENCODING)
    data = raw
    if ENCODINGS[name] != "plain":
        try:
            data = base64.b64decode(b"".join(raw.split()), validate=True)
        except (binascii.Error, ValueError):
            raise InvalidMetadata("not valid base64", source=METADATA) from None
    if ENCODINGS[name] == "gzip":
        inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)  # gzip framing only
        try:
            data = inflater.decompress(data, MAX_DOCUMENT + 1)
        except zlib.error:
            raise InvalidMetadata("not valid gzip data", source=METADATA) from None
        if len(data) > MAX_DOCUMENT:
            raise InvalidMetadata(f"decompresses to more than {MAX_DOCUMENT} bytes",
                                  source=METADATA)
        if not inflater.eof:
            raise InvalidMetadata("gzip data is truncated", source=METADATA)
    if len(data) > MAX_DOCUMENT:
        raise InvalidMetadata(f"exceeds {MAX_DOCUMENT} bytes", source=METADATA)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise InvalidMetadata(f"not valid UTF-8 (byte {err.start})", source=METADATA) from None
