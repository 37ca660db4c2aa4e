"""powervs: openstack/latest/meta_data.json on a config-2 drive directory (docs/protocols.md)."""

import json

import pytest

from cl_metadata.errors import MetadataError

from drive_fixtures import (ALICE, CAUSES, DEPLOY, assert_failed_cleanly, bad_drive, env_file,
                            open_provider, output_args, outputs, run_on_drive, write_drive)

PLATFORM = "powervs"
META = "openstack/latest/meta_data.json"
UUID = "5d3f8c2a-9b14-4e6f-a0c7-2e81b4d9f063"


def test_attributes_hostname_and_sorted_keys(tmp_path):
    provider = open_provider(PLATFORM, write_drive(tmp_path, PLATFORM))
    assert provider.attributes() == {"POWERVS_INSTANCE_ID": UUID,
                                     "POWERVS_LOCAL_HOSTNAME": "demo-1"}
    assert provider.hostname() == "demo-1"  # name, not the FQDN in "hostname"
    assert provider.ssh_keys() == [ALICE, DEPLOY]
    for prefix in ("COREOS", "AFTERBURN"):
        assert env_file(provider.attributes(), prefix) == (
            f"{prefix}_POWERVS_INSTANCE_ID={UUID}\n{prefix}_POWERVS_LOCAL_HOSTNAME=demo-1\n")


def test_keys_follow_key_names_not_map_order(tmp_path):
    meta = {"uuid": "u-1", "public_keys": {"zed": DEPLOY, "amy": ALICE + "\n"}}
    provider = open_provider(PLATFORM, write_drive(tmp_path, PLATFORM,
                                                   replace={META: json.dumps(meta).encode()}))
    assert provider.ssh_keys() == [ALICE, DEPLOY]
    assert provider.attributes() == {"POWERVS_INSTANCE_ID": "u-1"}
    assert provider.hostname() is None


@pytest.mark.parametrize("kind", ["missing", "oversized", "symlink-out", "invalid", "not-utf8"])
def test_bad_meta_data(tmp_path, kind):
    root = bad_drive(tmp_path, PLATFORM, META, kind)
    with pytest.raises(MetadataError) as info:
        open_provider(PLATFORM, root).attributes()
    assert info.value.source == META
    assert CAUSES[kind] in info.value.cause


@pytest.mark.parametrize("content, cause", [
    (b'["uuid"]', "expected a JSON object, got a list"),
    (b'{"name": {"a": 1}}', "field 'name': expected a string"),
    (b'{"public_keys": ["k"]}', "field 'public_keys': expected an object of strings"),
])
def test_wrong_json_types(tmp_path, content, cause):
    provider = open_provider(PLATFORM, write_drive(tmp_path, PLATFORM, replace={META: content}))
    with pytest.raises(MetadataError) as info:
        provider.attributes(), provider.ssh_keys()
    assert info.value.source == META and cause in info.value.cause


def test_real_process(tmp_path, agent_env):
    paths = outputs(tmp_path)
    result = run_on_drive(agent_env, PLATFORM, write_drive(tmp_path, PLATFORM),
                          *output_args(paths, network=False))
    assert result.returncode == 0, result.stderr
    assert paths["attributes"].read_text() == (
        f"COREOS_POWERVS_INSTANCE_ID={UUID}\nCOREOS_POWERVS_LOCAL_HOSTNAME=demo-1\n")
    assert paths["hostname"].read_text() == "demo-1\n"


def test_real_process_with_oversized_meta_data(tmp_path, agent_env):
    paths = outputs(tmp_path)
    result = run_on_drive(agent_env, PLATFORM, bad_drive(tmp_path, PLATFORM, META, "oversized"),
                          *output_args(paths, network=False))
    assert_failed_cleanly(result, paths, PLATFORM, META, "exceeds 1048576 bytes")
