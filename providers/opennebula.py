"""OpenNebula: the contextualization CD-ROM, iso9660 labelled ``CONTEXT``, and its ``context.sh``.

OpenNebula writes the VM template's ``CONTEXT`` section as one ``NAME='value'`` line per
variable (a ``'`` in a value as ``'\\''``), under a ``#`` header. The file is read as data by
:mod:`cl_metadata.parsing.shellvars`, never run: a value that would make ``sh`` do anything but
assign a string fails the run. There are no fixed variables; these are read:

    VMID                          → OPENNEBULA_INSTANCE_ID
    SET_HOSTNAME, else HOSTNAME   → OPENNEBULA_HOSTNAME and the hostname
    ETH<n>_IP, ETH<n>_IP6         → OPENNEBULA_IPV4_<n>, OPENNEBULA_IPV6_<n>
    PUBLIC_IP, else IP_PUBLIC     → OPENNEBULA_IPV4_PUBLIC (the names templates use for it)
    SSH_PUBLIC_KEY, SSH_KEY       → SSH keys, one per line (blank and ``#`` lines skipped)
    USER_DATA, else USERDATA      → user-data; base64 when USERDATA_ENCODING (or
                                    USER_DATA_ENCODING) is ``base64``
    ETH<n>_MAC and the other ETH<n>_ variables → one interface per NIC, matched by its MAC
                                    (:mod:`cl_metadata.sources.opennebula_context`)

No drive is an error: the platform was named, and the drive is its only source.
"""

from __future__ import annotations

import base64
from typing import Dict, List, Optional

from cl_metadata.parsing import shellvars
from cl_metadata.parsing.fields import Fields, unique
from cl_metadata.providers.base import (ATTRIBUTES, HOSTNAME, NETWORK_UNITS, SSH_KEYS, USER_DATA,
                                        Provider)
from cl_metadata.sources.opennebula_context import ContextVariables

LABELS = ("CONTEXT",)
CONTEXT = "context.sh"
DRIVE_WAIT = 5.0  # seconds for udev to show the label; the drive is the only source


class OpenNebulaProvider(Provider):
    id = "opennebula"
    description = "OpenNebula contextualization CD-ROM (CONTEXT drive, context.sh)"
    source = "config drive"
    features = frozenset({ATTRIBUTES, SSH_KEYS, HOSTNAME, NETWORK_UNITS, USER_DATA})
    user_data_source = CONTEXT + " USER_DATA, else USERDATA"
    user_data_encoding = "raw, or base64 when USERDATA_ENCODING says so"

    def __init__(self, context):
        super().__init__(context)
        with context.config_drive(LABELS, wait=DRIVE_WAIT) as drive:
            self.body = drive.read(CONTEXT)
        self.fields = Fields(CONTEXT)

    def _context(self) -> ContextVariables:
        return self.once("context", lambda: ContextVariables(
            shellvars.parse(self.body, CONTEXT), self.fields))

    def attributes(self) -> Dict[str, str]:
        variables = self._context()
        values = {"OPENNEBULA_INSTANCE_ID": variables.get("VMID"),
                  "OPENNEBULA_HOSTNAME": self.hostname()}
        public = variables.get("PUBLIC_IP", "IP_PUBLIC")
        if public is not None:
            values["OPENNEBULA_IPV4_PUBLIC"] = self.fields.ip(public, "PUBLIC_IP")
        for n in variables.nics():
            for family, name in (("IPV4", f"ETH{n}_IP"), ("IPV6", f"ETH{n}_IP6")):
                if variables.get(name) is not None:
                    values[f"OPENNEBULA_{family}_{n}"] = self.fields.ip(variables.get(name), name)
        return {name: value for name, value in values.items() if value is not None}

    def hostname(self) -> Optional[str]:
        return self._context().get("SET_HOSTNAME", "HOSTNAME")

    def ssh_keys(self) -> List[str]:
        raw = self._context().variables
        lines = raw.get("SSH_PUBLIC_KEY", "") + "\n" + raw.get("SSH_KEY", "")
        return list(unique([line.strip() for line in lines.splitlines()
                            if line.strip() and not line.strip().startswith("#")]))

    def user_data(self) -> Optional[bytes]:
        variables = self._context()
        name = "USER_DATA" if "USER_DATA" in variables.variables else "USERDATA"
        if name not in variables.variables:
            return None
        encoding = (variables.get("USERDATA_ENCODING", "USER_DATA_ENCODING") or "").lower()
        if not encoding:
            return variables.variables[name].encode("utf-8")
        if encoding != "base64":
            raise self.fields.error("USERDATA_ENCODING", "not base64 or empty")
        try:
            return base64.b64decode("".join(variables.variables[name].split()), validate=True)
        except ValueError:  # binascii.Error
            raise self.fields.error(name, "not valid base64") from None

    def network(self):
        return self.once("network", lambda: (self._context().interfaces(), []))
