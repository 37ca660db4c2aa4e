"""VMware: guestinfo, as cloud-init's VMware data source defines it (docs/protocols.md).

guestinfo is read with open-vm-tools' ``vmware-rpctool "info-get <key>"``, else ``vmtoolsd
--cmd "info-get <key>"`` (no hypervisor backdoor access from Python); with neither installed
every output but the attributes of a machine without keys is an error that says so. A value
that is empty, or cloud-init's ``---`` (what its ``redact`` leaves behind), is not set. Keys:

- ``guestinfo.metadata``: a JSON or YAML mapping (JSON when it starts with ``{``, as
  cloud-init tries JSON first); not set means an empty one. Its keys:

  - ``instance-id`` → ``VMWARE_INSTANCE_ID`` (cloud-init falls back to the DMI product UUID;
    this agent writes nothing then);
  - ``local-hostname`` → ``VMWARE_HOSTNAME`` and the hostname;
  - SSH keys: the first of ``public-keys-data``, ``public_keys_data``, ``public-keys``,
    ``public_keys`` present, as a string of authorized_keys lines, a list of them, or a map
    of names to either (sorted by name);
  - ``network``: cloud-init network config v1 or v2 (v2 without ``version`` is read as v2,
    as netplan writes it) → network units, priority 10; or a string holding such a document,
    in the encoding the top-level ``network.encoding`` names (``base64``/``b64``,
    ``gzip+base64``/``gz+b64``, else plain).

  Every other key is ignored.
- ``guestinfo.metadata.encoding``: ``base64``/``b64``, ``gzip+base64``/``gz+b64``, or empty /
  not set for plain text; any other value is an error, never a guess.
- ``--user-data``: Ignition's ``guestinfo.ignition.config.data`` with
  ``guestinfo.ignition.config.data.encoding`` (empty, ``base64``/``b64``, ``gzip``/``gz``,
  ``gzip+base64``/``gz+b64`` and the other spellings Ignition takes), as Ignition reads it;
  when it is not set, cloud-init's ``guestinfo.userdata`` with ``guestinfo.userdata.encoding``
  (empty, ``base64``/``b64``, ``gzip+base64``/``gz+b64``). The OVF environment is not read.
- ``guestinfo.afterburn.initrd.network-kargs``: dracut network arguments for the initrd,
  Afterburn's key: when set, ``rd-network-kargs`` writes them as given (printable ASCII, one
  line, at most 4096 bytes) instead of the arguments of ``network`` or the default value.

VMware limits a guestinfo value to 64 KiB; a tool answer over 128 KiB, or a decoded document
(or ``network`` string) over 1 MiB, is refused, and gzip is inflated only that far. Errors name
the guestinfo key (and the field inside the document), never a value.
"""

from __future__ import annotations

import base64
import binascii
import os
import shutil
import subprocess
import zlib
from typing import Any, Dict, List, Optional, Tuple

from cl_metadata.errors import InvalidMetadata, MetadataError
from cl_metadata.parsing import documents, formats
from cl_metadata.parsing.encodings import is_gzip, strict_base64
from cl_metadata.sources import nocloud_format as nocloud
from cl_metadata.parsing.fields import Fields
from cl_metadata.providers.base import (ATTRIBUTES, HOSTNAME, NETWORK_UNITS, SSH_KEYS, USER_DATA,
                                        Provider)

TOOLS = (("vmware-rpctool",), ("vmtoolsd", "--cmd"))
METADATA = "guestinfo.metadata"
ENCODING = "guestinfo.metadata.encoding"
ENCODINGS = {"": "plain", "base64": "base64", "b64": "base64", "gzip+base64": "gzip",
             "gz+b64": "gzip"}
