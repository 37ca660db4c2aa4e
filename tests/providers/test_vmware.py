"""vmware: guestinfo.metadata (cloud-init's VMware keys) through a fake vmware-rpctool / vmtoolsd
on PATH (docs/protocols.md): attributes, keys, hostname, network, user-data, Afterburn's initrd
key; every output written by the real process, and nothing written when guestinfo is bad."""

import base64
import dataclasses
import gzip
import json
import sys

import pytest
import yaml

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


ATTRIBUTES = {"VMWARE_INSTANCE_ID": "i-0a1b2c3d4e5f60718",
              "VMWARE_HOSTNAME": "demo-1.example.internal"}


@pytest.mark.parametrize("encoding", ["gzip+base64", "base64", "plain"])
def test_attributes_keys_and_hostname_from_one_read_of_the_metadata(guestinfo, encoding):
    calls = guestinfo(instance=dataclasses.replace(SAMPLE, platform_data={
        "vmware": {"encoding": encoding}}))
    provider = VmwareProvider(make_context(None))
    assert provider.attributes() == ATTRIBUTES
    assert provider.ssh_keys() == [key.key for key in SAMPLE.ssh_keys]
    assert provider.hostname() == "demo-1.example.internal"
    assert provider.network() == (sample_interfaces(10), [])
    # the document is asked for once, whatever the outputs
    assert calls.read_text() == ("info-get guestinfo.metadata\n"
                                 "info-get guestinfo.metadata.encoding\n")


@pytest.mark.parametrize("field", ["public-keys-data", "public_keys_data", "public-keys",
                                   "public_keys"])
def test_every_key_field_cloud_init_reads(guestinfo, field):
    alice, deploy = (key.key for key in SAMPLE.ssh_keys)
    guestinfo({"guestinfo.metadata": yaml.safe_dump({field: f"{alice}\n{deploy}\n"}).encode()})
    assert VmwareProvider(make_context(None)).ssh_keys() == [alice, deploy]


def test_key_shapes_and_the_first_field_wins(guestinfo):
    alice, deploy = (key.key for key in SAMPLE.ssh_keys)
    document = {"public-keys": {"zed": [deploy], "amy": alice},  # a map: sorted by name
                "public_keys": ["ssh-ed25519 AAAAnot-this-one"]}
    guestinfo({"guestinfo.metadata": json.dumps(document).encode()})  # JSON is read as JSON
    assert VmwareProvider(make_context(None)).ssh_keys() == [alice, deploy]


@pytest.mark.parametrize("value", [b"", b"---", b"---\n"])
def test_empty_or_redacted_metadata_is_nothing(guestinfo, value):
    guestinfo({"guestinfo.metadata": value, "guestinfo.userdata": value})
    provider = VmwareProvider(make_context(None))
    assert (provider.attributes(), provider.ssh_keys(), provider.hostname(),
            provider.network(), provider.user_data()) == ({}, [], None, ([], []), None)


@pytest.mark.parametrize("network_encoding", ["base64", "gzip+base64"])
def test_network_as_an_encoded_string(guestinfo, network_encoding):
    guestinfo(instance=dataclasses.replace(SAMPLE, platform_data={
        "vmware": {"encoding": "plain", "network-encoding": network_encoding}}))
    assert network() == (sample_interfaces(10), [])


@pytest.mark.parametrize("network_encoding", [None, "b64"])
def test_network_string_plain_or_alias(guestinfo, network_encoding):
    body = NETPLAN.split(b"\n", 1)[1].replace(b"  ", b"", 1)  # "ethernets: ..." alone
    value = base64.b64encode(body).decode() if network_encoding else body.decode()
    document = {"network": value}
    if network_encoding:
        document["network.encoding"] = network_encoding
    guestinfo({"guestinfo.metadata": yaml.safe_dump(document).encode()})
    assert network() == ([NetworkInterface(name="eth0", dhcp="ipv6")], [])


def test_no_tool_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(MetadataError) as info:
        network()
    assert info.value.source == "guestinfo.metadata"
    assert info.value.cause.startswith("neither vmware-rpctool nor vmtoolsd is installed")


BOMB = gzip.compress(b"#" * (vmware.MAX_DOCUMENT + 1))
NETWORK_BOMB = base64.b64encode(gzip.compress(b"#" * (64 << 20))).decode()  # 64 MiB → 64 KiB


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
    ({"guestinfo.metadata": b'{"network": [}'}, "guestinfo.metadata", "invalid JSON"),
    ({"guestinfo.metadata": b"network: '%%%'\nnetwork.encoding: base64\n"},
     "guestinfo.metadata", "network: not valid base64"),
    ({"guestinfo.metadata": b"network: abc\nnetwork.encoding: rot13\n"},
     "guestinfo.metadata", "network.encoding: not one of base64"),
    ({"guestinfo.metadata": f"network: {NETWORK_BOMB}\nnetwork.encoding: gz+b64\n".encode()},
     "guestinfo.metadata", "network: decompresses to more than 1048576 bytes"),
    ({"guestinfo.metadata": b"network: 'ethernets: ['\n"}, "guestinfo.metadata",
     "network: invalid YAML"),
    ({"guestinfo.metadata": b"network: 5\n"}, "guestinfo.metadata",
     "network: expected a mapping, got"),
], ids=["encoding", "base64", "gzip", "truncated", "bomb", "answer-size", "yaml", "utf8",
        "top-level", "field", "json", "network-base64", "network-encoding", "network-bomb",
        "network-yaml", "network-type"])
