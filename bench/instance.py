"""Instance descriptions for the cost-growth runs: N SSH keys, or a padded user-data.

Written as JSON, which the fake server's YAML loader reads as it is. Keys are syntactically
valid ed25519 public keys made from a seeded generator, so every run sees the same bytes.
"""

from __future__ import annotations

import base64
import json
import random
import struct
from typing import Optional

ED25519 = b"ssh-ed25519"

BASE_INSTANCE = {
    "instance-id": "i-0b1e2c3d4e5f60718",
    "uuid": "7a1c0f4e-2b3d-4c5e-8f60-718293a4b5c6",
    "hostname": "bench-1.example.internal",
    "local-ipv4": "10.0.1.15",
    "public-ipv4": "203.0.113.25",
    "ipv6": "2001:db8:1:2::15",
    "mac": "fa:16:3e:4c:2d:7a",
    "region": "bench-region-1",
    "availability-zone": "bench-az-a",
    "instance-type": "m1.small",
    "image-id": "3e9a1f52-7c4b-4d0e-8a61-5f2b9c7d0e14",
    "nameservers": ["192.0.2.53"],
    "network-interfaces": [{
        "mac": "fa:16:3e:4c:2d:7a", "name": "eth0", "public": True,
        "local-ipv4": "10.0.1.15", "ipv4-prefix": 24, "ipv4-gateway": "10.0.1.1",
        "public-ipv4": "203.0.113.25", "ipv6": "2001:db8:1:2::15", "ipv6-prefix": 64,
        "ipv6-gateway": "2001:db8:1:2::1",
    }],
}


def ed25519_key(rng: random.Random, comment: str) -> str:
    blob = (struct.pack(">I", len(ED25519)) + ED25519 + struct.pack(">I", 32)
            + bytes(rng.getrandbits(8) for _ in range(32)))
    return f"ssh-ed25519 {base64.b64encode(blob).decode('ascii')} {comment}"


def instance(keys: int, user_data: Optional[str] = None, seed: int = 7) -> dict:
    rng = random.Random(seed)
    doc = dict(BASE_INSTANCE)
    doc["ssh-keys"] = [{"name": f"k{i}", "key": ed25519_key(rng, f"k{i}")} for i in range(keys)]
    if user_data is not None:
        doc["user-data"] = user_data
    return doc


def write(path: str, doc: dict) -> str:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(doc, f)
    return path
