"""vmware: guestinfo.metadata through a fake vmware-rpctool / vmtoolsd on PATH (docs/protocols.md);
network units written by the real process."""

import base64
import dataclasses
import gzip
import sys

import pytest

from cl_metadata.errors import InvalidMetadata, MetadataError
from cl_metadata.model import NetworkInterface, Route
from cl_metadata.providers import vmware
from cl_metadata.providers.vmware import VmwareProvider

from conftest import make_context, run_agent
from drive_fixtures import (SAMPLE, assert_failed_cleanly, assert_sample_units,
                            fake_guestinfo_tool, output_args, outputs, sample_interfaces,
                            write_drive)

PLATFORM = "vmware"
NETPLAN = b"network:\n  ethernets:\n    eth0: {dhcp6: true}\n"


@pytest.fixture
def guestinfo(tmp_path, monkeypatch):
    """Factory: guestinfo(files or instance, tool=…) puts a fake tool alone on PATH."""
    def install(files=None, *, instance=SAMPLE, tool="vmware-rpctool"):
        directory = tmp_path / "guestinfo"
        if files is None:
            write_drive(tmp_path, PLATFORM, instance, name="guestinfo")
        else:
            directory.mkdir()
            for key, value in files.items():
                (directory / key).write_bytes(value)
        fake_guestinfo_tool(tmp_path / "bin", directory, tool)
        monkeypatch.setenv("PATH", str(tmp_path / "bin"))
        return tmp_path / "bin/calls"
    return install


def network():
    return VmwareProvider(make_context(None)).network()


@pytest.mark.parametrize("encoding", ["gzip+base64", "base64", "plain"])
def test_rendered_guestinfo_in_every_encoding(guestinfo, encoding):
    calls = guestinfo(instance=dataclasses.replace(SAMPLE, platform_data={
        "vmware": {"encoding": encoding}}))
    assert network() == (sample_interfaces(10), [])
    assert calls.read_text() == ("info-get guestinfo.metadata\n"
                                 "info-get guestinfo.metadata.encoding\n")


@pytest.mark.parametrize("encoding, encode", [
    (b"b64", base64.b64encode),
    (b"gz+b64", lambda data: base64.b64encode(gzip.compress(data))),
    (b"", lambda data: data),
])
def test_encoding_aliases_and_netplan_without_version(guestinfo, encoding, encode):
    guestinfo({"guestinfo.metadata": encode(NETPLAN), "guestinfo.metadata.encoding": encoding})
    assert network() == ([NetworkInterface(name="eth0", dhcp="ipv6")], [])


def test_vmtoolsd_when_there_is_no_rpctool(guestinfo):
    calls = guestinfo({"guestinfo.metadata": NETPLAN}, tool="vmtoolsd")
    assert network() == ([NetworkInterface(name="eth0", dhcp="ipv6")], [])
    assert calls.read_text().splitlines()[0] == "--cmd info-get guestinfo.metadata"


@pytest.mark.parametrize("files", [
    {},  # guestinfo.metadata not set
    {"guestinfo.metadata": b"instance-id: i-1\nlocal-hostname: h\n"},  # no network key
], ids=["unset", "no-network"])
def test_no_network_config_means_no_units(guestinfo, files):
    guestinfo(files)
    assert network() == ([], [])


def test_network_config_v1_and_routes(guestinfo):
    guestinfo({"guestinfo.metadata": b"network:\n  version: 1\n  config:\n"
                                      b"  - {type: physical, name: ens192, subnets: [{type: "
                                      b"static, address: 10.0.0.2/24, gateway: 10.0.0.1}]}\n"})
    assert network() == ([NetworkInterface(name="ens192", addresses=("10.0.0.2/24",),
                                            routes=(Route("0.0.0.0/0", "10.0.0.1"),))], [])


def test_the_platform_has_nothing_but_network(guestinfo):
    calls = guestinfo()
    provider = VmwareProvider(make_context(None))
    assert provider.attributes() == {} and provider.ssh_keys() == []
    assert provider.hostname() is None
    assert not calls.exists()  # nothing asked the tool


