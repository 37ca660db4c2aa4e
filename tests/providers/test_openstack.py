"""openstack: the config drive first (a directory here), else the metadata service."""

import dataclasses
import json
import os

import pytest

from cl_metadata.errors import InvalidMetadata
from cl_metadata.fakeserver.drive import write_tree
from cl_metadata.fakeserver.instance import load_instance
from cl_metadata.fakeserver.render import renderer_for
from cl_metadata.providers.openstack import OpenStackProvider

from conftest import make_context

SAMPLE = load_instance(None)
ALICE, DEPLOY = (key.key for key in SAMPLE.ssh_keys)


def drive(tmp_path, instance=SAMPLE, drop=(), replace=None):
    root = tmp_path / "drive"
    files = dict(renderer_for("openstack").drive_files(instance))
    for relpath in drop:
        del files[relpath]
    files.update(replace or {})
    write_tree(files, root)
    return root


def provider(drive_dir, server=None):
    environ = {"CL_METADATA_CONFIG_DRIVE": str(drive_dir)} if drive_dir else {}
    return OpenStackProvider(make_context(server, timeout=3, environ=environ))


def test_config_drive_gives_every_attribute_without_http(tmp_path, fake_server):
    server = fake_server("openstack")
    p = provider(drive(tmp_path), server)
    assert p.attributes() == {
        "OPENSTACK_HOSTNAME": "demo-1.example.internal",
        "OPENSTACK_INSTANCE_ID": "i-0a1b2c3d4e5f60718",
        "OPENSTACK_INSTANCE_TYPE": "m1.small",
        "OPENSTACK_INSTANCE_UUID": "5d3f8c2a-9b14-4e6f-a0c7-2e81b4d9f063",
        "OPENSTACK_IPV4_LOCAL": "10.0.1.15",
        "OPENSTACK_IPV4_PUBLIC": "203.0.113.25",
    }
    assert p.hostname() == "demo-1.example.internal"
    assert p.ssh_keys() == [ALICE, DEPLOY]  # sorted by key name
    assert server.requests == []


def test_keys_are_sorted_by_name_not_map_order(tmp_path):
    meta = {"uuid": "u-1", "public_keys": {"zed": DEPLOY + "\n", "amy": ALICE + "\n"}}
    root = drive(tmp_path, replace={"openstack/latest/meta_data.json":
                                    json.dumps(meta).encode()})
    assert provider(root).ssh_keys() == [ALICE, DEPLOY]


def test_drive_without_ec2_tree(tmp_path):
    root = drive(tmp_path, drop=["ec2/latest/meta-data.json"])
    assert provider(root).attributes() == {
        "OPENSTACK_HOSTNAME": "demo-1.example.internal",
        "OPENSTACK_INSTANCE_UUID": "5d3f8c2a-9b14-4e6f-a0c7-2e81b4d9f063",
    }


def test_no_floating_ip_on_the_drive_is_written_empty(tmp_path):
    root = drive(tmp_path, instance=dataclasses.replace(SAMPLE, public_ipv4=None))
    assert provider(root).attributes()["OPENSTACK_IPV4_PUBLIC"] == ""


def test_a_drive_with_only_a_uuid(tmp_path):
    root = drive(tmp_path, drop=["ec2/latest/meta-data.json"], replace={
        "openstack/latest/meta_data.json": b'{"uuid": "83679162-1378-4288-a2d4-70e13ec132aa"}'})
    p = provider(root)
    assert p.attributes() == {"OPENSTACK_INSTANCE_UUID": "83679162-1378-4288-a2d4-70e13ec132aa"}
    assert p.hostname() is None and p.ssh_keys() == []


@pytest.mark.parametrize("content, message", [
    (b"{not json", "invalid JSON"),
    (b"[]", "expected a JSON object, got a list"),
    (b'{"hostname": ["a"]}', "field 'hostname': expected a string, got a list"),
    (b'{"public_keys": ["ssh-ed25519 AAAA"]}', "field 'public_keys': expected an object"),
])
def test_invalid_drive_document_is_an_error_not_a_fallback(tmp_path, fake_server, content,
                                                           message):
    server = fake_server("openstack")
    root = drive(tmp_path, replace={"openstack/latest/meta_data.json": content})
    with pytest.raises(InvalidMetadata) as info:
        p = provider(root, server)
        p.attributes(), p.ssh_keys()
    assert info.value.source == "openstack/latest/meta_data.json"
    assert message in info.value.cause
    assert server.requests == []


def test_no_drive_falls_back_to_the_metadata_service(fake_server):
    if os.path.exists("/dev/disk/by-label/config-2") or os.path.exists("/dev/disk/by-label/CONFIG-2"):
        pytest.skip("this machine has a real config drive")
    server = fake_server("openstack")
    p = provider(None, server)
    assert p.attributes()["OPENSTACK_INSTANCE_UUID"] == "5d3f8c2a-9b14-4e6f-a0c7-2e81b4d9f063"
    assert p.ssh_keys() == [ALICE, DEPLOY]
    assert server.requests


def test_symlink_escaping_the_drive_is_not_followed(tmp_path, fake_server, caplog):
    secret = tmp_path / "secret.json"
    secret.write_text('{"uuid": "stolen"}')
    root = drive(tmp_path, drop=["openstack/latest/meta_data.json"])
    os.symlink(secret, root / "openstack/latest/meta_data.json")
    server = fake_server("openstack")
    p = provider(root, server)
    assert p.attributes()["OPENSTACK_INSTANCE_UUID"] == "5d3f8c2a-9b14-4e6f-a0c7-2e81b4d9f063"
    assert "config drive unusable" in caplog.text and "stolen" not in caplog.text
