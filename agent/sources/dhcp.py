"""What the DHCP server told this machine: its identifier and private options, from lease files.

Read-only, bounded, no D-Bus. Azure finds its WireServer in option 245, CloudStack its metadata
server in the server identifier (docs/protocols.md). Sources, newest format first:

- systemd-networkd: ``/run/systemd/netif/leases/<ifindex>``, ``KEY=VALUE`` lines;
  ``SERVER_ADDRESS=<IPv4>``; private options (224–254) as ``OPTION_<code>=<lower-case hex>``.
- NetworkManager: its run-state files (``/run/NetworkManager/devices/<ifindex>``) hold no DHCP
  options, so they are not read. Lease files in ``/run/NetworkManager`` (initrd) and
  ``/var/lib/NetworkManager``: ``internal-<uuid>-<iface>.lease`` in the networkd format (the
  systemd-based client; the newer nettools client writes only ``ADDRESS=``, so there only
  D-Bus knows the options and nothing is found here), ``dhclient-<uuid>-<iface>.lease`` in
  dhclient's format.
- dhclient: ``/var/lib/dhcp/dhclient*.leases`` (Debian), ``/var/lib/dhclient/*.lease*``
  (Fedora): ``lease { … }`` blocks, newest last, with ``option dhcp-server-identifier <IPv4>;``
  and unknown options as ``option unknown-245 a8:3f:81:10;`` (hex bytes, no leading zeros) or as
  a quoted string when every byte is printable.

Waiting (upstream polled ~28 s, which delayed boots, coreos/afterburn#652): only while a DHCP
client's directory exists but holds no lease yet, at most ``WAIT_LIMIT`` seconds and never past
the run's deadline. A lease without the wanted value will not grow it: no wait then.
"""

from __future__ import annotations

import glob
import ipaddress
import logging
import os
import re
import stat
import time
from types import MappingProxyType
from typing import Callable, Dict, List, Mapping, NamedTuple, Optional, Tuple

from cl_metadata.sources.deadline import Deadline

log = logging.getLogger("cl_metadata")

ROOT = "/"  # the file-system root the paths below are under; tests point it at a temp tree
NETWORKD_LEASES = "run/systemd/netif/leases"
NETWORKMANAGER_DIRS = ("run/NetworkManager", "var/lib/NetworkManager")
DHCLIENT_GLOBS = ("var/lib/dhcp/dhclient*.leases", "var/lib/dhclient/*.lease*")
WAIT_LIMIT = 5.0  # seconds at most spent waiting for a first lease
POLL_INTERVAL = 0.25
MAX_LEASE_BYTES = 1 << 20

_OPTION_LINE = re.compile(r"\s*option\s+([A-Za-z0-9-]+)\s+(.*?)\s*;\s*$")
_HEX_BYTES = re.compile(r"[0-9A-Fa-f]{1,2}(?::[0-9A-Fa-f]{1,2})*")
_QUOTED_CHAR = re.compile(r"\\([0-7]{3})|\\(.)|(.)", re.S)  # \ooo, \c or a plain character


class Lease(NamedTuple):
    source: str  # the file it came from
    server_identifier: Optional[str] = None  # as written; checked when used
    options: Mapping[int, bytes] = MappingProxyType({})


class Found(NamedTuple):
    value: str
    source: str


# --- parsing (pure) --------------------------------------------------------------------------

