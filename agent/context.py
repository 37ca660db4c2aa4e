"""What a provider may use: the shared HTTP client, config drives, the kernel command line.

Everything is created on first use, so a config-drive run never imports ``requests`` and an
HTTP run never touches block devices.
"""

from __future__ import annotations

import os
import threading
from typing import Mapping, Optional, Sequence

from cl_metadata.sources.deadline import Deadline
from cl_metadata.errors import NoMetadataHere, UsageError

ENDPOINT_ENV = "CL_METADATA_ENDPOINT"
CONFIG_DRIVE_ENV = "CL_METADATA_CONFIG_DRIVE"
CMDLINE_ENV = "CL_METADATA_CMDLINE"
CONCURRENCY_ENV = "CL_METADATA_CONCURRENCY"  # parallel requests per run (benchmarks set 1)
# The widest fan-out a platform has, so no request of it waits for a worker: ec2/aws with
# every output asks 10 attribute GETs and the key index with key 0 at the same time.
DEFAULT_CONCURRENCY = 12
# --local-only runs before the network, where a drive is the only source: give udev time to
# show its label, as the drive-only platforms always do.
LOCAL_DRIVE_WAIT = 5.0


class Context:
    def __init__(self, *, deadline: Deadline, environ: Mapping[str, str] = os.environ,
                 kernel_cmdline: Optional[Mapping[str, str]] = None, local_only: bool = False):
        self.deadline = deadline
        self.local_only = local_only
        self.endpoint = environ.get(ENDPOINT_ENV) or None
        self.config_drive_override = environ.get(CONFIG_DRIVE_ENV) or None
        self.kernel_cmdline = dict(kernel_cmdline or {})
        self.concurrency = _positive_int(environ, CONCURRENCY_ENV, DEFAULT_CONCURRENCY)
        self._http = None
        self._http_lock = threading.Lock()  # provider parts may ask for it from two threads

    @property
    def http(self):
        """The run's one HTTP client (``cl_metadata.sources.http.HttpClient``), created on first use."""
        if self.local_only:
            # a notice and exit 0, nothing written: the network unit of a later run reads it
            raise NoMetadataHere("the platform is read over the network; --local-only leaves "
                                 "it to a later run")
        with self._http_lock:
            if self._http is None:
                from cl_metadata.sources.http import HttpClient

                self._http = HttpClient(deadline=self.deadline, endpoint=self.endpoint,
                                        max_workers=self.concurrency)
            return self._http

    def config_drive(self, labels: Sequence[str], *, wait: float = 0.0,
                     premounted: Sequence[str] = ()):
        """A context manager yielding a ``cl_metadata.sources.configdrive.ConfigDrive``.

        Raises ``ConfigDriveNotFound`` when no drive carries one of ``labels``.
        """
        from cl_metadata.sources.configdrive import open_config_drive

        if self.local_only:
            wait = max(wait, LOCAL_DRIVE_WAIT)

        return open_config_drive(labels, override=self.config_drive_override, wait=wait,
                                 premounted=premounted, deadline=self.deadline)

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None


def _positive_int(environ: Mapping[str, str], name: str, default: int) -> int:
    raw = environ.get(name)
    if not raw:
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= 64:
        raise UsageError(f"{name}={raw!r} is not a whole number from 1 to 64")
    return int(raw)
