"""dracut network kernel arguments: the rendering (cl_metadata.network.kargs) for every interface
description the network writers are tested with, and ``cl-metadata rd-network-kargs`` (also
Afterburn's ``exp rd-network-kargs``) run as a real process on config drives and the fake
server. dracut's own parser reading these arguments is in tests/test_dracut.py."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import pytest

from cl_metadata.errors import InvalidMetadata, UsageError
from cl_metadata.fakeserver.drive import write_tree
from cl_metadata.fakeserver.instance import load_instance
from cl_metadata.fakeserver.render import renderer_for
from cl_metadata.model import BondOptions, NetworkInterface, Route, VirtualNetDev
from cl_metadata.network import kargs

from conftest import run_agent
from network_fixtures import BOND, FIXTURES, NIC, REFUSED, platform_descriptions

# every argument the renderer writes: a known key, then only characters dracut splits on
# (':', ',', '/', '[', ']') and those of addresses, names and bond options; no space, no quote
KARG = re.compile(r"(?:ifname|bond|bridge|vlan|ip|rd\.route|nameserver)="
                  r"[A-Za-z0-9_.:,/=+\[\]-]+")

# --- rendering ----------------------------------------------------------------------------------

EXPECTED = {
    "mac_canonical": (
        "ifname=enxfa163e4c2d7a:fa:16:3e:4c:2d:7a "
        "ip=203.0.113.25::203.0.113.1:255.255.255.0::enxfa163e4c2d7a:none "
        "rd.route=203.0.113.0/24:203.0.113.1:enxfa163e4c2d7a "
        "nameserver=192.0.2.53 nameserver=2001:db8::53",
        ("interface 0: address 1 (one ip= per interface)",
         "interface 0: route 2 (no IPv6 address in the initrd)")),
    "bond_and_unmanaged": (
        "ifname=enx0cc47ae13dd0:0c:c4:7a:e1:3d:d0 "
        "bond=bond0:enx0cc47ae13dd0:mode=802.3ad,lacp_rate=fast "
        "ip=10.0.0.1:::255.255.255.254::bond0:none::0c:c4:7a:e1:3d:d0 "
        "rd.route=10.0.0.0/8:10.0.0.0:bond0", ()),
    "name_with_dhcp": (
        "ip=eth0:dhcp rd.route=[::/0]:[fe80::1]:eth0",
        ("interface 0: address 0 (one ip= per interface)",)),
    "name_and_mac": (
        "ifname=enxfa163e4c2d7a:fa:16:3e:4c:2d:7a ip=enxfa163e4c2d7a:dhcp",
        ("interface 0: DHCPv6 beside DHCPv4",)),
    "bond_bridge_vlan": (
        "ifname=enx001122334455:00:11:22:33:44:55 ifname=enx001122334456:00:11:22:33:44:56 "
        "bond=bond0:enx001122334455,enx001122334456:mode=802.3ad,xmit_hash_policy=layer2+3,"
        "lacp_rate=fast,ad_select=bandwidth,miimon=100,updelay=2000,downdelay=0,min_links=1 "
        "vlan=bond0.200:bond0 vlan=vlan100:eth2 bridge=br0:eth2,vlan100 "
        "ip=bond0:dhcp6::00:11:22:33:44:77 "
        "ip=192.168.200.10:::255.255.255.0::bond0.200:none "
        "ip=172.16.1.10::172.16.1.1:255.255.255.0::br0:none nameserver=1.1.1.1",
        ("netdev 4: a bridge without members", "netdev 5: a bond without members",
         "netdev 3: bridge STP and timer settings",
         "netdev 2: the MAC address of a device without an ip= argument")),
    "route_given_twice": (
        "", ("interface 0: route 0 (no IPv4 address in the initrd)",
             "interface 0: route 1 (no IPv6 address in the initrd)")),
    "vlan_on_a_mac": (
        "ifname=enxfa163e000001:fa:16:3e:00:00:01 vlan=vlan602:enxfa163e000001 "
        "ip=2.2.2.13::2.2.2.9:255.255.255.248::vlan602:none nameserver=1.1.1.4", ()),
    "four_interfaces": (
        "ifname=enx0cc47a346e3c:0c:c4:7a:34:6e:3c ifname=enx0cc47a346e3d:0c:c4:7a:34:6e:3d "
        "ifname=enx0cc47a346e3e:0c:c4:7a:34:6e:3e "
        "bond=bond0:enx0cc47a346e3c,enx0cc47a346e3d:mode=802.3ad,xmit_hash_policy=layer3+4,"
        "lacp_rate=fast,miimon=100 vlan=bond0.602:bond0 "
        "ip=203.0.113.10::203.0.113.1:255.255.255.0::bond0:none::0c:c4:7a:34:6e:3c "
        "ip=10.60.2.13:::255.255.255.0::bond0.602:none ip=enx0cc47a346e3e:dhcp "
        "rd.route=10.0.0.0/8:10.60.2.1:bond0.602 nameserver=192.0.2.53 nameserver=2001:db8::53",
        ("interface 2: address 1 (one ip= per interface)",
         "interface 2: route 1 (no IPv6 address in the initrd)",
         "interface 4: DHCPv6 beside DHCPv4")),
}
SAMPLE_KARGS = ("ifname=enxfa163e4c2d7a:fa:16:3e:4c:2d:7a ifname=enxfa163e4c2d7b:fa:16:3e:4c:2d:7b "
                "ip=10.0.1.15::10.0.1.1:255.255.255.0::enxfa163e4c2d7a:none "
                "ip=10.130.0.15:::255.255.0.0::enxfa163e4c2d7b:none "
                "nameserver=192.0.2.53 nameserver=2001:db8::53")
SAMPLE_SKIPPED = ("interface 0: address 1 (one ip= per interface)",
                  "interface 0: route 1 (no IPv6 address in the initrd)")
PLATFORM_EXPECTED = {
    "openstack_sample": (SAMPLE_KARGS, SAMPLE_SKIPPED),
    "nocloud_v1_sample": (SAMPLE_KARGS, SAMPLE_SKIPPED),
    "nocloud_v2_sample": (SAMPLE_KARGS, SAMPLE_SKIPPED),
    "openstack_bond_vlan": (
        "ifname=enxfa163e346e3c:fa:16:3e:34:6e:3c ifname=enxfa163e346e3d:fa:16:3e:34:6e:3d "
        "bond=bond0:enxfa163e346e3c,enxfa163e346e3d:mode=802.3ad,xmit_hash_policy=layer3+4,"
        "miimon=100 vlan=bond0.602:bond0 ip=bond0:dhcp6::fa:16:3e:34:6e:3c "
        "ip=2.2.2.13::2.2.2.9:255.255.255.248::bond0.602:none::fa:16:3e:34:6e:3c "
        "rd.route=10.0.0.0/8:2.2.2.10:bond0.602 nameserver=1.1.1.4", ()),
    "nocloud_v1_bridge": (
        "ifname=enx525400000003:52:54:00:00:00:03 ifname=enx525400000004:52:54:00:00:00:04 "
        "bridge=br0:enx525400000003,enx525400000004 "
        "ip=192.168.14.2::192.168.14.1:255.255.255.0::br0:none nameserver=8.8.8.8",
        ("netdev 0: bridge STP and timer settings",)),
}


def test_every_fixture_has_its_expected_arguments():
    assert set(EXPECTED) == set(FIXTURES)  # a fixture added to the writers' set lands here


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_fixture_arguments(name):
    interfaces, netdevs = FIXTURES[name]
    rendered = kargs.render(interfaces, netdevs)
    assert (" ".join(rendered.kargs), rendered.skipped) == EXPECTED[name]
    assert all(KARG.fullmatch(arg) for arg in rendered.kargs)


def test_platform_documents_arguments():
    descriptions = platform_descriptions()
    assert set(descriptions) == set(PLATFORM_EXPECTED)
    for name, (interfaces, netdevs) in descriptions.items():
        rendered = kargs.render(interfaces, netdevs)
        assert (" ".join(rendered.kargs), rendered.skipped) == PLATFORM_EXPECTED[name], name


def test_ipv6_addresses_and_routes_are_bracketed_and_netmasks_are_prefixes():
    rendered = kargs.render([NetworkInterface(
        name="eth0", addresses=("2001:DB8:0::15/64", "2001:db8::16/64"),
        routes=(Route("::/0", "2001:db8::1"), Route("2001:db8:3::/48", "2001:db8::2"),
                Route("10.0.0.0/8", "10.0.0.1")))], [])
    assert rendered.kargs == (
        "ip=[2001:db8::15]::[2001:db8::1]:64::eth0:none",
        "rd.route=[2001:db8:3::/48]:[2001:db8::2]:eth0")
    assert rendered.skipped == ("interface 0: address 1 (one ip= per interface)",
                                "interface 0: route 2 (no IPv4 address in the initrd)")


def test_dhcp6_and_a_default_route_without_a_static_address():
    rendered = kargs.render([NetworkInterface(
        mac="52:54:00:12:34:56", dhcp="ipv6", routes=(Route("::/0", "fe80::1"),),
        nameservers=("2001:db8::53", "2001:DB8::53"))], [])
    assert rendered.kargs == ("ifname=enx525400123456:52:54:00:12:34:56",
                              "ip=enx525400123456:dhcp6",
                              "rd.route=[::/0]:[fe80::1]:enx525400123456",
                              "nameserver=2001:db8::53")  # each nameserver once
    assert rendered.skipped == ()


def test_a_nic_nothing_refers_to_gets_no_ifname_and_unmanaged_nics_are_left_alone():
    rendered = kargs.render([NetworkInterface(mac="52:54:00:00:00:01"),
                             NetworkInterface(mac="52:54:00:00:00:02", unmanaged=True),
                             NetworkInterface(name="eth2", dhcp="ipv4")], [])
    assert rendered == kargs.Rendered(("ip=eth2:dhcp",), ())


@pytest.mark.parametrize("vlan_name, vlan_id, ok", [
    ("vlan5", 5, True), ("vlan0005", 5, True), ("eth0.5", 5, True), ("bond0.0602", 602, True),
    ("vlan5", 6, False), ("mgmt", 5, False), ("eth0.5x", 5, False), ("vlan", 0, False)])
def test_a_vlan_name_must_carry_its_id(vlan_name, vlan_id, ok):
    # dracut derives the VLAN id from the name; a name that says another id is left out, and so
    # is the configuration resting on it
    rendered = kargs.render([
        NetworkInterface(name="eth0", vlans=(vlan_name,), dhcp="ipv4"),
        NetworkInterface(name=vlan_name, priority=5, addresses=("10.5.0.2/24",))],
        [VirtualNetDev(name=vlan_name, kind="vlan", vlan_id=vlan_id)])
    if ok:
        assert rendered.kargs == (f"vlan={vlan_name}:eth0", "ip=eth0:dhcp",
                                  f"ip=10.5.0.2:::255.255.255.0::{vlan_name}:none")
        assert rendered.skipped == ()
    else:
        assert rendered.kargs == ("ip=eth0:dhcp",)
        assert rendered.skipped == ("netdev 0: a VLAN whose name does not carry its id",)


def test_what_rests_on_a_device_left_out_is_left_out_too():
    # a VLAN on an unmanaged NIC → the bridge whose only port it is → nothing of either
    rendered = kargs.render([
        NetworkInterface(mac="52:54:00:00:00:01", unmanaged=True),
        NetworkInterface(name="eth1", vlans=("vlan7",)),
        NetworkInterface(name="vlan7", priority=5, bridge="br0"),
        NetworkInterface(name="br0", priority=5, addresses=("10.7.0.2/24",)),
        NetworkInterface(name="bond0", priority=5, dhcp="ipv4")],
        [VirtualNetDev(name="vlan7", kind="vlan", vlan_id=8),
         VirtualNetDev(name="br0", kind="bridge"),
         VirtualNetDev(name="bond0", kind="bond", mac="52:54:00:00:00:09",
                       bond=BondOptions(mode="active-backup"))])
    assert rendered.kargs == ()
    assert rendered.skipped == ("netdev 0: a VLAN whose name does not carry its id",
                                "netdev 1: a bridge without members",
                                "netdev 2: a bond without members")


@pytest.mark.parametrize("extra, netdev, words", REFUSED)
def test_values_no_writer_accepts_are_refused_here_too(extra, netdev, words):
    interfaces = [NIC] + ([extra] if extra is not None else [])
    with pytest.raises(InvalidMetadata) as info:
        kargs.render(interfaces, [netdev if netdev is not None else BOND])
    assert words in str(info.value)
    assert "6.6.6.6" not in str(info.value)  # the cause names the field, never the value


def test_two_interfaces_with_one_mac_are_refused():
    with pytest.raises(InvalidMetadata, match="interface 0 and interface 1"):
        kargs.render([NetworkInterface(mac="52:54:00:00:00:01", dhcp="ipv4"),
                      NetworkInterface(mac="52:54:00:00:00:01", dhcp="ipv6")], [])


@pytest.mark.parametrize("cmdline, has_ip", [
    ("root=/dev/vda ip=dhcp", True), ("ip=", True), ('quiet "ip=10.0.0.2:::24::eth0:none"', True),
    ("root=/dev/vda", False), ("rd.ip=x vip=dhcp", False), ("ip", False),
    ("ignition.platform.id=proxmoxve", False)])
def test_an_ip_argument_on_the_kernel_command_line(tmp_path, cmdline, has_ip):
    path = tmp_path / "cmdline"
    path.write_text(cmdline + "\n")
    assert kargs.kernel_has_ip({"CL_METADATA_CMDLINE": str(path)}) is has_ip


def test_default_value_is_split_and_control_characters_refused():
    assert kargs.default_kargs("ip=dhcp,dhcp6  rd.neednet=1") == ("ip=dhcp,dhcp6", "rd.neednet=1")
    assert kargs.default_kargs("") == ()
    with pytest.raises(UsageError, match="control character"):
        kargs.default_kargs("ip=dhcp\nroot=/dev/sda")


# --- the command, as a real process --------------------------------------------------------------

SAMPLE = load_instance(None)


def drive(tmp_path: Path, platform: str, replace=None) -> Path:
    files = dict(renderer_for(platform).drive_files(SAMPLE))
    files.update(replace or {})
    root = tmp_path / f"drive-{platform}"
    write_tree(files, root)
    return root


def command_env(agent_env, tmp_path, cmdline="root=/dev/vda", drive_root=None):
    env = dict(agent_env)
    (tmp_path / "cmdline").write_text(cmdline + "\n")
    if drive_root is not None:
        env["CL_METADATA_CONFIG_DRIVE"] = str(drive_root)
    return env


@pytest.mark.parametrize("platform, spelling", [
    ("proxmoxve", ["rd-network-kargs", "--cmdline"]),
    ("kubevirt", ["exp", "rd-network-kargs", "--cmdline"]),  # Afterburn's spelling
    ("openstack", ["rd-network-kargs", "--provider", "openstack"]),
    ("nocloud", ["exp", "rd-network-kargs", "--cmdline", "--provider", "aws"])])
def test_the_platforms_arguments_are_written(tmp_path, agent_env, platform, spelling):
    env = command_env(agent_env, tmp_path, f"root=/dev/vda ignition.platform.id={platform}",
                      drive(tmp_path, platform))
    target = tmp_path / "cmdline.d/50-cl-metadata-network-kargs.conf"
    target.parent.mkdir()
    result = run_agent(*spelling, "--default-value", "ip=dhcp", "--kargs-file", target, "-v",
                       env=env)
    assert result.returncode == 0, result.stderr
    assert target.read_text() == SAMPLE_KARGS + "\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert result.stdout == ""
    assert f"{platform}: 2 network settings dracut cannot hold left out: " \
           "interface 0: address 1 (one ip= per interface); " \
           "interface 0: route 1 (no IPv6 address in the initrd)" in result.stderr
    assert "10.0.1.15" not in result.stderr and "fa:16:3e" not in result.stderr  # no values


def test_nothing_is_written_when_the_kernel_command_line_has_ip(tmp_path, agent_env):
    env = command_env(agent_env, tmp_path, "ignition.platform.id=proxmoxve ip=dhcp",
                      drive(tmp_path, "proxmoxve"))
    target = tmp_path / "kargs.conf"
    result = run_agent("rd-network-kargs", "--cmdline", "--default-value", "ip=dhcp6",
                       "--kargs-file", target, "-v", env=env)
    assert result.returncode == 0, result.stderr
    assert not target.exists()
    assert "the kernel command line has ip= already; no network arguments written" \
        in result.stderr
    assert "config drive" not in result.stderr  # the platform is not even asked


@pytest.mark.parametrize("argv, platform_env, expected", [
    # a platform without interface descriptions, and no platform at all
    (["--provider", "aws", "--default-value", "ip=dhcp,dhcp6 rd.neednet=1"], None,
     "ip=dhcp,dhcp6 rd.neednet=1\n"),
    (["--provider", "metal", "--default-value", "ip=dhcp"], None, "ip=dhcp\n"),
    (["--provider", "aws"], None, None),
    (["--provider", "aws", "--default-value", ""], None, None),
    # a platform that describes interfaces but has no drive on this machine (none labelled
    # config-2 or cidata: the agent looks for a few seconds, as the drive-only platforms do)
    (["--provider", "kubevirt", "--default-value", "ip=dhcp"], "no-drive", "ip=dhcp\n"),
    # a drive without network-config
    (["--provider", "proxmoxve", "--default-value", "ip=dhcp"], "no-network", "ip=dhcp\n"),
])
def test_default_value_where_the_platform_describes_no_interfaces(
        tmp_path, agent_env, argv, platform_env, expected):
    drive_root = None
    if platform_env == "no-drive" and any(
            os.path.exists(f"/dev/disk/by-label/{label}") for label in ("config-2", "cidata")):
        pytest.skip("this machine has a drive labelled config-2 or cidata")
    if platform_env == "no-network":
        drive_root = drive(tmp_path, "proxmoxve")
        (drive_root / "network-config").unlink()
    env = command_env(agent_env, tmp_path, drive_root=drive_root)
    target = tmp_path / "kargs.conf"
    result = run_agent("rd-network-kargs", *argv, "--kargs-file", target, env=env)
    assert result.returncode == 0, result.stderr
    if expected is None:
        assert not target.exists()
    else:
        assert target.read_text() == expected


def test_a_platform_read_over_the_network_is_not_asked_in_the_initrd(tmp_path, agent_env,
                                                                      fake_server):
    server = fake_server("openstack-metadata")
    env = command_env(agent_env, tmp_path)
    env["CL_METADATA_ENDPOINT"] = server.url
    target = tmp_path / "kargs.conf"
    result = run_agent("rd-network-kargs", "--provider", "openstack-metadata",
                       "--default-value", "ip=dhcp", "--kargs-file", target, env=env)
    assert result.returncode == 0, result.stderr
    assert server.requests == []
    assert target.read_text() == "ip=dhcp\n"


def test_bad_network_data_is_one_line_exit_1_and_the_old_file_untouched(tmp_path, agent_env):
    bad = b"version: 1\nconfig:\n  - {type: physical, name: eth0, subnets: " \
          b"[{type: static, address: 10.0.0.300}]}\n"
    env = command_env(agent_env, tmp_path, "ignition.platform.id=proxmoxve",
                      drive(tmp_path, "proxmoxve", {"network-config": bad}))
    target = tmp_path / "kargs.conf"
    target.write_text("previous\n")
    result = run_agent("exp", "rd-network-kargs", "--cmdline", "--default-value", "ip=dhcp",
                       "--kargs-file", target, env=env)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("cl-metadata: error: proxmoxve: network-config: ")
    assert "10.0.0.300" not in result.stderr
    assert target.read_text() == "previous\n"
    assert os.listdir(tmp_path).count("kargs.conf") == 1 and not any(
        name.startswith(".kargs.conf.") for name in os.listdir(tmp_path))


def test_an_unwritable_target_fails_before_the_platform_is_asked(tmp_path, agent_env):
    env = command_env(agent_env, tmp_path, "ignition.platform.id=proxmoxve",
                      drive(tmp_path, "proxmoxve"))
    target = tmp_path / "missing-dir/kargs.conf"  # only directories below /run are created
    result = run_agent("rd-network-kargs", "--cmdline", "--kargs-file", target, "-v", env=env)
    assert result.returncode == 1
    assert "does not exist" in result.stderr and "config drive" not in result.stderr
    assert not target.parent.exists()


@pytest.mark.parametrize("argv", [
    ["rd-network-kargs"],  # neither --cmdline nor --provider
    ["rd-network-kargs", "--provider", "aws", "--provider", "gcp"],
    ["rd-network-kargs", "--provider", "aws", "--network-units", "/tmp/x"],
    ["exp", "rd-network-kargs", "--provider", "aws", "--default-value"]])
def test_usage_errors(tmp_path, agent_env, argv):
    result = run_agent(*argv, env=command_env(agent_env, tmp_path))
    assert result.returncode == 2
    assert result.stderr.startswith("cl-metadata: error: ") and result.stderr.count("\n") == 1


def test_help_rd_network_kargs_names_afterburns_flags(tmp_path, agent_env):
    result = run_agent("help", "rd-network-kargs", env=command_env(agent_env, tmp_path))
    assert result.returncode == 0
    assert result.stdout.startswith("usage: cl-metadata rd-network-kargs ")
    for flag in ("--cmdline", "--provider", "--default-value", "--kargs-file", "--settings",
                 "--timeout", "-v"):
        assert flag in result.stdout
    assert kargs.KARGS_PATH == "/etc/cmdline.d/50-cl-metadata-network-kargs.conf"
    assert kargs.KARGS_PATH in " ".join(result.stdout.split())
