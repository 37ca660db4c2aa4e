"""Which address of a platform's metadata service a run uses: IPv4 or IPv6.

Some platforms serve their metadata at an IPv6 address as well as at the IPv4 link-local one
their URLs name. A machine on an IPv6-only network cannot reach the IPv4 one, and a machine
whose IPv4 path is black-holed would wait out every connect timeout. So, before a run's first
request to such a service, its addresses race for a TCP connection (Happy Eyeballs, RFC 8305):
IPv4 starts first and gets a head start of ``HEAD_START`` seconds, the next address starts
when the head start passes or as soon as the one before it fails (an IPv6-only machine refuses
the IPv4 connect at once with "network unreachable"), and the first to connect wins. The winner
carries every request of the run; the race's own sockets are closed.

IPv4 goes first because it is the path every platform has and every image used until now: a
dual-stack machine keeps using it, paying one extra connect (a link-local round trip) per run.

A link-local IPv6 address (OpenStack's ``fe80::a9fe:a9fe``) means nothing without an interface:
it is tried on every interface that has a usable IPv6 link-local address of its own (up, not
loopback, duplicate address detection passed), as ``fe80::a9fe:a9fe%eth0`` and so on.
"""

from __future__ import annotations

import errno
import ipaddress
import selectors
import socket
import time
from typing import List, NamedTuple, Optional, Sequence
from urllib.parse import urlsplit, urlunsplit

__all__ = ["HEAD_START", "Candidate", "RaceResult", "candidates", "link_local_interfaces",
           "race", "with_zone"]

# RFC 8305's recommended "Connection Attempt Delay": long against a link-local round trip
# (well under a millisecond), short against the 2 s connect timeout a black hole would cost.
HEAD_START = 0.25

IF_INET6 = "/proc/net/if_inet6"
_SCOPE_LINK = 0x20
_UNUSABLE_FLAGS = 0x40 | 0x08  # IFA_F_TENTATIVE, IFA_F_DADFAILED: the kernel will not bind it

_ERRNO_CAUSES = {
    errno.ECONNREFUSED: "connection refused",
    errno.ENETUNREACH: "network unreachable",
    errno.EHOSTUNREACH: "host unreachable",
    errno.EADDRNOTAVAIL: "address not available",
    errno.ECONNRESET: "connection reset",
    errno.ETIMEDOUT: "connect timed out",
    errno.EINVAL: "address unusable",
    errno.EAFNOSUPPORT: "address family not supported",
}


class Candidate(NamedTuple):
    """One address of the service: ``shown`` is the platform's origin (what messages name),
    ``sent`` where packets go (the same, unless a test override replaces it)."""

    shown: str
    sent: str


class RaceResult(NamedTuple):
    winner: Optional[int]  # index into the candidates; None when none connected in time
    causes: List[Optional[str]]  # per candidate: why it lost (None: not tried, or won)


def link_local_interfaces(path: str = IF_INET6) -> List[str]:
    """Names of the interfaces with a usable IPv6 link-local address, in the kernel's order;
    none when IPv6 is off (no such file)."""
    names: List[str] = []
    try:
        with open(path, encoding="ascii", errors="replace") as lines:
            for line in lines:
                fields = line.split()
                if len(fields) != 6:
                    continue
                address, _, _, scope, flags, name = fields
                try:
                    usable = (int(scope, 16) == _SCOPE_LINK and address.startswith("fe80")
                              and not int(flags, 16) & _UNUSABLE_FLAGS)
                except ValueError:
                    continue
                if usable and name != "lo" and name not in names:
                    names.append(name)
    except OSError:
        return []
    return names


def with_zone(origin: str, interface: str) -> str:
    """``http://[fe80::a9fe:a9fe]`` on ``eth0``: ``http://[fe80::a9fe:a9fe%25eth0]`` (RFC 6874)."""
    parts = urlsplit(origin)
    port = f":{parts.port}" if parts.port else ""
    return urlunsplit(parts._replace(netloc=f"[{parts.hostname}%25{interface}]{port}"))


def _needs_zone(origin: str) -> bool:
    host = urlsplit(origin).hostname or ""
    try:
        return ipaddress.ip_address(host).is_link_local and ":" in host and "%" not in host
    except ValueError:
        return False


