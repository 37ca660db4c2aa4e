"""The end-to-end boot of issue 12: static networking from an OpenStack config drive.

The image's DHCP configuration is removed before the network; ``cl-metadata-network.service``
(enabled as an image that wants it would) writes the interface the drive's
``network_data.json`` describes into /run/systemd/network before systemd-networkd starts. The
guest must come up with exactly that address, default route and DNS server — no DHCP lease —
and reach the fake metadata server over it (an ``openstack-metadata`` run after
network-online.target). QEMU's user network is 169.254.169.0/24 with its host at .2 and its DNS
at .3 (e2e_boot.SLIRP); the NIC's MAC is fixed by e2e_boot.
"""

from __future__ import annotations

from e2e_results import BootResult, Checks
from e2e_scenarios import AGENT, Scenario, check_multi_user, check_unit_succeeded

NETWORK = "cl-metadata-network.service"
REACH = "clmtest-reach.service"
MAC = "52:54:00:12:34:56"  # e2e_boot's NIC
ADDRESS, PREFIX, GATEWAY, DNS = "169.254.169.50", 24, "169.254.169.2", "169.254.169.3"
REACHED_FILE = "/run/metadata/reached"
UNIT_DIR = "/run/systemd/network"


def expected_unit(address: str) -> str:
    """Exactly what the networkd writer makes of the drive's one static interface."""
    return f"""\
# Written by cl-metadata from the platform's metadata; replaced on every run.

[Match]
MACAddress={MAC}

[Network]
DNS={DNS}

[Address]
Address={address}/{PREFIX}

[Route]
Destination=0.0.0.0/0
Gateway={GATEWAY}
"""


EXPECTED_UNIT = expected_unit(ADDRESS)

# The image's own DHCP configuration goes: only the platform's description configures eth0.
NO_DHCP_SETUP = "rm -f /etc/systemd/network/50-eth.network\n"
REACH_UNIT = f"""\
[Unit]
Description=clmtest: reach the metadata service over the configured network
Wants=network-online.target
After=network-online.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/bin/cl-metadata --provider=openstack-metadata --attributes={REACHED_FILE} --timeout=60
"""
LINKS = ("sysinit.target.wants cl-metadata-network.service\n"
         "multi-user.target.wants clmtest-reach.service\n")


def check_static_network(boot: BootResult, ck: Checks, scenario: Scenario) -> None:
    check_unit_succeeded(boot, ck, NETWORK)
    mounted = [m for m in boot.messages(NETWORK) if m.startswith("config drive: mounted ")]
    ck.check("it read the iso9660 drive labelled config-2", any(
        m.startswith("config drive: mounted /dev/sr") and "(iso9660, label config-2)" in m
        for m in mounted), repr(mounted))
    units = {path.rsplit("/", 1)[1]: item.get("content")
             for path, item in boot.files_under(UNIT_DIR).items() if item.get("type") == "file"}
    ck.equal(f"{UNIT_DIR}: the one unit the drive describes", list(units.values()),
             [EXPECTED_UNIT])
    network = (boot.report or {}).get("network", {})
    eth0 = [link for link in network.get("addr", []) if link.get("ifname") == "eth0"]
    addresses = [(a.get("local"), a.get("prefixlen"), bool(a.get("dynamic")))
                 for link in eth0 for a in link.get("addr_info", []) if a.get("family") == "inet"]
    ck.equal("eth0's IPv4 addresses: exactly the drive's, static (no DHCP lease)", addresses,
             [(ADDRESS, PREFIX, False)])
    ck.equal("eth0's MAC is the one the drive matched", [l.get("address") for l in eth0], [MAC])
    defaults = [(r.get("gateway"), r.get("dev"), r.get("protocol"))
                for r in network.get("route", []) if r.get("dst") == "default"]
    ck.equal("the default route: via the drive's gateway, set statically", defaults,
             [(GATEWAY, "eth0", "static")])
    links = [item.get("content", "") for path, item in
             boot.files_under("/run/systemd/netif/links").items() if item.get("type") == "file"]
    dns = [line for text in links for line in text.splitlines() if line.startswith("DNS=")]
    ck.equal("networkd's DNS servers: the drive's", dns, [f"DNS={DNS}"])
    # ordering: the units were written before systemd-networkd started
    written = boot.uptime_at(NETWORK, "ExecMainExitTimestampMonotonic")
    networkd = boot.uptime_at("systemd-networkd.service", "ExecMainStartTimestampMonotonic")
    ck.check("cl-metadata-network.service finished before systemd-networkd started",
             written is not None and networkd is not None and written <= networkd,
             f"finished at {written}, networkd started at {networkd}")
    ck.equal("the drive-only unit asked the metadata service nothing",
             [m for m in boot.messages(NETWORK) if "request" in m.lower()], [])
    # over the static address: the metadata service answered the openstack-metadata run
    check_unit_succeeded(boot, ck, REACH)
    reached = (boot.file(REACHED_FILE) or {}).get("content", "")
    ck.contains("the run over the network wrote the instance's attributes", reached,
                "COREOS_OPENSTACK_INSTANCE_ID=")
    paths = [r.get("path") for r in boot.requests]
    ck.check("the fake server saw the guest's requests", bool(paths) and all(
        p.startswith(("/openstack/", "/latest/")) for p in paths), repr(paths))
    ck.equal("the attributes unit was not involved", boot.unit(AGENT).get("ActiveState"),
             "inactive")
    check_multi_user(boot, ck)


SCENARIOS = [
    Scenario("openstack-static-network", "issue 12",
             "OpenStack config drive with a static network_data.json; no DHCP",
             ["ignition.platform.id=openstack"], check_static_network,
             platform="openstack", drive="iso",
             instance_extra={"network-interfaces": [{
                 "mac": MAC, "local-ipv4": ADDRESS, "ipv4-prefix": PREFIX,
                 "ipv4-gateway": GATEWAY}], "nameservers": [DNS]},
             guest={"units/clmtest-reach.service": REACH_UNIT, "links": LINKS,
                    "setup": NO_DHCP_SETUP}),
]