def parse_networkd_lease(text: str, source: str) -> Lease:
    """A systemd-networkd (or NetworkManager internal client) lease file."""
    server, options = None, {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if not sep:
            continue
        if key == "SERVER_ADDRESS":
            server = value
        elif key.startswith("OPTION_") and key[7:].isdigit():
            try:
                options[int(key[7:])] = bytes.fromhex(value)
            except ValueError:
                log.debug("%s: %s is not hex; ignored", source, key)
    return Lease(source, server, options)


def parse_dhclient_leases(text: str, source: str) -> List[Lease]:
    """The ``lease { … }`` blocks of a dhclient lease file, newest (last written) first."""
    leases: List[Lease] = []
    block: Optional[Tuple[Optional[str], Dict[int, bytes]]] = None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped == "lease {":
            block = (None, {})
        elif stripped == "}" and block is not None:
            leases.append(Lease(source, block[0], block[1]))
            block = None
        elif block is not None:
            match = _OPTION_LINE.fullmatch(line)
            if match is None:
                continue
            name, value = match.groups()
            if name == "dhcp-server-identifier":
                block = (value, block[1])
            elif name.startswith("unknown-") and name[8:].isdigit():
                data = dhclient_option_bytes(value)
                if data is not None:
                    block[1][int(name[8:])] = data
    return leases[::-1]


def dhclient_option_bytes(value: str) -> Optional[bytes]:
    """The raw bytes of a dhclient option value: ``a8:3f:81:10``, ``"…"`` or a dotted IPv4."""
    if len(value) >= 2 and value[0] == value[-1] == '"':
        out = bytearray()
        for octal, escaped, plain in _QUOTED_CHAR.findall(value[1:-1]):
            if octal:
                out.append(int(octal, 8) & 0xFF)
            else:
                out.extend((escaped or plain).encode("latin-1", "replace"))
        return bytes(out)
    if _HEX_BYTES.fullmatch(value):
        return bytes(int(part, 16) for part in value.split(":"))
    try:
        return ipaddress.IPv4Address(value).packed
    except ValueError:
        return None


def usable_ipv4(value: Optional[str]) -> Optional[str]:
    """``value`` as canonical IPv4 text when it names a host one can talk to, else None."""
    try:
        address = ipaddress.IPv4Address((value or "").strip())
    except ValueError:
        return None
    if address.is_unspecified or address.is_multicast or address.is_loopback \
            or address == ipaddress.IPv4Address("255.255.255.255"):
        return None
    return str(address)


# --- reading ---------------------------------------------------------------------------------

def _read(path: str) -> Optional[str]:
    """A lease file's text; None when it is not a readable regular file of sane size."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as err:
        log.debug("%s: not read (%s)", path, err.strerror)
        return None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            return None
        data = f.read(MAX_LEASE_BYTES + 1)
    if len(data) > MAX_LEASE_BYTES:
        log.warning("%s: larger than %d bytes; not read", path, MAX_LEASE_BYTES)
        return None
    return data.decode("utf-8", "replace")


def read_leases(root: Optional[str] = None) -> Tuple[List[Lease], bool]:
    """Every lease found, in order of preference, and whether any DHCP client's directory
    exists (when none does, no lease is ever going to appear)."""
    base = root or ROOT
    directories = [NETWORKD_LEASES, *NETWORKMANAGER_DIRS,
                   *(os.path.dirname(pattern) for pattern in DHCLIENT_GLOBS)]
    any_directory = any(os.path.isdir(os.path.join(base, d)) for d in directories)
    leases: List[Lease] = []
    for path, parse in _lease_files(base):
        text = _read(path)
        if text is not None:
            leases.extend(parse(text, path))
    return leases, any_directory


def _lease_files(base: str) -> List[Tuple[str, Callable[[str, str], List[Lease]]]]:
    """(path, parser) of every lease file: networkd (lowest ifindex first), then
    NetworkManager's, then dhclient's; DHCPv6 leases are left out."""

    def networkd(text: str, path: str) -> List[Lease]:
        return [parse_networkd_lease(text, path)]

    def matching(*parts: str) -> List[str]:
        return sorted(glob.glob(os.path.join(glob.escape(base), *parts)))

    directory = os.path.join(base, NETWORKD_LEASES)
    try:
        indexes = sorted((name for name in os.listdir(directory) if name.isdigit()), key=int)
    except OSError:
        indexes = []
    files = [(os.path.join(directory, name), networkd) for name in indexes]
    for nm_directory in NETWORKMANAGER_DIRS:
        files += [(path, networkd) for path in matching(nm_directory, "internal-*.lease")]
        files += [(path, parse_dhclient_leases)
                  for path in matching(nm_directory, "dhclient-*.lease")]
    for pattern in DHCLIENT_GLOBS:
        files += [(path, parse_dhclient_leases) for path in matching(pattern)
                  if not os.path.basename(path).startswith("dhclient6")]
    return files


def find(pick: Callable[[Lease], Optional[str]], *, deadline: Deadline,
         root: Optional[str] = None, limit: Optional[float] = None,
         interval: Optional[float] = None, sleep: Callable[[float], None] = time.sleep,
         clock: Callable[[], float] = time.monotonic) -> Optional[Found]:
    """The first lease value ``pick`` accepts, waiting briefly for a first lease (see above)."""
    limit = WAIT_LIMIT if limit is None else limit
    interval = POLL_INTERVAL if interval is None else interval
    end = clock() + min(limit, deadline.remaining())
    while True:
        leases, any_directory = read_leases(root)
        for lease in leases:
            value = pick(lease)
            if value is not None:
                return Found(value, lease.source)
        if leases or not any_directory or clock() + interval > end:
            return None
        sleep(interval)


def server_identifier(*, deadline: Deadline, **options) -> Optional[Found]:
    """The DHCP server identifier (option 54) of the first lease that has a usable one."""
    return find(lambda lease: usable_ipv4(lease.server_identifier), deadline=deadline,
                **options)


def option_ipv4(code: int, *, deadline: Deadline, **options) -> Optional[Found]:
    """Private option ``code`` holding one IPv4 address (4 bytes, network order)."""

    def pick(lease: Lease) -> Optional[str]:
        data = lease.options.get(code)
        if data is None:
            return None
        if len(data) != 4:
            log.warning("%s: DHCP option %d is not a 4-byte IPv4 address; ignored",
                        lease.source, code)
            return None
        return usable_ipv4(str(ipaddress.IPv4Address(data)))

    return find(pick, deadline=deadline, **options)