def test_bad_guestinfo(guestinfo, files, source, cause):
    guestinfo(files)
    with pytest.raises(InvalidMetadata) as info:
        network()
    assert info.value.source == source and info.value.cause.startswith(cause)


@pytest.mark.parametrize("document, method, cause", [
    ({"instance-id": ["i-1"]}, "attributes", "instance-id: expected a string, got a list"),
    ({"local-hostname": {"a": 1}}, "hostname", "local-hostname: expected a string, got"),
    ({"public-keys": [{"a": 1}]}, "ssh_keys", "public-keys[0]: expected a string, got"),
    ({"public_keys": {"alice": [{"a": 1}]}}, "ssh_keys",
     "public_keys.alice[0]: expected a string"),
])
def test_wrong_types_name_the_field(guestinfo, document, method, cause):
    guestinfo({"guestinfo.metadata": yaml.safe_dump(document).encode()})
    with pytest.raises(InvalidMetadata) as info:
        getattr(VmwareProvider(make_context(None)), method)()
    assert info.value.source == "guestinfo.metadata" and info.value.cause.startswith(cause)


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

def test_real_process_writes_every_output(tmp_path, agent_env):
    write_drive(tmp_path, PLATFORM, name="guestinfo")
    fake_guestinfo_tool(tmp_path / "bin", tmp_path / "guestinfo")
    agent_env["PATH"] = str(tmp_path / "bin")
    paths = outputs(tmp_path)
    result = run_agent("--provider", PLATFORM, *output_args(paths), env=agent_env)
    assert result.returncode == 0, result.stderr
    assert paths["attributes"].read_text() == (
        "COREOS_VMWARE_HOSTNAME=demo-1.example.internal\n"
        "COREOS_VMWARE_INSTANCE_ID=i-0a1b2c3d4e5f60718\n")
    assert paths["hostname"].read_text() == "demo-1.example.internal\n"
    assert_sample_units(paths["units"], 10)


@pytest.mark.parametrize("files, cause", [
    ({"guestinfo.metadata": b"%%%", "guestinfo.metadata.encoding": b"base64"},
     "guestinfo.metadata: not valid base64"),
    ({"guestinfo.metadata": base64.b64encode(BOMB), "guestinfo.metadata.encoding": b"gz+b64"},
     "guestinfo.metadata: decompresses to more than 1048576 bytes"),
    ({"guestinfo.metadata": b"x", "guestinfo.metadata.encoding": b"zstd"},
     "guestinfo.metadata.encoding: not one of"),
    ({"guestinfo.metadata": b"instance-id: [\n"}, "guestinfo.metadata: invalid YAML"),
    ({"guestinfo.metadata": b"instance-id: {a: b}\n"},
     "guestinfo.metadata: instance-id: expected a string"),
], ids=["base64", "bomb", "encoding", "yaml", "type"])
def test_real_process_bad_guestinfo_writes_nothing(tmp_path, agent_env, files, cause):
    directory = tmp_path / "guestinfo"
    directory.mkdir()
    for key, value in files.items():
        (directory / key).write_bytes(value)
    fake_guestinfo_tool(tmp_path / "bin", directory)
    agent_env["PATH"] = str(tmp_path / "bin")
    paths = outputs(tmp_path)
    result = run_agent("--provider", PLATFORM, *output_args(paths), env=agent_env)
    assert_failed_cleanly(result, paths, PLATFORM, cause)
    assert "Traceback" not in result.stderr


def test_real_process_without_a_tool(tmp_path, agent_env):
    agent_env["PATH"] = str(tmp_path)
    paths = outputs(tmp_path)
    result = run_agent("--provider", PLATFORM, *output_args(paths), env=agent_env)
    assert_failed_cleanly(result, paths, PLATFORM, "neither vmware-rpctool nor vmtoolsd")


# --- user-data: Ignition's key, else cloud-init's --------------------------------------------

USER_DATA = b'{"ignition": {"version": "3.4.0"}}\n'


@pytest.mark.parametrize("encoding, encode", [
    (b"", lambda data: data),
    (b"base64", base64.b64encode),
    (b"b64", base64.b64encode),
    (b"gzip+base64", lambda data: base64.b64encode(gzip.compress(data))),
    (b"gz+b64", lambda data: base64.b64encode(gzip.compress(data))),
])
def test_cloud_init_user_data_when_ignitions_key_is_not_set(guestinfo, encoding, encode):
    calls = guestinfo({"guestinfo.userdata": encode(USER_DATA),
                       "guestinfo.userdata.encoding": encoding})
    data = VmwareProvider(make_context(None)).user_data()
    # the transport encoding undone; a gzip stream is left for the writer, which inflates it
    assert (gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data) == USER_DATA
    assert calls.read_text() == ("info-get guestinfo.ignition.config.data\n"
                                 "info-get guestinfo.userdata\n"
                                 "info-get guestinfo.userdata.encoding\n")


