"""Google Compute Engine metadata server.

Protocol (docs/protocols.md "gcp", docs/attributes.md, docs/hardening.md):
``http://169.254.169.254/computeMetadata/v1/`` (the IP literal for both ids: the DNS name
``metadata.google.internal`` was spoofed via DHCP), ``Metadata-Flavor: Google`` on every request
and required on every response, 404 included (a proxy's or another cloud's answer lacks it).
Every item may be absent (404) and an empty value is absent too. ``gcp`` writes ``GCP_*``;
``gce`` the same items as ``GCE_*`` (Container Linux).

SSH keys, upstream's order: instance ``sshKeys`` (when it has a line, only those), else instance
``ssh-keys`` and, unless ``block-project-ssh-keys`` is true (Go's boolean spellings: ``true``,
``1``, ``t``…), project ``sshKeys`` and ``ssh-keys``. The six values are fetched at once (one
round trip, even when project keys then go unused). Lines are ``user:key``. Policy:
- The ``user:`` prefix is dropped and every key goes to the ``--ssh-keys`` user, as upstream
  does (one target user per unit instance; no accounts are created). ``ssh_keys_by_user``
  gives each key with its user for the opt-in per-user routing
  (:mod:`cl_metadata.outputs.sshkeys_per_user`), which decides who gets what.
- A key whose comment is ``google-ssh {"expireOn": …}`` is kept only while that time is in the
  future; an unparsable or missing expiry drops it (Google's guest agent does the same).
- A line without ``user:`` is dropped with a warning (upstream failed the whole run); after
  five such warnings one line counts the rest.
- Keys are de-duplicated by type and key data, first occurrence kept (instance before project);
  by user, type and key data for ``ssh_keys_by_user``.
"""

from __future__ import annotations

import datetime
import logging
import re
from typing import Callable, Dict, List, Mapping, Optional, Tuple

from cl_metadata.parsing import documents, formats
from cl_metadata.dropped import DroppedItems
from cl_metadata.errors import InvalidMetadata
from cl_metadata.providers.base import ATTRIBUTES, HOSTNAME, SSH_KEYS, USER_DATA, Provider

log = logging.getLogger("cl_metadata")

BASE = "http://169.254.169.254/computeMetadata/v1/"
FLAVOR = {"Metadata-Flavor": "Google"}
ATTRIBUTE_PATHS = {  # name without the GCP_/GCE_ stem -> path under BASE
    "HOSTNAME": "instance/hostname",
    "IP_EXTERNAL_0": "instance/network-interfaces/0/access-configs/0/external-ip",
    "IP_LOCAL_0": "instance/network-interfaces/0/ip",
    "MACHINE_TYPE": "instance/machine-type",
}
INSTANCE_LEGACY_KEYS = "instance/attributes/sshKeys"
INSTANCE_KEYS = "instance/attributes/ssh-keys"
BLOCK_PROJECT_KEYS = "instance/attributes/block-project-ssh-keys"
PROJECT_KEYS = ("project/attributes/sshKeys", "project/attributes/ssh-keys")
USER_DATA_PATH = "instance/attributes/user-data"  # raw; 404 = none (Ignition's source)
TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_GOOGLE_SSH = re.compile(r"(?:^|\s)google-ssh(?:\s+(.*))?$")


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


