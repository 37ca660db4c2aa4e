"""Vagrant with VirtualBox (Container Linux only): nothing to fetch, two local facts.

Protocol (docs/attributes.md, docs/protocols.md): ``VAGRANT_VIRTUALBOX_HOSTNAME`` is the local
system hostname, which is also the hostname output (as the Rust builds did); the private
network's address ``VAGRANT_VIRTUALBOX_PRIVATE_IPV4`` is the first IPv4 address of ``eth1``
(read with the ``SIOCGIFADDR`` ioctl, which gives the interface's primary address). Upstream
polled 30 × 2 s, then failed with ``eth1 was not found!``; here the wait is bounded by
``WAIT_LIMIT`` and the run's deadline. No network request, no ``requests`` import, no keys.
"""

from __future__ import annotations

import errno
import fcntl
import socket
import struct
import time
from typing import Callable, Dict, Optional

from cl_metadata.sources.deadline import Deadline
from cl_metadata.errors import MetadataError
from cl_metadata.providers.base import ATTRIBUTES, HOSTNAME, Provider

INTERFACE = "eth1"  # Vagrant's private network; tests use "lo"
WAIT_LIMIT = 60.0  # seconds, as upstream's 30 tries 2 s apart
POLL_INTERVAL = 2.0
SIOCGIFADDR = 0x8915  # linux/sockios.h


class VagrantVirtualBoxProvider(Provider):
    id = "vagrant-virtualbox"
    description = "Vagrant VirtualBox (local hostname and eth1 address, no network)"
    source = "local"
    features = frozenset({ATTRIBUTES, HOSTNAME})

    def attributes(self) -> Dict[str, str]:
        address = wait_for_ipv4(INTERFACE, deadline=self.context.deadline, limit=WAIT_LIMIT,
                                interval=POLL_INTERVAL)
        return {"VAGRANT_VIRTUALBOX_HOSTNAME": socket.gethostname(),
                "VAGRANT_VIRTUALBOX_PRIVATE_IPV4": address}

    def hostname(self) -> Optional[str]:
        return socket.gethostname() or None


def interface_ipv4(name: str) -> Optional[str]:
    """The primary IPv4 address of interface ``name``; None while it has none (or is absent)."""
    request = struct.pack("256s", name.encode("utf-8")[:15])
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            answer = fcntl.ioctl(sock.fileno(), SIOCGIFADDR, request)
        except OSError as err:
            if err.errno in (errno.ENODEV, errno.EADDRNOTAVAIL, errno.ENXIO):
                return None
            raise MetadataError(f"cannot read its address ({err.strerror})",
                                source=f"interface {name}") from None
    return socket.inet_ntoa(answer[20:24])  # struct ifreq: name[16], sockaddr_in at 16


def wait_for_ipv4(name: str, *, deadline: Deadline, limit: float, interval: float,
                  sleep: Callable[[float], None] = time.sleep,
                  clock: Callable[[], float] = time.monotonic) -> str:
    """``interface_ipv4(name)``, asked again every ``interval`` seconds until it has one."""
    end = clock() + min(limit, deadline.remaining())
    while True:
        address = interface_ipv4(name)
        if address is not None:
            return address
        if clock() + interval > end:
            raise MetadataError(f"{name} was not found (no IPv4 address after waiting "
                                f"{min(limit, deadline.total):g} s)", source=f"interface {name}")
        sleep(interval)