def test_no_tool_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(MetadataError) as info:
        network()
    assert info.value.source == "guestinfo.metadata"
    assert info.value.cause.startswith("neither vmware-rpctool nor vmtoolsd is installed")


BOMB = gzip.compress(b"#" * (vmware.MAX_DOCUMENT + 1))


@pytest.mark.parametrize("files, source, cause", [
    ({"guestinfo.metadata": NETPLAN, "guestinfo.metadata.encoding": b"rot13"},
     "guestinfo.metadata.encoding", "not one of base64, b64, gzip+base64, gz+b64 or empty"),
    ({"guestinfo.metadata": b"%%%", "guestinfo.metadata.encoding": b"base64"},
     "guestinfo.metadata", "not valid base64"),
    ({"guestinfo.metadata": base64.b64encode(b"plain"), "guestinfo.metadata.encoding": b"gz+b64"},
     "guestinfo.metadata", "not valid gzip data"),
    ({"guestinfo.metadata": base64.b64encode(gzip.compress(NETPLAN)[:-12]),
      "guestinfo.metadata.encoding": b"gz+b64"}, "guestinfo.metadata", "gzip data is truncated"),
    ({"guestinfo.metadata": base64.b64encode(BOMB), "guestinfo.metadata.encoding": b"gz+b64"},
     "guestinfo.metadata", "decompresses to more than 1048576 bytes"),
    ({"guestinfo.metadata": b"#" * (vmware.MAX_ANSWER + 1)},
     "guestinfo.metadata", "exceeds 131072 bytes"),
    ({"guestinfo.metadata": b"network: [\n"}, "guestinfo.metadata", "invalid YAML"),
    ({"guestinfo.metadata": b"network: caf\xe9\n"}, "guestinfo.metadata", "not valid UTF-8"),
    ({"guestinfo.metadata": b"- network\n"}, "guestinfo.metadata", "top level: expected a mapping"),
    ({"guestinfo.metadata": b"network: {version: 2, ethernets: {eth0: {addresses: [x]}}}\n"},
     "guestinfo.metadata", "network.ethernets[0].addresses[0]: not an IP address"),
], ids=["encoding", "base64", "gzip", "truncated", "bomb", "answer-size", "yaml", "utf8",
        "top-level", "field"])
def test_bad_guestinfo(guestinfo, files, source, cause):
    guestinfo(files)
    with pytest.raises(InvalidMetadata) as info:
        network()
    assert info.value.source == source and info.value.cause.startswith(cause)


def test_a_failing_tool_is_an_error_with_its_status(tmp_path, monkeypatch):
    tool = tmp_path / "vmware-rpctool"
    tool.write_text(f"#!{sys.executable}\nimport sys\n"
                    "sys.stderr.write('Failed sending message to VMware.\\n')\nsys.exit(3)\n")
    tool.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(MetadataError) as info:
        network()
    assert info.value.cause == ("vmware-rpctool failed (exit status 3): "
                                "'Failed sending message to VMware.'")


# --- the real process -----------------------------------------------------------------------

def test_real_process_writes_units(tmp_path, agent_env):
    write_drive(tmp_path, PLATFORM, name="guestinfo")
    fake_guestinfo_tool(tmp_path / "bin", tmp_path / "guestinfo")
    agent_env["PATH"] = str(tmp_path / "bin")
    paths = outputs(tmp_path)
    result = run_agent("--provider", PLATFORM, *output_args(paths), env=agent_env)
    assert result.returncode == 0, result.stderr
    assert paths["attributes"].read_text() == ""  # no attributes on this platform
    assert paths["hostname"].read_text() == "previous contents\n"  # and no hostname
    assert_sample_units(paths["units"], 10)


def test_real_process_without_a_tool(tmp_path, agent_env):
    agent_env["PATH"] = str(tmp_path)
    paths = outputs(tmp_path)
    result = run_agent("--provider", PLATFORM, *output_args(paths), env=agent_env)
    assert_failed_cleanly(result, paths, PLATFORM, "neither vmware-rpctool nor vmtoolsd")
    # attributes alone need no guestinfo
    result = run_agent("--provider", PLATFORM, "--attributes", paths["attributes"],
                       env=agent_env)
    assert result.returncode == 0 and paths["attributes"].read_text() == ""
