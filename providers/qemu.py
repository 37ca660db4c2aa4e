"""QEMU firmware configuration (fw_cfg): a plain ``qemu-system-… -fw_cfg
name=opt/org.cl-metadata/meta-data,file=meta-data.yaml`` is a platform (Ignition reads its own
config the same way, from ``opt/com.coreos/config``).

The guest's ``qemu_fw_cfg`` driver shows the entry as
``/sys/firmware/qemu_fw_cfg/by_name/opt/org.cl-metadata/meta-data/raw``; the module is loaded
with ``modprobe qemu_fw_cfg`` when that tree is missing. The entry is one YAML mapping shaped
like NoCloud meta-data (at most 1 MiB, UTF-8):

    instance-id: i-0123            → QEMU_INSTANCE_ID
    local-hostname: node-1         → QEMU_HOSTNAME and the hostname
    public-keys: [ssh-ed25519 …]   → SSH keys (a string, a list, or a name → key mapping)
    attributes: {IPV4_LOCAL: …}    → QEMU_IPV4_LOCAL (names: A–Z, 0–9 and _; string values)

No entry (QEMU started without it, or no fw_cfg at all) is a success with nothing written, like
a missing optional drive: ``ignition.platform.id=qemu`` machines without it must boot cleanly.
``--user-data`` reads Ignition's own entry, ``opt/com.coreos/config`` (``-fw_cfg
name=opt/com.coreos/config,file=config.ign``), as given; only on a guest with the meta-data
entry too, since without it the platform has nothing to do.
For tests and demos, ``CL_METADATA_CONFIG_DRIVE=<dir>`` stands in for the ``by_name`` directory
(``<dir>/opt/org.cl-metadata/meta-data/raw``), the layout ``cl-metadata-fake-server --platform
qemu --write-drive <dir>`` writes.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
from typing import Dict, List, Optional

from cl_metadata.parsing import formats
from cl_metadata.errors import ConfigDriveError, InvalidMetadata, NoMetadataHere
from cl_metadata.sources import nocloud_format as nocloud
from cl_metadata.parsing.fields import Fields
from cl_metadata.providers.base import ATTRIBUTES, HOSTNAME, SSH_KEYS, USER_DATA, Provider

log = logging.getLogger("cl_metadata")

FW_CFG_NAME = "opt/org.cl-metadata/meta-data"  # fw_cfg names: "opt/…", at most 55 bytes
FW_CFG_ROOT = "/sys/firmware/qemu_fw_cfg"
ENTRY = FW_CFG_NAME + "/raw"  # relative to FW_CFG_ROOT/by_name
# --user-data: the entry Ignition reads its config from, as the user gave it (gzip allowed)
USER_DATA_NAME = "opt/com.coreos/config"
USER_DATA_ENTRY = USER_DATA_NAME + "/raw"
MAX_BYTES = 1 << 20
MODPROBE = ("modprobe", "qemu_fw_cfg")
COMMAND_TIMEOUT = 10.0
_COMMAND_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"}
_ATTRIBUTE_NAME = re.compile(r"[A-Z0-9_]+")


class QemuProvider(Provider):
    id = "qemu"
    description = "QEMU firmware config entry " + FW_CFG_NAME + " (none: nothing to do)"
    source = "local"
    features = frozenset({ATTRIBUTES, SSH_KEYS, HOSTNAME, USER_DATA})
    user_data_source = "firmware config entry " + USER_DATA_NAME

    def __init__(self, context):
        super().__init__(context)
        body = self._entry(ENTRY)
        if body is None:
            raise NoMetadataHere(f"no firmware config entry {FW_CFG_NAME}; nothing to do")
        self.document = nocloud.parse_meta_data(formats.text(body, FW_CFG_NAME) or "",
                                                FW_CFG_NAME)

    def attributes(self) -> Dict[str, str]:
        fields = Fields(FW_CFG_NAME)
        instance_id = fields.string(self.document.get("instance-id"), "instance-id")
        values = {"QEMU_INSTANCE_ID": instance_id, "QEMU_HOSTNAME": self.hostname()}
        attributes = {name: value for name, value in values.items() if value is not None}
        extra = fields.mapping(self.document.get("attributes"), "attributes")
        for i, (name, value) in enumerate(extra.items()):
            where = f"attributes[{i}]"
            if not isinstance(name, str) or not _ATTRIBUTE_NAME.fullmatch(name):
                raise fields.error(where, "the name must consist of A-Z, 0-9 and _")
            if "QEMU_" + name in attributes:
                raise fields.error(where, "repeats a name that instance-id or local-hostname sets")
            attributes["QEMU_" + name] = fields.string(value, where, required=True)
        return attributes

    def hostname(self) -> Optional[str]:
        return Fields(FW_CFG_NAME).string(self.document.get("local-hostname"), "local-hostname")

    def ssh_keys(self) -> List[str]:
        return nocloud.meta_data_keys(self.document, FW_CFG_NAME)

    def user_data(self) -> Optional[bytes]:
        return self._entry(USER_DATA_ENTRY)

    def _entry(self, entry: str) -> Optional[bytes]:
        if self.context.config_drive_override:
            with self.context.config_drive(()) as directory:
                return directory.read(entry, optional=True, max_bytes=MAX_BYTES)
        return read_fw_cfg(entry)


def read_fw_cfg(entry: str = ENTRY) -> Optional[bytes]:
    """The entry's bytes from sysfs, ``None`` when this guest has no such entry."""
    if not os.path.isdir(FW_CFG_ROOT):
        _load_driver()
    path = os.path.join(FW_CFG_ROOT, "by_name", entry)
    try:
        with open(path, "rb") as raw:  # by_name entries are kernel symlinks: follow them
            body = raw.read(MAX_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigDriveError(f"cannot read: {exc.strerror}", source=path) from None
    if len(body) > MAX_BYTES:
        raise InvalidMetadata(f"exceeds {MAX_BYTES} bytes", source=path)
    return body


def _load_driver() -> None:
    try:
        done = subprocess.run(list(MODPROBE), stdin=subprocess.DEVNULL, capture_output=True,
                              env=_COMMAND_ENV, timeout=COMMAND_TIMEOUT, check=False)
        status = done.returncode
    except (OSError, subprocess.TimeoutExpired) as exc:
        status = type(exc).__name__
    if status != 0:
        log.info("qemu: %s failed (%s); no firmware config", " ".join(MODPROBE), status)