def test_ignitions_key_wins(guestinfo):
    guestinfo({"guestinfo.ignition.config.data": USER_DATA,
               "guestinfo.userdata": b"#cloud-config\n"})
    assert VmwareProvider(make_context(None)).user_data() == USER_DATA


@pytest.mark.parametrize("files, source, cause", [
    ({"guestinfo.userdata": b"%%%", "guestinfo.userdata.encoding": b"base64"},
     "guestinfo.userdata", "user-data is not valid base64"),
    ({"guestinfo.userdata": base64.b64encode(USER_DATA), "guestinfo.userdata.encoding": b"gz"},
     "guestinfo.userdata.encoding", "not one of base64, b64, gzip+base64, gz+b64 or empty"),
    ({"guestinfo.userdata": base64.b64encode(USER_DATA),
      "guestinfo.userdata.encoding": b"gzip+base64"},
     "guestinfo.userdata", "guestinfo.userdata.encoding says gzip, but the data is not"),
])
def test_bad_cloud_init_user_data(guestinfo, files, source, cause):
    guestinfo(files)
    with pytest.raises(InvalidMetadata) as info:
        VmwareProvider(make_context(None)).user_data()
    assert info.value.source == source and info.value.cause.startswith(cause)


def test_real_process_cloud_init_user_data_gzip_bomb_writes_nothing(tmp_path, agent_env):
    bomb = base64.b64encode(gzip.compress(b"\0" * (32 << 20)))  # 32 MiB, past the 16 MiB cap
    directory = tmp_path / "guestinfo"
    directory.mkdir()
    (directory / "guestinfo.userdata").write_bytes(bomb)
    (directory / "guestinfo.userdata.encoding").write_bytes(b"gz+b64")
    fake_guestinfo_tool(tmp_path / "bin", directory)
    agent_env["PATH"] = str(tmp_path / "bin")
    target = tmp_path / "user-data"
    target.write_bytes(b"previous")
    result = run_agent("--provider", PLATFORM, "--user-data", target, env=agent_env)
    assert result.returncode == 1
    assert result.stderr == ("cl-metadata: error: vmware: guestinfo "
                             "guestinfo.ignition.config.data, else guestinfo.userdata: "
                             "gzip-compressed user-data inflates to more than 16777216 bytes\n")
    assert target.read_bytes() == b"previous"


# --- Afterburn's guestinfo.afterburn.initrd.network-kargs -------------------------------------

KARGS = "ip=10.20.30.42::10.20.30.254:255.255.255.0:mynode01:ens192:off nameserver=10.20.30.1"


def kargs_run(tmp_path, agent_env, files=None):
    directory = tmp_path / "guestinfo"
    if files is None:
        write_drive(tmp_path, PLATFORM, dataclasses.replace(SAMPLE, platform_data={
            "vmware": {"network-kargs": KARGS}}), name="guestinfo")
    else:
        directory.mkdir()
        for key, value in files.items():
            (directory / key).write_bytes(value)
    fake_guestinfo_tool(tmp_path / "bin", directory)
    agent_env["PATH"] = str(tmp_path / "bin")
    target = tmp_path / "kargs.conf"
    target.write_text("previous\n")
    result = run_agent("rd-network-kargs", "--provider", PLATFORM, "--default-value", "ip=dhcp",
                       "--kargs-file", target, env=agent_env)
    return result, target


def test_the_afterburn_key_wins_over_the_metadata_network_and_the_default(tmp_path, agent_env):
    result, target = kargs_run(tmp_path, agent_env)  # guestinfo.metadata has a network too
    assert result.returncode == 0, result.stderr
    assert target.read_text() == KARGS + "\n"
    assert "10.20.30" not in result.stderr


def test_without_the_afterburn_key_the_metadata_network_is_used(tmp_path, agent_env):
    result, target = kargs_run(tmp_path, agent_env, {"guestinfo.metadata": NETPLAN})
    assert result.returncode == 0, result.stderr
    assert target.read_text() == "ip=eth0:dhcp6\n"


@pytest.mark.parametrize("value", [b"ip=dhcp\nrd.break", "ip=dhcp café".encode(),
                                   b"ip=dhcp " * 600])
def test_a_bad_afterburn_key_is_one_line_and_the_old_file_stays(tmp_path, agent_env, value):
    result, target = kargs_run(tmp_path, agent_env,
                               {"guestinfo.afterburn.initrd.network-kargs": value})
    assert result.returncode == 1
    assert result.stderr.startswith(
        "cl-metadata: error: vmware: guestinfo.afterburn.initrd.network-kargs: ")
    assert result.stderr.count("\n") == 1 and "dhcp" not in result.stderr
    assert target.read_text() == "previous\n"
