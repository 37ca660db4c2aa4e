"""proxmoxve: the NoCloud seed Proxmox VE writes, on a cidata drive directory (docs/protocols.md); network units written by the real process."""

import os

import pytest

from cl_metadata.errors import InvalidMetadata, MetadataError, NoMetadataHere
from cl_metadata.providers import proxmoxve
from cl_metadata.providers.proxmoxve import ProxmoxVEProvider

from conftest import make_context
from drive_fixtures import (ALICE, CAUSES, DEPLOY, assert_failed_cleanly, assert_sample_units,
                            bad_drive, env_file, open_provider, output_args, outputs,
                            run_on_drive, sample_interfaces, write_drive)

PLATFORM = "proxmoxve"
FILE_BODY = ("{p}_PROXMOXVE_HOSTNAME=demo-1\n{p}_PROXMOXVE_INSTANCE_ID=i-0a1b2c3d4e5f60718\n"
             "{p}_PROXMOXVE_IPV4=10.0.1.15\n{p}_PROXMOXVE_IPV6=2001:db8:1:2::15\n")


def test_the_rendered_seed(tmp_path):
    root = write_drive(tmp_path, PLATFORM)
    assert (root / "network-config").read_text().startswith("version: 1\n")
    provider = open_provider(PLATFORM, root)
    assert provider.attributes() == {
        "PROXMOXVE_INSTANCE_ID": "i-0a1b2c3d4e5f60718", "PROXMOXVE_HOSTNAME": "demo-1",
        "PROXMOXVE_IPV4": "10.0.1.15", "PROXMOXVE_IPV6": "2001:db8:1:2::15"}
    assert provider.hostname() == "demo-1"
    assert provider.ssh_keys() == [ALICE, DEPLOY]
    assert provider.network() == (sample_interfaces(20), [])
    for prefix in ("COREOS", "AFTERBURN"):
        assert env_file(provider.attributes(), prefix) == FILE_BODY.replace("{p}", prefix)


def test_user_data_without_cloud_config_header_is_ignored(tmp_path, caplog):
    root = write_drive(tmp_path, PLATFORM, replace={"user-data": b"hostname: other\n"})
    provider = open_provider(PLATFORM, root)
    assert provider.hostname() is None and provider.ssh_keys() == []
    assert "PROXMOXVE_HOSTNAME" not in provider.attributes()
    assert "user-data does not start with #cloud-config; ignored" in caplog.text


def test_instance_id_is_required(tmp_path):
    root = write_drive(tmp_path, PLATFORM, replace={"meta-data": b"{}\n"})
    with pytest.raises(InvalidMetadata) as info:
        open_provider(PLATFORM, root).attributes()
    assert (info.value.source, info.value.cause) == ("meta-data", "instance-id: missing")


@pytest.mark.parametrize("relpath, part", [("meta-data", "attributes"),
                                           ("user-data", "hostname"),
                                           ("network-config", "network")])
@pytest.mark.parametrize("kind", ["missing", "oversized", "symlink-out", "invalid", "not-utf8"])
def test_bad_files(tmp_path, relpath, part, kind):
    if kind == "missing" and relpath == "network-config":
        root = bad_drive(tmp_path, PLATFORM, relpath, kind)
        assert open_provider(PLATFORM, root).network() == ([], [])  # optional
        return
    invalid = b"#cloud-config\nhostname: [x\n" if relpath == "user-data" else b"a: [b\n"
    with pytest.raises(MetadataError) as info:
        root = bad_drive(tmp_path, PLATFORM, relpath, kind, invalid=invalid)
        getattr(open_provider(PLATFORM, root), part)()
    assert info.value.source == relpath and CAUSES[kind] in info.value.cause


def test_no_drive_is_success_with_nothing(monkeypatch, caplog):
    if any(os.path.exists(f"/dev/disk/by-label/{label}") for label in ("cidata", "CIDATA")):
        pytest.skip("this machine has a cidata drive")
    monkeypatch.setattr(proxmoxve, "DRIVE_WAIT", 0.0)
    with pytest.raises(NoMetadataHere, match="no cidata drive; nothing to do"):
        ProxmoxVEProvider(make_context(None))


def test_real_process(tmp_path, agent_env):
    paths = outputs(tmp_path)
    result = run_on_drive(agent_env, PLATFORM, write_drive(tmp_path, PLATFORM),
                          *output_args(paths), "--attributes-prefix", "AFTERBURN")
    assert result.returncode == 0, result.stderr
    assert paths["attributes"].read_text() == FILE_BODY.replace("{p}", "AFTERBURN")
    assert paths["hostname"].read_text() == "demo-1\n"
    assert_sample_units(paths["units"], 20)


def test_real_process_with_invalid_network_config(tmp_path, agent_env):
    paths = outputs(tmp_path)
    root = bad_drive(tmp_path, PLATFORM, "network-config", "invalid",
                     invalid=b"version: 1\nconfig:\n  - {type: physical, name: eth0, "
                             b"subnets: [{type: static, address: 10.0.0.300}]}\n")
    result = run_on_drive(agent_env, PLATFORM, root, *output_args(paths))
    assert_failed_cleanly(result, paths, PLATFORM, "network-config",
                          "config[0].subnets[0].address: not an IP address")