MAX_ANSWER = 128 * 1024
MAX_DOCUMENT = 1 << 20
TOOL_TIMEOUT = 10.0
NO_VALUE = "No value found"  # the tools' answer for a key that is not set
REDACTED = b"---"  # cloud-init's "cleared" value: valid YAML for an empty document
UNIT_PRIORITY = 10
ATTRIBUTE_FIELDS = {"VMWARE_INSTANCE_ID": "instance-id", "VMWARE_HOSTNAME": "local-hostname"}
KEY_FIELDS = ("public-keys-data", "public_keys_data", "public-keys", "public_keys")
NETWORK_KARGS = "guestinfo.afterburn.initrd.network-kargs"
MAX_KARGS = 4096
# Ignition's encoding names → what to undo here (a gzip stream is inflated by the writer)
USER_DATA_ENCODINGS = {"": "raw", "base64": "base64", "b64": "base64", "gz": "gzip",
                       "gzip": "gzip", "gz+base64": "gzip+base64", "gzip+base64": "gzip+base64",
                       "gz+b64": "gzip+base64", "gzip+b64": "gzip+base64"}
# cloud-init's (anything else it would take as plain text; here it is an error)
CLOUD_INIT_ENCODINGS = {"": "raw", "base64": "base64", "b64": "base64",
                        "gzip+base64": "gzip+base64", "gz+b64": "gzip+base64"}
# User-data: (value key, encoding key, encodings), the first one set wins: Ignition's keys,
# then cloud-init's.
USER_DATA_KEYS = (
    ("guestinfo.ignition.config.data", "guestinfo.ignition.config.data.encoding",
     USER_DATA_ENCODINGS),
    ("guestinfo.userdata", "guestinfo.userdata.encoding", CLOUD_INIT_ENCODINGS),
)


class VmwareProvider(Provider):
    id = "vmware"
    description = "VMware guestinfo (cloud-init's metadata, user-data)"
    source = "local"
    features = frozenset({ATTRIBUTES, SSH_KEYS, HOSTNAME, NETWORK_UNITS, USER_DATA})
    user_data_source = ("guestinfo " + USER_DATA_KEYS[0][0] + ", else "
                        + USER_DATA_KEYS[1][0])
    user_data_encoding = "what the key's .encoding names"

    def _metadata(self) -> Dict[str, Any]:
        return self.once("metadata", read_metadata)

    def attributes(self) -> Dict[str, str]:
        fields, document = Fields(METADATA), self._metadata()
        attributes = {}
        for name, field in ATTRIBUTE_FIELDS.items():
            value = fields.string(document.get(field), field)
            if value is not None:
                attributes[name] = value
        return attributes

    def hostname(self) -> Optional[str]:
        return Fields(METADATA).string(self._metadata().get("local-hostname"),
                                       "local-hostname") or None

    def ssh_keys(self) -> List[str]:
        return metadata_keys(self._metadata())

    def network(self):
        document = self._metadata()
        fields = Fields(METADATA)
        network = document.get("network")
        if isinstance(network, str):  # a document of its own, maybe encoded
            encoding = fields.string(document.get("network.encoding"), "network.encoding")
            text = decode(network.encode("utf-8"), (encoding or "").encode("ascii", "replace"),
                          where="network", encoding_where="network.encoding")
            network = parse_document(text, "network")
        network = fields.mapping(network, "network")
        if network and "version" not in network:  # netplan itself has no version key
            network = {"version": 2, **network}
        return nocloud.network_interfaces(network, fields, "network.", UNIT_PRIORITY)

    def user_data(self) -> Optional[bytes]:
        for key, encoding_key, encodings in USER_DATA_KEYS:
            raw = guestinfo(key)
            if raw is not None:
                return decode_user_data(raw, guestinfo(encoding_key), key, encoding_key,
                                        encodings)
        return None

    def initrd_network_kargs(self) -> Optional[Tuple[str, ...]]:
        """Afterburn's guestinfo key: the initrd's network arguments as the administrator
        gave them, or None when it is not set."""
        raw = guestinfo(NETWORK_KARGS)
        if raw is None:
            return None
        if len(raw) > MAX_KARGS:
            raise InvalidMetadata(f"exceeds {MAX_KARGS} bytes", source=NETWORK_KARGS)
        if any(byte < 0x20 or byte > 0x7E for byte in raw):
            raise InvalidMetadata("not one line of printable ASCII", source=NETWORK_KARGS)
        return tuple(raw.decode("ascii").split()) or None


