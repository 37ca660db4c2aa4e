"""LXD and Incus containers and virtual machines: the guest API on a unix socket,
``/dev/lxd/sock`` (``lxd``) or ``/dev/incus/sock`` (``incus``), plain HTTP/1.1 with the same
paths on both. LXD serves it unless the instance sets ``security.devlxd=false`` (Incus:
``security.guestapi=false``); in a virtual machine the guest agent (``lxd-agent``,
``incus-agent``) creates the socket once it runs. No Container Linux agent read it; the names
below are this project's (``INCUS_`` for ``incus``):

    GET /1.0                   JSON: instance_type ("container", "virtual-machine")
                                                      → LXD_INSTANCE_TYPE
    GET /1.0/meta-data         cloud-init meta-data (YAML, "#cloud-config" first line):
                               instance-id → LXD_INSTANCE_ID;
                               local-hostname → LXD_HOSTNAME and the hostname
    GET /1.0/config/KEY        one instance configuration key, its value as the body; 404 when
                               unset. cloud-init.* keys win over the older user.* ones:
        cloud-init.user-data, else user.user-data     → user-data, as given; when it is a
                               #cloud-config document, its top-level ssh_authorized_keys
                               → SSH keys (users[].ssh_authorized_keys are not read: they
                               belong to users cloud-init would create)
        cloud-init.network-config, else user.network-config
                               → cloud-init network config v1 or v2 → networkd units
                               (priority 10); none: no units (cloud-init's DHCP-on-eth0
                               fallback is the image's own default network already)

An empty value is the same as an unset key. ``user.meta-data`` and the vendor-data keys are not
read. Only the keys an output needs are asked for.

The socket must be there and be a socket: a missing one is a success with nothing done (the
guest API is off, or the VM agent does not run yet), like ``qemu`` without its fw_cfg entry; a
symlink or any other kind of file there fails the run (``/dev`` is root's: something is wrong
with the machine). Requests follow the HTTP client's policy (deadline, retries, size cap).
``CL_METADATA_LXD_SOCKET`` names another socket instead (tests, ``scripts/demo``), for both ids.
"""

from __future__ import annotations

import os
import stat
from typing import Dict, List, Optional, Sequence, Tuple

from cl_metadata.errors import InvalidMetadata, NoMetadataHere
from cl_metadata.parsing import formats
from cl_metadata.parsing.fields import Fields
from cl_metadata.providers.base import (ATTRIBUTES, HOSTNAME, NETWORK_UNITS, SSH_KEYS, USER_DATA,
                                        Provider)
from cl_metadata.sources import nocloud_format as nocloud

API = "http://guest-api/1.0"  # any host: every request goes to the socket
META_DATA = "meta-data"
USER_DATA_KEYS = ("cloud-init.user-data", "user.user-data")
NETWORK_CONFIG_KEYS = ("cloud-init.network-config", "user.network-config")
UNIT_PRIORITY = 10
INSTANCE_TYPE_FIELD = "instance_type"


class LxdProvider(Provider):
    id = "lxd"
    stem = "LXD"
    socket_path = "/dev/lxd/sock"
    description = "LXD guest API on /dev/lxd/sock (none: nothing to do)"
    source = "local socket"
    features = frozenset({ATTRIBUTES, SSH_KEYS, HOSTNAME, NETWORK_UNITS, USER_DATA})
    user_data_source = ("GET /1.0/config/cloud-init.user-data, else user.user-data, on "
                        "/dev/lxd/sock")

    def __init__(self, context):
        super().__init__(context)
        self.socket = context.guest_socket_override or self.socket_path
        try:
            mode = os.lstat(self.socket).st_mode
        except FileNotFoundError:
            raise NoMetadataHere(f"no guest API socket {self.socket} (the guest API is off, "
                                 "or the VM agent is not running); nothing to do") from None
        except OSError as exc:
            raise InvalidMetadata(f"cannot look at the socket: {exc.strerror}",
                                  source=self.socket) from None
        if stat.S_ISLNK(mode):
            raise InvalidMetadata("is a symlink, not the guest API socket; refused",
                                  source=self.socket)
        if not stat.S_ISSOCK(mode):
            raise InvalidMetadata("is not a socket; refused", source=self.socket)

    # -- what the platform says ------------------------------------------------------------
    def attributes(self) -> Dict[str, str]:
        meta = self._meta_data()
        fields = Fields(self._where(META_DATA))
        values = {f"{self.stem}_INSTANCE_ID": fields.string(meta.get("instance-id"),
                                                            "instance-id"),
                  f"{self.stem}_HOSTNAME": self.hostname(),
                  f"{self.stem}_INSTANCE_TYPE": self._instance_type()}
        return {name: value for name, value in values.items() if value is not None}

    def hostname(self) -> Optional[str]:
        return Fields(self._where(META_DATA)).string(self._meta_data().get("local-hostname"),
                                                     "local-hostname")

    def ssh_keys(self) -> List[str]:
        key, text = self._first_key(USER_DATA_KEYS)
        if text is None:
            return []
        return nocloud.cloud_config_keys(nocloud.parse_cloud_config(text, self._where(key)),
                                         self._where(key))

    def network(self):
        key, text = self._first_key(NETWORK_CONFIG_KEYS)
        return nocloud.parse_network_config(text, self._where(key or NETWORK_CONFIG_KEYS[0]),
                                            priority=UNIT_PRIORITY)

    def user_data(self) -> Optional[bytes]:
        return self._first_body(USER_DATA_KEYS)[1]

    # -- the guest API -----------------------------------------------------------------------
    def _http(self):
        return self.context.socket_http(self.socket)

    def _where(self, path: str) -> str:
        """A document's name in errors: ``/1.0/meta-data on /dev/lxd/sock``; ``path`` is
        ``""`` (``/1.0`` itself), ``meta-data`` or a configuration key."""
        if path and path != META_DATA:
            path = "config/" + path
        return f"/1.0{'/' if path else ''}{path} on {self.socket}"

    def _meta_data(self) -> Dict:
        def load():
            body = self._http().get(f"{API}/{META_DATA}")
            return nocloud.parse_meta_data(formats.text(body, self._where(META_DATA)) or "",
                                           self._where(META_DATA))
        return self.once(META_DATA, load)

    def _instance_type(self) -> Optional[str]:
        document = formats.json_object(self._http().get(API), self._where(""))
        return Fields(self._where("")).string(document.get(INSTANCE_TYPE_FIELD),
                                              INSTANCE_TYPE_FIELD)

    def _first_body(self, keys: Sequence[str]) -> Tuple[Optional[str], Optional[bytes]]:
        """(key, value) of the first of ``keys`` set to something; (None, None) when none is.
        Asked in turn: an older key is asked only when the newer one is unset (a round trip
        on a local socket costs next to nothing)."""
        for key in keys:
            body = self._http().get(f"{API}/config/{key}", optional=True)
            if body:
                return key, body
        return None, None

    def _first_key(self, keys: Sequence[str]) -> Tuple[Optional[str], Optional[str]]:
        key, body = self._first_body(keys)
        return key, (formats.text(body, self._where(key)) if key else None)


class IncusProvider(LxdProvider):
    id = "incus"
    stem = "INCUS"
    socket_path = "/dev/incus/sock"
    description = "Incus guest API on /dev/incus/sock (none: nothing to do)"
    user_data_source = ("GET /1.0/config/cloud-init.user-data, else user.user-data, on "
                        "/dev/incus/sock")
