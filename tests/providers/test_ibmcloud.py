"""ibmcloud (VPC): meta-data and MIME vendor-data on a cidata drive directory
(docs/protocols.md)."""

import base64

import pytest

from cl_metadata.errors import InvalidMetadata, MetadataError

from drive_fixtures import (ALICE, CAUSES, DEPLOY, assert_failed_cleanly, bad_drive, env_file,
                            open_provider, output_args, outputs, run_on_drive, write_drive)

PLATFORM = "ibmcloud"
ATTRIBUTES = {"IBMCLOUD_INSTANCE_ID": "i-0a1b2c3d4e5f60718", "IBMCLOUD_LOCAL_HOSTNAME": "demo-1"}
BOUNDARY = "b0undary"


def mime(*parts):
    """A multipart document of (content type, transfer encoding, body) parts."""
    chunks = [f'Content-Type: multipart/mixed; boundary="{BOUNDARY}"\nMIME-Version: 1.0\n\n']
    for content_type, encoding, body in parts:
        chunks.append(f"--{BOUNDARY}\nContent-Type: {content_type}\n"
                      f"Content-Transfer-Encoding: {encoding}\n\n{body}\n")
    chunks.append(f"--{BOUNDARY}--\n")
    return "".join(chunks).encode()


def keys_from(tmp_path, vendor_data):
    replace = {} if vendor_data is None else {"vendor-data": vendor_data}
    drop = ["vendor-data"] if vendor_data is None else []
    return open_provider(PLATFORM, write_drive(tmp_path, PLATFORM, drop=drop,
                                               replace=replace)).ssh_keys()


def test_attributes_hostname_and_keys_from_the_rendered_drive(tmp_path):
    root = write_drive(tmp_path, PLATFORM)
    provider = open_provider(PLATFORM, root)
    assert provider.attributes() == ATTRIBUTES
    assert provider.hostname() == "demo-1"
    assert provider.ssh_keys() == [ALICE, DEPLOY]  # from vendor-data's text/cloud-config part
    assert env_file(provider.attributes(), "COREOS") == (
        "COREOS_IBMCLOUD_INSTANCE_ID=i-0a1b2c3d4e5f60718\nCOREOS_IBMCLOUD_LOCAL_HOSTNAME=demo-1\n")
    assert env_file(provider.attributes(), "AFTERBURN") == (
        "AFTERBURN_IBMCLOUD_INSTANCE_ID=i-0a1b2c3d4e5f60718\n"
        "AFTERBURN_IBMCLOUD_LOCAL_HOSTNAME=demo-1\n")


def test_meta_data_lines_with_a_numeric_id_and_no_hostname(tmp_path):
    root = write_drive(tmp_path, PLATFORM, replace={"meta-data": b"instance-id: 0717\n"})
    provider = open_provider(PLATFORM, root)
    assert provider.attributes() == {"IBMCLOUD_INSTANCE_ID": "0717"}
    assert provider.hostname() is None


@pytest.mark.parametrize("vendor_data, keys", [
    (None, []),
    (mime(("text/x-shellscript", "7bit", "#!/bin/sh\ntrue")), []),
    (mime(("text/cloud-config", "7bit", "#cloud-config\npackages: [vim]")), []),
    # several parts naming keys: the last one wins
    (mime(("text/cloud-config", "7bit", f"#cloud-config\nssh_authorized_keys: ['{ALICE}']"),
          ("text/cloud-config", "base64", base64.b64encode(
              f"#cloud-config\nssh_authorized_keys:\n  - {DEPLOY}\n".encode()).decode())),
     [DEPLOY]),
    # not MIME at all: one #cloud-config document
    (f"#cloud-config\nssh_authorized_keys: ['{ALICE}']\n".encode(), [ALICE]),
], ids=["absent", "no-cloud-config", "cloud-config-without-keys", "last-wins", "plain"])
def test_keys_from_vendor_data(tmp_path, vendor_data, keys):
    assert keys_from(tmp_path, vendor_data) == keys


@pytest.mark.parametrize("body, cause", [
    ("#cloud-config\nssh_authorized_keys: [a", "invalid YAML at line"),
    ("#cloud-config\nssh_authorized_keys: {a: b}", "ssh_authorized_keys: expected a list"),
])
def test_bad_vendor_data_part_is_an_error_naming_the_part(tmp_path, body, cause):
    with pytest.raises(InvalidMetadata) as info:
        keys_from(tmp_path, mime(("text/cloud-config", "7bit", body)))
    assert info.value.source == "vendor-data (cloud-config part 1)"
    assert cause in info.value.cause


@pytest.mark.parametrize("kind", ["missing", "oversized", "symlink-out", "invalid", "not-utf8"])
def test_bad_meta_data(tmp_path, kind):
    root = bad_drive(tmp_path, PLATFORM, "meta-data", kind, invalid=b"instance-id: [x\n")
    with pytest.raises(MetadataError) as info:
        open_provider(PLATFORM, root).attributes()
    assert info.value.source == "meta-data"
    assert CAUSES[kind] in info.value.cause


def test_meta_data_that_is_not_a_mapping(tmp_path):
    root = write_drive(tmp_path, PLATFORM, replace={"meta-data": b"- instance-id\n"})
    with pytest.raises(InvalidMetadata) as info:
        open_provider(PLATFORM, root).hostname()
    assert (info.value.source, info.value.cause) == (
        "meta-data", "top level: expected a mapping, got a list")


def test_real_process(tmp_path, agent_env):
    paths = outputs(tmp_path)
    result = run_on_drive(agent_env, PLATFORM, write_drive(tmp_path, PLATFORM),
                          *output_args(paths, network=False), "--attributes-prefix", "AFTERBURN")
    assert result.returncode == 0, result.stderr
    assert paths["attributes"].read_text() == (
        "AFTERBURN_IBMCLOUD_INSTANCE_ID=i-0a1b2c3d4e5f60718\n"
        "AFTERBURN_IBMCLOUD_LOCAL_HOSTNAME=demo-1\n")
    assert paths["hostname"].read_text() == "demo-1\n"


def test_real_process_with_invalid_meta_data(tmp_path, agent_env):
    paths = outputs(tmp_path)
    root = bad_drive(tmp_path, PLATFORM, "meta-data", "invalid", invalid=b"a: [b\n")
    result = run_on_drive(agent_env, PLATFORM, root, *output_args(paths, network=False))
    assert_failed_cleanly(result, paths, PLATFORM, "meta-data", "invalid YAML at line 2")