def read_metadata() -> Dict[str, Any]:
    """``guestinfo.metadata`` decoded and parsed: a mapping (empty when it is not set)."""
    raw = guestinfo(METADATA)
    if raw is None:
        return {}
    text = decode(raw, guestinfo(ENCODING))
    return Fields(METADATA).mapping(parse_document(text, ""), "top level")


def parse_document(text: str, where: str) -> Any:
    """JSON when ``text`` starts with ``{`` (cloud-init tries JSON first), else YAML, within
    the shared bounds; errors name ``where`` inside guestinfo.metadata."""
    try:
        if text.lstrip().startswith("{"):
            return documents.parse_json(text, METADATA)
        return nocloud.load_yaml(text, METADATA)
    except InvalidMetadata as err:
        if where:
            err.cause = f"{where}: {err.cause}"
        raise


def metadata_keys(document: Dict[str, Any]) -> List[str]:
    """The key lines of the first key field present (cloud-init's order and shapes)."""
    fields = Fields(METADATA)
    for field in KEY_FIELDS:
        if field in document:
            break
    else:
        return []
    value = document[field]
    if isinstance(value, dict):  # a name → key(s) map has no order of its own: sort by name
        texts = [text for name in sorted(value, key=str)
                 for text in fields.strings(value[name], f"{field}.{name}")]
    else:
        texts = fields.strings(value, field)
    return [line for text in texts for line in formats.key_lines(text)]


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
    value = done.stdout[:-1] if done.stdout.endswith(b"\n") else done.stdout  # the tool adds one
    if not value.strip() or value.rstrip() == REDACTED:  # cloud-init's "not set"
        return None
    return value


def decode_user_data(raw: bytes, encoding: Optional[bytes], key: str, encoding_key: str,
                     encodings: Dict[str, str] = USER_DATA_ENCODINGS) -> bytes:
    """User-data under ``key`` with the transport encoding ``encoding_key`` names (one of
    ``encodings``) undone."""
    name = (encoding or b"").decode("ascii", "replace").strip().lower()
    if name not in encodings:
        raise InvalidMetadata("not one of " + ", ".join(e for e in encodings if e) +
                              " or empty", source=encoding_key)
    kind = encodings[name]
    data = strict_base64(raw, key) if kind in ("base64", "gzip+base64") else raw
    if kind.startswith("gzip") and not is_gzip(data):
        raise InvalidMetadata(f"{encoding_key} says gzip, but the data is not gzip-compressed",
                              source=key)
    return data


def decode(raw: bytes, encoding: Optional[bytes], *, where: str = "",
           encoding_where: str = "") -> str:
    """``guestinfo.metadata`` as text, after the encoding ``guestinfo.metadata.encoding`` names;
    with ``where``, the string field of that name inside it (``network``), after the encoding
    its field ``encoding_where`` names. Bounded: at most MAX_DOCUMENT bytes come out."""
    def invalid(cause: str, field: str = where) -> InvalidMetadata:
        return InvalidMetadata(f"{field}: {cause}" if field else cause, source=METADATA)

    name = (encoding or b"").decode("ascii", "replace").strip().lower()
    if name not in ENCODINGS:
        cause = "not one of " + ", ".join(e for e in ENCODINGS if e) + " or empty"
        if encoding_where:
            raise invalid(cause, encoding_where)
        raise InvalidMetadata(cause, source=ENCODING)
    data = raw
    if ENCODINGS[name] != "plain":
        try:
            data = base64.b64decode(b"".join(raw.split()), validate=True)
        except (binascii.Error, ValueError):
            raise invalid("not valid base64") from None
    if ENCODINGS[name] == "gzip":
        inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)  # gzip framing only
        try:
            data = inflater.decompress(data, MAX_DOCUMENT + 1)
        except zlib.error:
            raise invalid("not valid gzip data") from None
        if len(data) > MAX_DOCUMENT:
            raise invalid(f"decompresses to more than {MAX_DOCUMENT} bytes")
        if not inflater.eof:
            raise invalid("gzip data is truncated")
    if len(data) > MAX_DOCUMENT:
        raise invalid(f"exceeds {MAX_DOCUMENT} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise invalid(f"not valid UTF-8 (byte {err.start})") from None