def candidates(origin: str, ipv6_origins: Sequence[str], *,
               interfaces_path: str = IF_INET6) -> List[Candidate]:
    """The platform's addresses in race order: ``origin`` (IPv4), then each IPv6 origin, a
    link-local one once per interface that can reach it."""
    found = [Candidate(origin, origin)]
    for ipv6 in ipv6_origins:
        if _needs_zone(ipv6):
            found.extend(Candidate(with_zone(ipv6, name), with_zone(ipv6, name))
                         for name in link_local_interfaces(interfaces_path))
        else:
            found.append(Candidate(ipv6, ipv6))
    return found


def _socket_address(origin: str):
    """(family, sockaddr) for ``origin``'s host and port; raises OSError."""
    parts = urlsplit(origin)
    host = _host(parts.netloc).replace("%25", "%")
    port = parts.port or {"http": 80, "https": 443}[parts.scheme.lower()]
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
        flags = socket.AI_NUMERICHOST  # a literal: never a name lookup
    except ValueError:
        flags = 0  # an override such as http://localhost:8080
    family, _, _, _, sockaddr = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM, 0,
                                                   flags)[0]
    return family, sockaddr


def _host(netloc: str) -> str:
    """The host of ``netloc``, brackets removed, case kept (an interface name in a zone is
    case-sensitive; ``urlsplit().hostname`` lowercases it)."""
    if netloc.startswith("["):
        return netloc[1:netloc.find("]")]
    return netloc.rsplit(":", 1)[0] if netloc.count(":") == 1 else netloc


def _cause(err: int) -> str:
    return _ERRNO_CAUSES.get(err, f"connect failed ({errno.errorcode.get(err, err)})")


def race(origins: Sequence[str], *, timeout: float, head_start: float = HEAD_START,
         clock=time.monotonic) -> RaceResult:
    """Connect to ``origins`` Happy-Eyeballs style (see the module docstring); every socket
    opened is closed again. ``timeout`` bounds the whole race."""
    causes: List[Optional[str]] = [None] * len(origins)
    started = clock()
    end = started + max(timeout, 0.0)
    next_index, next_start = 0, started
    pending = {}  # socket -> index
    selector = selectors.DefaultSelector()
    try:
        while True:
            now = clock()
            while next_index < len(origins) and now >= next_start:
                index, next_index = next_index, next_index + 1
                sock = _start(origins[index], causes, index)
                if sock is True:
                    return RaceResult(index, causes)
                if sock is None:  # failed at once: the next one starts now
                    continue
                pending[sock] = index
                selector.register(sock, selectors.EVENT_WRITE)
                next_start = now + head_start
            if not pending and next_index >= len(origins):
                return RaceResult(None, causes)
            wake = end if next_index >= len(origins) else min(end, next_start)
            if now >= end:
                break
            events = selector.select(max(0.0, wake - now)) if pending else \
                (time.sleep(max(0.0, wake - now)) or [])
            for key, _ in events:
                sock = key.fileobj
                index = pending.pop(sock)
                selector.unregister(sock)
                err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                sock.close()
                if err == 0:
                    return RaceResult(index, causes)
                causes[index] = _cause(err)
                next_start = clock()  # a failure hands over at once
        for index in pending.values():
            causes[index] = "connect timed out"
        return RaceResult(None, causes)
    finally:
        for sock in list(pending):
            sock.close()
        selector.close()


def _start(origin: str, causes: List[Optional[str]], index: int):
    """A non-blocking connect to ``origin``: True when it connected at once, None when it
    failed at once (its cause recorded), else the socket still connecting."""
    try:
        family, sockaddr = _socket_address(origin)
    except (OSError, UnicodeError, ValueError):
        causes[index] = "address unusable"
        return None
    try:
        sock = socket.socket(family, socket.SOCK_STREAM)
    except OSError as err:
        causes[index] = _cause(err.errno or 0)
        return None
    sock.setblocking(False)
    err = sock.connect_ex(sockaddr)
    if err == 0:
        sock.close()
        return True
    if err in (errno.EINPROGRESS, errno.EAGAIN, errno.EALREADY):
        return sock
    sock.close()
    causes[index] = _cause(err)
    return None
