"""What ``ssh-keygen -l`` says about a public key: its size in bits and its SHA256 fingerprint.

A fingerprint names a key without giving it away, so it is what a listing of keys, a log line
about a key that came or went, or the instance-data file shows instead of the key. The comment
is left out everywhere: it is free text the user typed (often an e-mail address).
"""

from __future__ import annotations

import base64
import hashlib
import struct
from typing import Optional

from cl_metadata.outputs.sshkeys import SshKey

# key types whose size follows from the type alone
_FIXED_BITS = {
    "ssh-ed25519": 256,
    "sk-ssh-ed25519@openssh.com": 256,
    "ecdsa-sha2-nistp256": 256,
    "ecdsa-sha2-nistp384": 384,
    "ecdsa-sha2-nistp521": 521,
    "sk-ecdsa-sha2-nistp256@openssh.com": 256,
}


def fingerprint(key: SshKey) -> str:
    """``SHA256:`` and the unpadded base64 SHA-256 of the key data, as ``ssh-keygen -l``."""
    digest = hashlib.sha256(base64.b64decode(key.blob)).digest()
    return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")


def bits(key: SshKey) -> Optional[int]:
    """The key's size as ``ssh-keygen -l`` gives it (RSA: the modulus, DSA: ``p``), or None
    when the key data is too short to say."""
    if key.type in _FIXED_BITS:
        return _FIXED_BITS[key.type]
    # "ssh-rsa": string type, mpint e, mpint n; "ssh-dss": string type, mpint p, q, g, y
    which = {"ssh-rsa": 2, "ssh-dss": 1}.get(key.type)
    if which is None:
        return None
    raw = base64.b64decode(key.blob)
    offset, field = 0, b""
    for _ in range(which + 1):
        if offset + 4 > len(raw):
            return None
        (length,) = struct.unpack(">I", raw[offset:offset + 4])
        field = raw[offset + 4:offset + 4 + length]
        if len(field) != length:
            return None
        offset += 4 + length
    return int.from_bytes(field, "big").bit_length()
