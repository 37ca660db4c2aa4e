"""Test runs only: no Python process of the suite may reach beyond loopback.

tests/conftest.py puts this directory first on ``PYTHONPATH``, so the test process and every
Python it starts (the agent, the fake server, builds) import it at start-up. It wraps the
socket calls that send a packet — ``connect``, ``connect_ex``, ``sendto``, ``sendmsg`` — and
``getaddrinfo``: an IPv4/IPv6 peer that is not a loopback address, or a host name other than
``localhost``, is refused with ENETUNREACH ("network is unreachable") before anything leaves
the machine, so a test that forgot an override fails instead of reaching a real metadata
service. Unix and netlink sockets are untouched. QEMU guests are not Python processes of this
machine's network: they run in network namespaces of their own (tests/e2e/e2e_boot.py).

Then the interpreter's own sitecustomize (Debian ships one), if any, runs as it would have.
"""

import errno
import importlib.util
import ipaddress
import os
import socket
import sys

_INET = (socket.AF_INET, socket.AF_INET6)
_LOCAL_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost")


def _is_loopback(host) -> bool:
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    if host is None or host == "":
        return True  # getaddrinfo(None, port): the wildcard a server binds
    host = str(host).split("%", 1)[0].strip("[]")
    if host in _LOCAL_NAMES:
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False  # a name: resolving it would already send a DNS query
    if address.is_unspecified:
        return True  # 0.0.0.0 / :: as a destination means this machine
    mapped = getattr(address, "ipv4_mapped", None)
    return address.is_loopback or (mapped is not None and mapped.is_loopback)


def _refuse(what: str, host) -> OSError:
    return OSError(errno.ENETUNREACH,
                   f"network is unreachable (test network guard: {what} {host!r} refused; "
                   "tests reach only loopback)")


def _guard(cls) -> None:
    connect, connect_ex = cls.connect, cls.connect_ex
    sendto, sendmsg = cls.sendto, cls.sendmsg

    def guarded_connect(self, address):
        if self.family in _INET and not _is_loopback(address[0]):
            raise _refuse("connect to", address[0])
        return connect(self, address)

    def guarded_connect_ex(self, address):
        if self.family in _INET and not _is_loopback(address[0]):
            return errno.ENETUNREACH
        return connect_ex(self, address)

    def guarded_sendto(self, data, *args):
        address = args[-1]
        if self.family in _INET and not _is_loopback(address[0]):
            raise _refuse("send to", address[0])
        return sendto(self, data, *args)

    def guarded_sendmsg(self, buffers, ancdata=(), flags=0, address=None):
        if self.family in _INET and address is not None and not _is_loopback(address[0]):
            raise _refuse("send to", address[0])
        if address is None:
            return sendmsg(self, buffers, ancdata, flags)
        return sendmsg(self, buffers, ancdata, flags, address)

    cls.connect, cls.connect_ex = guarded_connect, guarded_connect_ex
    cls.sendto, cls.sendmsg = guarded_sendto, guarded_sendmsg


def _guard_getaddrinfo() -> None:
    getaddrinfo = socket.getaddrinfo

    def guarded_getaddrinfo(host, *args, **kwargs):
        if not _is_loopback(host):
            raise socket.gaierror(socket.EAI_NONAME,
                                  f"test network guard: name {host!r} not resolved")
        return getaddrinfo(host, *args, **kwargs)

    socket.getaddrinfo = guarded_getaddrinfo


def _run_next_sitecustomize() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    for entry in sys.path:
        if os.path.abspath(entry or ".") == here:
            continue
        candidate = os.path.join(entry or ".", "sitecustomize.py")
        if os.path.isfile(candidate):
            spec = importlib.util.spec_from_file_location("_next_sitecustomize", candidate)
            module = importlib.util.module_from_spec(spec)
            try:
                spec.loader.exec_module(module)
            except Exception:  # as site.py does: a broken sitecustomize is not fatal
                pass
            return


if not getattr(socket, "_cl_metadata_test_guard", False):
    _guard(socket.socket)
    _guard_getaddrinfo()
    socket._cl_metadata_test_guard = True
    _run_next_sitecustomize()
