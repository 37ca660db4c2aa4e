"""nutanix: the config-2 drive as AHV writes it (no ec2/ tree), never the metadata service."""

import json
import os

import pytest

from cl_metadata.errors import NoMetadataHere
from cl_metadata.fakeserver.drive import write_tree
from cl_metadata.fakeserver.render import renderer_for
from cl_metadata.providers import nutanix
from cl_metadata.providers.nutanix import NutanixProvider

from conftest import make_context
from drive_fixtures import ALICE, DEPLOY, SAMPLE, open_provider


def ahv_drive(tmp_path):
    files = renderer_for("openstack").drive_files(SAMPLE)
    del files["ec2/latest/meta-data.json"]
    write_tree(files, tmp_path / "drive")
    return tmp_path / "drive", json.loads(files["openstack/latest/meta_data.json"])


def test_reads_meta_data_json(tmp_path):
    root, meta = ahv_drive(tmp_path)
    provider = open_provider("nutanix", root)
    assert provider.attributes() == {"NUTANIX_INSTANCE_UUID": meta["uuid"],
                                     "NUTANIX_HOSTNAME": meta["hostname"]}
    assert provider.hostname() == meta["hostname"]
    assert sorted(provider.ssh_keys()) == sorted([ALICE, DEPLOY])


def test_no_drive_is_success_with_nothing(monkeypatch, caplog):
    if any(os.path.exists(f"/dev/disk/by-label/{label}") for label in ("config-2", "CONFIG-2")):
        pytest.skip("this machine has a config drive")
    monkeypatch.setattr(nutanix, "DRIVE_WAIT", 0.0)
    with pytest.raises(NoMetadataHere, match="no config-2 drive; nothing to do"):
        NutanixProvider(make_context(None))
