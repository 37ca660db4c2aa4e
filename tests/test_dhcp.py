"""DHCP lease reading: systemd-networkd, NetworkManager and dhclient files under a temp root,
the preference order, the value checks, and the bounded wait (fake clock, no real sleeping)."""

import logging
import os

import pytest

from cl_metadata.sources import dhcp
from cl_metadata.sources.deadline import Deadline

NETWORKD_LEASE = """# This is private data. Do not parse.
ADDRESS=10.0.0.4
NETMASK=255.255.255.0
ROUTER=10.0.0.1
SERVER_ADDRESS=10.0.0.2
OPTION_245=a83f8110
"""

DHCLIENT_LEASES = """lease {
  interface "eth0";
  fixed-address 10.1.0.4;
  option dhcp-server-identifier 10.1.0.1;
  option unknown-245 a:0:0:1;
  option domain-name "example.internal";
  expire 5 2152/03/10 09:03:39;
}
lease {
  interface "eth0";
  fixed-address 10.1.0.4;
  option dhcp-server-identifier 10.1.0.2;
  option unknown-245 a8:3f:81:10;
  expire 5 2152/03/10 09:03:39;
}
"""


class FakeTime:
    """A clock and a sleep that only move when slept."""

    def __init__(self):
        self.now = 1000.0
        self.sleeps = []

    def clock(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


def write(root, relative, text):
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return str(path)


def lookup(root, what="server", *, seconds=60.0, fake=None, **options):
    fake = fake or FakeTime()
    deadline = Deadline(seconds, clock=fake.clock)
    kwargs = dict(deadline=deadline, root=str(root), sleep=fake.sleep, clock=fake.clock, **options)
    if what == "server":
        return dhcp.server_identifier(**kwargs)
    return dhcp.option_ipv4(245, **kwargs)


def test_networkd_lease_gives_server_and_option_245(tmp_path):
    path = write(tmp_path, "run/systemd/netif/leases/2", NETWORKD_LEASE)
    assert lookup(tmp_path) == dhcp.Found("10.0.0.2", path)
    assert lookup(tmp_path, "245") == dhcp.Found("168.63.129.16", path)


def test_lowest_ifindex_first(tmp_path):
    write(tmp_path, "run/systemd/netif/leases/10", "SERVER_ADDRESS=10.9.9.9\n")
    path = write(tmp_path, "run/systemd/netif/leases/3", "SERVER_ADDRESS=10.3.3.3\n")
    write(tmp_path, "run/systemd/netif/leases/not-an-index", "SERVER_ADDRESS=10.7.7.7\n")
    assert lookup(tmp_path) == dhcp.Found("10.3.3.3", path)


def test_dhclient_newest_lease_block_wins(tmp_path):
    path = write(tmp_path, "var/lib/dhcp/dhclient.eth0.leases", DHCLIENT_LEASES)
    assert lookup(tmp_path) == dhcp.Found("10.1.0.2", path)
    assert lookup(tmp_path, "245") == dhcp.Found("168.63.129.16", path)


def test_dhclient_older_block_used_when_the_newest_lacks_the_option(tmp_path):
    text = DHCLIENT_LEASES.replace("  option unknown-245 a8:3f:81:10;\n", "")
    write(tmp_path, "var/lib/dhcp/dhclient.leases", text)
    assert lookup(tmp_path, "245").value == "10.0.0.1"  # "a:0:0:1": no leading zeros


@pytest.mark.parametrize("value, expected", [
    ("a8:3f:81:10", b"\xa8\x3f\x81\x10"),
    ("a:0:0:1", b"\x0a\x00\x00\x01"),
    ('"ABCD"', b"ABCD"),
    ('"\\012\\000\\000\\001"', b"\x0a\x00\x00\x01"),
    ('"a\\"b"', b'a"b'),
    ("10.0.0.1", b"\x0a\x00\x00\x01"),
    ("not bytes", None),
    ("a8:3f:811:10", None),
])
def test_dhclient_option_values(value, expected):
    assert dhcp.dhclient_option_bytes(value) == expected


def test_networkmanager_lease_files(tmp_path):
    internal = write(tmp_path, "var/lib/NetworkManager/internal-0a1b-eth0.lease", NETWORKD_LEASE)
    assert lookup(tmp_path) == dhcp.Found("10.0.0.2", internal)
    os.remove(internal)
    via_dhclient = write(tmp_path, "run/NetworkManager/dhclient-0a1b-eth0.lease", DHCLIENT_LEASES)
    assert lookup(tmp_path, "245") == dhcp.Found("168.63.129.16", via_dhclient)


def test_networkmanager_nettools_lease_has_nothing_and_is_not_waited_for(tmp_path):
    # NetworkManager's nettools client saves only the address: the lease exists, so no wait
    write(tmp_path, "var/lib/NetworkManager/internal-0a1b-eth0.lease",
          "# This is private data. Do not parse.\nADDRESS=10.0.0.4\n")
    fake = FakeTime()
    assert lookup(tmp_path, "245", fake=fake) is None
    assert fake.sleeps == []


def test_dhcpv6_and_networkmanager_v6_leases_are_ignored(tmp_path):
    write(tmp_path, "var/lib/dhcp/dhclient6.eth0.leases", DHCLIENT_LEASES)
    write(tmp_path, "var/lib/NetworkManager/internal6-0a1b-eth0.lease", NETWORKD_LEASE)
    write(tmp_path, "var/lib/NetworkManager/dhclient6-0a1b-eth0.lease", DHCLIENT_LEASES)
    fake = FakeTime()
    assert lookup(tmp_path, fake=fake, limit=1.0) is None
    assert fake.sleeps  # no lease counts: the directories exist, so it waited


@pytest.mark.parametrize("bad", ["0.0.0.0", "255.255.255.255", "224.0.0.1", "127.0.0.1",
                                 "10.0.0", "fe80::1", ""])
def test_unusable_server_identifiers_are_skipped(tmp_path, bad):
    write(tmp_path, "run/systemd/netif/leases/2", f"SERVER_ADDRESS={bad}\n")
    path = write(tmp_path, "run/systemd/netif/leases/3", "SERVER_ADDRESS=10.3.3.3\n")
    assert lookup(tmp_path) == dhcp.Found("10.3.3.3", path)


def test_option_245_of_the_wrong_size_is_ignored_with_a_warning(tmp_path, caplog):
    path = write(tmp_path, "run/systemd/netif/leases/2", "OPTION_245=a83f811011\n")
    write(tmp_path, "run/systemd/netif/leases/3", "OPTION_245=zz\n")
    with caplog.at_level(logging.WARNING, logger="cl_metadata"):
        assert lookup(tmp_path, "245") is None
    assert f"{path}: DHCP option 245 is not a 4-byte IPv4 address" in caplog.text
    assert "a83f8110" not in caplog.text


def test_no_dhcp_client_directory_means_no_wait(tmp_path):
    fake = FakeTime()
    assert lookup(tmp_path / "nothing-here", fake=fake) is None
    assert fake.sleeps == []


def test_waits_for_a_first_lease_and_finds_it(tmp_path):
    (tmp_path / "run/systemd/netif/leases").mkdir(parents=True)
    fake = FakeTime()

    def sleep(seconds):
        fake.sleep(seconds)
        if len(fake.sleeps) == 3:  # the DHCP client finishes while we wait
            write(tmp_path, "run/systemd/netif/leases/2", NETWORKD_LEASE)

    found = dhcp.server_identifier(deadline=Deadline(60, clock=fake.clock), root=str(tmp_path),
                                   interval=0.25, sleep=sleep, clock=fake.clock)
    assert found.value == "10.0.0.2"
    assert fake.sleeps == [0.25, 0.25, 0.25]


def test_wait_is_capped_by_the_limit(tmp_path):
    (tmp_path / "var/lib/dhcp").mkdir(parents=True)
    fake = FakeTime()
    assert lookup(tmp_path, fake=fake) is None  # module defaults: 5 s in 0.25 s steps
    assert sum(fake.sleeps) <= dhcp.WAIT_LIMIT and len(fake.sleeps) == 20


def test_wait_is_capped_by_the_deadline(tmp_path):
    (tmp_path / "var/lib/dhcp").mkdir(parents=True)
    fake = FakeTime()
    assert lookup(tmp_path, seconds=1.0, fake=fake, limit=5.0, interval=0.25) is None
    assert sum(fake.sleeps) <= 1.0 and len(fake.sleeps) == 4


def test_module_root_is_the_default(tmp_path, monkeypatch):
    path = write(tmp_path, "run/systemd/netif/leases/2", NETWORKD_LEASE)
    monkeypatch.setattr(dhcp, "ROOT", str(tmp_path))
    assert dhcp.server_identifier(deadline=Deadline(5)) == dhcp.Found("10.0.0.2", path)


def test_symlinks_fifos_and_oversized_files_are_not_read(tmp_path, monkeypatch, caplog):
    real = write(tmp_path, "elsewhere/lease", "SERVER_ADDRESS=10.6.6.6\n")
    leases = tmp_path / "run/systemd/netif/leases"
    leases.mkdir(parents=True)
    os.symlink(real, leases / "2")
    os.mkfifo(leases / "3")  # would block a plain open() forever
    big = write(tmp_path, "run/systemd/netif/leases/4", "SERVER_ADDRESS=10.4.4.4\n" + "#" * 100)
    monkeypatch.setattr(dhcp, "MAX_LEASE_BYTES", 64)
    with caplog.at_level(logging.WARNING, logger="cl_metadata"):
        assert lookup(tmp_path) is None
    assert f"{big}: larger than 64 bytes; not read" in caplog.text
