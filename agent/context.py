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
# Where a platform's IPv6 metadata address is sent instead (tests): only with ENDPOINT_ENV, so
# no run under an override can reach a real platform over either family.
ENDPOINT6_ENV = "CL_METADATA_ENDPOINT6"
CONFIG_DRIVE_ENV = "CL_METADATA_CONFIG_DRIVE"
CMDLINE_ENV = "CL_METADATA_CMDLINE"
CONCURRENCY_ENV = "CL_METADATA_CONCURRENCY"  # parallel requests per run (benchmarks set 1)
# The guest API socket of LXD and Incus (tests and demos point it at the fake server's socket)
GUEST_SOCKET_ENV = "CL_METADATA_LXD_SOCKET"
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
        self.endpoint6 = environ.get(ENDPOINT6_ENV) or None
        if self.endpoint6 and not self.endpoint:
            raise UsageError(f"{ENDPOINT6_ENV} needs {ENDPOINT_ENV} as well")
        self._ipv6_endpoints: list = []  # (IPv4 origin, IPv6 origin) pairs the provider named
        self.config_drive_override = environ.get(CONFIG_DRIVE_ENV) or None
        self.kernel_cmdline = dict(kernel_cmdline or {})
        self.concurrency = _positive_int(environ, CONCURRENCY_ENV, DEFAULT_CONCURRENCY)
        self.guest_socket_override = environ.get(GUEST_SOCKET_ENV) or None
        self._http = None
        self._socket_http = None
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
                                        endpoint6=self.endpoint6,
                                        max_workers=self.concurrency)
                for origin, ipv6_origin in self._ipv6_endpoints:
                    self._http.add_ipv6_endpoint(origin, ipv6_origin)
            return self._http

    def use_endpoints(self, endpoints: Sequence[str]) -> None:
        """A provider's metadata service addresses: the IPv4 origin its URLs name, then the
        same service's IPv6 origins (``http://[fd00:ec2::254]``). The HTTP client picks the
        one that connects (:mod:`cl_metadata.sources.endpoints`)."""
        origin, *ipv6_origins = endpoints
        with self._http_lock:
            for ipv6_origin in ipv6_origins:
                self._ipv6_endpoints.append((origin, ipv6_origin))
                if self._http is not None:
                    self._http.add_ipv6_endpoint(origin, ipv6_origin)

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

    def socket_http(self, socket_path: str):
        """The run's HTTP client over the unix socket ``socket_path``
        (``cl_metadata.sources.http.UnixSocketHttpClient``), created on first use. A socket
        on the machine is no network: ``--local-only`` runs read it too."""
        with self._http_lock:
            if self._socket_http is None:
                from cl_metadata.sources.http import UnixSocketHttpClient

                self._socket_http = UnixSocketHttpClient(socket_path, deadline=self.deadline,
                                                         max_workers=self.concurrency)
            return self._socket_http

    def close(self) -> None:
        if self._socket_http is not None:
            self._socket_http.close()
            self._socket_http = None
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
