"""The image builder's settings file: the platform and the key users of a plain image.

An image that boots without a platform id on its kernel command line (a plain Debian or Ubuntu
cloud image) says once, in ``/etc/cl-metadata/cl-metadata.conf``, what the units should do.
Every unit passes ``--settings`` with that path; a missing file means "no settings".

    # one "key = value" per line; blank lines and lines starting with # are ignored
    provider = auto          # a provider id, "auto" (firmware DMI strings) or "none"
    ssh-users = debian       # the users --ssh-keys-default writes keys for (default: core)
    ssh-keys-per-user = yes  # as --ssh-keys-per-user: each key only to the user it names

The kernel command line still wins over ``provider``. Anything else — an unknown key, a key
given twice, a line without ``=``, a value of the wrong shape — is a usage error naming the
file and the line (never the value), and the run stops before anything is fetched.
"""

from __future__ import annotations

import re
from typing import NamedTuple, Optional, Tuple

from cl_metadata.errors import UsageError

DEFAULT_PATH = "/etc/cl-metadata/cl-metadata.conf"
DEFAULT_SSH_USERS = ("core",)  # Container Linux's user
MAX_BYTES = 1 << 16

_PROVIDER = re.compile(r"[a-z0-9][a-z0-9-]{0,63}\Z")
# POSIX portable user names (useradd's default rule, without the trailing $ of machine accounts)
_USER = re.compile(r"[a-z_][a-z0-9_-]{0,31}\Z")


class Settings(NamedTuple):
    provider: Optional[str] = None
    ssh_users: Tuple[str, ...] = DEFAULT_SSH_USERS
    ssh_keys_per_user: bool = False


def _provider(value: str) -> Optional[str]:
    return value if _PROVIDER.match(value) else None


def _ssh_users(value: str) -> Optional[Tuple[str, ...]]:
    users = tuple(value.replace(",", " ").split())
    if not users or not all(_USER.match(user) for user in users):
        return None
    return tuple(dict.fromkeys(users))  # a user named twice is written once


def _yes_no(value: str) -> Optional[bool]:
    return {"yes": True, "true": True, "no": False, "false": False}.get(value.lower())


_KEYS = {
    "provider": ("provider", _provider, "a provider id, auto or none"),
    "ssh-users": ("ssh_users", _ssh_users, "user names separated by spaces or commas"),
    "ssh-keys-per-user": ("ssh_keys_per_user", _yes_no, "yes or no"),
}


def parse(text: str, path: str) -> Settings:
    """The settings in ``text`` (read from ``path``, which errors name)."""
    found = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = f"settings {path} line {number}"
        key, sep, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if not sep:
            raise UsageError(f"{where}: not a 'key = value' line")
        if key not in _KEYS:
            raise UsageError(f"{where}: unknown key {key!r} (known: {', '.join(_KEYS)})"
                             if re.fullmatch(r"[A-Za-z0-9_.-]{1,40}", key)
                             else f"{where}: unknown key")
        field, convert, shape = _KEYS[key]
        if field in found:
            raise UsageError(f"{where}: {key} given a second time")
        converted = convert(value)
        if converted is None:
            raise UsageError(f"{where}: {key} must be {shape}")
        found[field] = converted
    return Settings(**found)


def load(path: str) -> Settings:
    """The settings in ``path``; a missing file is no settings at all."""
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_BYTES + 1)
    except FileNotFoundError:
        return Settings()
    except OSError as err:
        raise UsageError(f"settings {path}: cannot read: {err.strerror}") from None
    if len(raw) > MAX_BYTES:
        raise UsageError(f"settings {path}: larger than {MAX_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[:err.start].count(b"\n") + 1
        raise UsageError(f"settings {path} line {line}: not UTF-8") from None
    return parse(text, path)
