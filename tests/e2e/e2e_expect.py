"""What the agent makes of a drive on the host: the expectation a drive scenario holds the guest to.

The platform's renderer writes the same instance as a directory drive; ``cl-metadata`` runs on it
(``CL_METADATA_CONFIG_DRIVE``, no block device, no network) for the attributes file and the
networkd units, and the provider class itself gives the SSH keys (``--ssh-keys`` would write into
a home directory of this host). The guest must end up with exactly the same.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict


def host_expectation(provider_id: str, drive_dir: Path) -> Dict[str, object]:
    """{"attributes": file text, "units": {name: text}, "ssh_keys": [...], "rc": exit status,
    "stderr": the agent's log} for the directory drive ``drive_dir``."""
    with tempfile.TemporaryDirectory(prefix="clm-expect-") as tmp:
        attributes, units = Path(tmp) / "attributes", Path(tmp) / "units"
        units.mkdir()
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C",
               "CL_METADATA_CONFIG_DRIVE": str(drive_dir),
               # an endpoint nobody listens on: a provider that wanted HTTP fails fast, locally
               "CL_METADATA_ENDPOINT": "http://127.0.0.1:9"}
        done = subprocess.run([sys.executable, "-I", "-m", "cl_metadata", "--provider", provider_id,
                               f"--attributes={attributes}", f"--network-units={units}",
                               "--timeout=20"], env=env, capture_output=True, text=True, timeout=60)
        found = {
            "rc": done.returncode, "stderr": done.stderr,
            "attributes": attributes.read_text() if attributes.exists() else None,
            "units": {p.name: p.read_text() for p in sorted(units.iterdir())},
        }
    found["ssh_keys"] = _ssh_keys(provider_id, drive_dir)
    return found


def _ssh_keys(provider_id: str, drive_dir: Path) -> list:
    from cl_metadata.context import CONFIG_DRIVE_ENV, Context
    from cl_metadata.sources.deadline import Deadline
    from cl_metadata.providers.base import SSH_KEYS
    from cl_metadata.registry import provider_class

    cls = provider_class(provider_id)
    if SSH_KEYS not in cls.features:
        return []
    context = Context(deadline=Deadline(20), environ={CONFIG_DRIVE_ENV: str(drive_dir)})
    try:
        return list(cls(context).ssh_keys())
    finally:
        context.close()