class GcpProvider(Provider):
    id = "gcp"
    description = "Google Compute Engine metadata server"
    source = "http"
    features = frozenset({ATTRIBUTES, SSH_KEYS, HOSTNAME, USER_DATA})
    user_data_source = "GET " + BASE + USER_DATA_PATH
    STEM = "GCP"
    clock: Callable[[], datetime.datetime] = staticmethod(_utcnow)

    def _values(self, paths: List[str]) -> Dict[str, Optional[str]]:
        """Path -> stripped value, None when absent (404) or empty."""
        bodies = self.context.http.get_many(
            [(BASE + path, {"optional": True, "headers": FLAVOR, "expect_headers": FLAVOR})
             for path in paths])
        return {path: formats.text(body, "GET " + BASE + path) or None
                for path, body in zip(paths, bodies)}

    def attributes(self) -> Dict[str, str]:
        values = self._values(list(ATTRIBUTE_PATHS.values()))
        return {f"{self.STEM}_{name}": values[path] for name, path in ATTRIBUTE_PATHS.items()
                if values[path] is not None}

    def hostname(self) -> Optional[str]:
        path = ATTRIBUTE_PATHS["HOSTNAME"]
        return self._values([path])[path]

    def ssh_keys(self) -> List[str]:
        return unique_keys(self.ssh_keys_by_user())

    def ssh_keys_by_user(self) -> List[Tuple[str, str]]:
        """(user, key line) of every key to install, as the ``user:`` prefixes name them;
        read once per run (the dropped-line warnings are logged once)."""
        paths = [INSTANCE_LEGACY_KEYS, INSTANCE_KEYS, BLOCK_PROJECT_KEYS, *PROJECT_KEYS]
        return self.once("user-keys",
                         lambda: parse_user_keys(self._values(paths), self.clock()))

    def user_data(self) -> Optional[bytes]:
        # bytes as served (not _values: no stripping), the response's flavor checked too
        return self.context.http.get(BASE + USER_DATA_PATH, optional=True, headers=FLAVOR,
                                     expect_headers=FLAVOR)


class GceProvider(GcpProvider):
    id = "gce"
    description = "Google Compute Engine (Container Linux names)"
    STEM = "GCE"


def parse_ssh_keys(values: Mapping[str, Optional[str]], now: datetime.datetime) -> List[str]:
    """The key lines to install, from the attribute values by path (see the module docstring)."""
    return unique_keys(parse_user_keys(values, now))


def unique_keys(user_keys: List[Tuple[str, str]]) -> List[str]:
    """The key lines without their users, each key (type and data) once, first kept."""
    keys: Dict[str, str] = {}  # identity -> line, in first-seen order
    for _user, key in user_keys:
        keys.setdefault(" ".join(key.split()[:2]), key)
    return list(keys.values())


def parse_user_keys(values: Mapping[str, Optional[str]],
                    now: datetime.datetime) -> List[Tuple[str, str]]:
    """(user, key line) of every key to install, each user's key once, in the order served."""
    if formats.key_lines(values.get(INSTANCE_LEGACY_KEYS)):
        sources = [INSTANCE_LEGACY_KEYS]
    elif (values.get(BLOCK_PROJECT_KEYS) or "") in TRUE:
        sources = [INSTANCE_KEYS]
    else:
        sources = [INSTANCE_KEYS, *PROJECT_KEYS]
    keys: Dict[Tuple[str, str], Tuple[str, str]] = {}  # (user, identity) -> pair, in order
    dropped = DroppedItems("ssh key lines")
    for path in sources:
        for number, line in enumerate(formats.key_lines(values.get(path)), 1):
            user, colon, key = line.partition(":")
            key = key.strip()
            if not colon or not user or not key:
                dropped.add(f"{BASE + path} line {number} dropped: not 'user:key'")
            elif is_expired(key, now):
                dropped.add(f"{BASE + path} line {number} dropped: expired or unreadable "
                            "google-ssh expiry")
            else:
                user = user.strip()
                keys.setdefault((user, " ".join(key.split()[:2])), (user, key))
    dropped.log(log)
    return list(keys.values())


def is_expired(key: str, now: datetime.datetime) -> bool:
    """Whether a ``google-ssh {"expireOn": …}`` comment says the key is no longer valid."""
    match = _GOOGLE_SSH.search(key)
    if match is None:
        return False  # an ordinary key does not expire
    try:
        expire_on = documents.parse_json(match.group(1) or "", "google-ssh").get("expireOn")
    except (InvalidMetadata, AttributeError):  # not JSON (or too deep), or not an object
        return True
    for layout in ("%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S.%f%z"):
        try:
            return datetime.datetime.strptime(str(expire_on), layout) <= now
        except ValueError:
            continue
    return True
