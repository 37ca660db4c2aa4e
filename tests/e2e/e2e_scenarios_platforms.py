"""The end-to-end boot of issue 15's new platform: OpenNebula's contextualization CD-ROM.

An iso9660 drive labelled ``CONTEXT`` with the ``context.sh`` the fake server writes as oned
does (one static NIC, the host name, the keys). The image has no DHCP configuration:
``cl-metadata-network.service`` gives eth0 the ``ETH0_*`` address before systemd-networkd
starts, ``cl-metadata.service`` (pulled in by a consumer, with the ``--hostname`` drop-in)
writes the attributes and /etc/hostname, and the host logs in as ``core`` with the key the
drive carried, over the static address. The address is QEMU's first DHCP address (e2e_boot's
``dhcpstart``), where its ``hostfwd`` forwards the host's ssh port, though no DHCP serves it.
"""

from __future__ import annotations

from e2e_results import BootResult, Checks
from e2e_scenarios import (AGENT, CONSUMER_LINK, HOSTNAME, HOSTNAME_DROP_IN, INSTANCE_ID,
                           PUBLIC_IPV4, Scenario, check_attributes, check_consumer, check_keys,
                           check_multi_user, check_unit_succeeded, consumer_unit, env_file,
                           keys_for_core, no_http)
from e2e_scenarios_network import (DNS, GATEWAY, MAC, NETWORK, NO_DHCP_SETUP, PREFIX,
                                   expected_unit)

ADDRESS = "169.254.169.15"  # e2e_boot.SLIRP's dhcpstart: where hostfwd delivers
ATTRIBUTES = {"COREOS_OPENNEBULA_HOSTNAME": HOSTNAME, "COREOS_OPENNEBULA_INSTANCE_ID": INSTANCE_ID,
              "COREOS_OPENNEBULA_IPV4_0": ADDRESS, "COREOS_OPENNEBULA_IPV4_PUBLIC": PUBLIC_IPV4}
EXPECTED_UNIT = expected_unit(ADDRESS)
# eth0's name in OpenNebula's numbering; the unit is named by the MAC it matches
UNIT_PATH = f"/run/systemd/network/10-{MAC}.network"


def check_opennebula(boot: BootResult, ck: Checks, scenario: Scenario) -> None:
    check_unit_succeeded(boot, ck, NETWORK)
    ck.equal(f"{UNIT_PATH}: eth0 as ETH0_* describes it",
             (boot.file(UNIT_PATH) or {}).get("content"), EXPECTED_UNIT)
    network = (boot.report or {}).get("network", {})
    addresses = [(a.get("local"), a.get("prefixlen"), bool(a.get("dynamic")))
                 for link in network.get("addr", []) if link.get("ifname") == "eth0"
                 for a in link.get("addr_info", []) if a.get("family") == "inet"]
    ck.equal("eth0: exactly ETH0_IP/ETH0_MASK, static", addresses, [(ADDRESS, PREFIX, False)])
    ck.equal("the default route via ETH0_GATEWAY",
             [(r.get("gateway"), r.get("dev")) for r in network.get("route", [])
              if r.get("dst") == "default"], [(GATEWAY, "eth0")])
    mounted = [m for m in boot.messages(AGENT) if m.startswith("config drive: mounted ")]
    ck.check("the agent read the iso9660 drive labelled CONTEXT", any(
        m.startswith("config drive: mounted /dev/sr") and "(iso9660, label CONTEXT)" in m
        for m in mounted), repr(mounted))
    check_unit_succeeded(boot, ck, AGENT)
    check_attributes(boot, ck, ATTRIBUTES)
    check_consumer(boot, ck, f"{HOSTNAME} {INSTANCE_ID}")
    ck.equal("/etc/hostname: SET_HOSTNAME", (boot.file("/etc/hostname") or {}).get("content"),
             HOSTNAME + "\n")
    check_keys(boot, ck, "core", keys_for_core(boot.run_keys))
    login = boot.outcome.get("login") or {}
    ck.check("the guest said it was ready for a login", login.get("ready"), repr(login))
    ck.equal("ssh as core with the drive's key, over the static address: exit status",
             login.get("rc"), 0)
    out = (login.get("stdout") or "").splitlines()
    ck.equal("the command ran as core and saw the attributes", out,
             ["core", *env_file(ATTRIBUTES).splitlines()])
    no_http(boot, ck)
    check_multi_user(boot, ck)


SCENARIOS = [
    Scenario("opennebula-context", "issue 15",
             "OpenNebula CONTEXT iso: static network, hostname, a key that logs in; no DHCP",
             ["ignition.platform.id=opennebula"], check_opennebula, platform="opennebula",
             provider="opennebula", drive="iso", login=True,
             instance_extra={"network-interfaces": [{
                 "mac": MAC, "local-ipv4": ADDRESS, "ipv4-prefix": PREFIX,
                 "ipv4-gateway": GATEWAY}], "nameservers": [DNS]},
             guest={"units/clmtest-consumer.service": consumer_unit(
                        "cl-metadata.service", "/run/metadata/coreos",
                        ["COREOS_OPENNEBULA_HOSTNAME", "COREOS_OPENNEBULA_INSTANCE_ID"]),
                    "units/cl-metadata.service.d/50-hostname.conf": HOSTNAME_DROP_IN,
                    "links": CONSUMER_LINK
                    + "sysinit.target.wants cl-metadata-network.service\n",
                    "setup": NO_DHCP_SETUP},
             bound={"tcg": 240, "kvm": 120}),
]
