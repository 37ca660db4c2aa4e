"""qemu: the firmware config entry opt/org.cl-metadata/meta-data, from a sysfs-shaped tree
(module constant) or the CL_METADATA_CONFIG_DRIVE directory the fake-server tool writes."""

import os
import sys

import pytest

from cl_metadata.errors import InvalidMetadata, MetadataError, NoMetadataHere
from cl_metadata.providers import qemu
from cl_metadata.providers.qemu import QemuProvider

from conftest import make_context, needs_root
from drive_fixtures import (ALICE, CAUSES, DEPLOY, assert_failed_cleanly, bad_drive, env_file,
                            open_provider, output_args, outputs, run_on_drive, write_drive)

PLATFORM = "qemu"
ENTRY = "opt/org.cl-metadata/meta-data/raw"
NAME = "opt/org.cl-metadata/meta-data"
ATTRIBUTES = {"QEMU_INSTANCE_ID": "i-0a1b2c3d4e5f60718", "QEMU_HOSTNAME": "demo-1.example.internal",
              "QEMU_IPV4_LOCAL": "10.0.1.15", "QEMU_IPV4_PUBLIC": "203.0.113.25",
              "QEMU_IPV6": "2001:db8:1:2::15"}
FILE_BODY = ("{p}_QEMU_HOSTNAME=demo-1.example.internal\n{p}_QEMU_INSTANCE_ID=i-0a1b2c3d4e5f60718\n"
             "{p}_QEMU_IPV4_LOCAL=10.0.1.15\n{p}_QEMU_IPV4_PUBLIC=203.0.113.25\n"
             "{p}_QEMU_IPV6=2001:db8:1:2::15\n")


def entry(tmp_path, text):
    return open_provider(PLATFORM, write_drive(tmp_path, PLATFORM,
                                               replace={ENTRY: text.encode()}))


def sysfs(tmp_path, content=None):
    """A /sys/firmware/qemu_fw_cfg look-alike: by_name/<name> is a symlink into by_key."""
    root = tmp_path / "qemu_fw_cfg"
    (root / "by_key/37").mkdir(parents=True)
    (root / "by_name" / os.path.dirname(NAME)).mkdir(parents=True)
    if content is not None:
        (root / "by_key/37/raw").write_bytes(content)
        os.symlink(root / "by_key/37", root / "by_name" / NAME)
    return root


def test_the_rendered_entry(tmp_path):
    provider = open_provider(PLATFORM, write_drive(tmp_path, PLATFORM))
    assert provider.attributes() == ATTRIBUTES
    assert provider.hostname() == "demo-1.example.internal"
    assert provider.ssh_keys() == [ALICE, DEPLOY]
    for prefix in ("COREOS", "AFTERBURN"):
        assert env_file(provider.attributes(), prefix) == FILE_BODY.replace("{p}", prefix)


def test_documented_name_fits_fw_cfg():
    assert qemu.FW_CFG_NAME == NAME and NAME.startswith("opt/") and len(NAME.encode()) <= 55


def test_free_attributes_and_key_forms(tmp_path):
    provider = entry(tmp_path, f"instance-id: 0042\npublic-keys: {{b: '{DEPLOY}', a: '{ALICE}'}}\n"
                               "attributes: {ROLE: etcd, ZONE_2: '2'}\n")
    assert provider.attributes() == {"QEMU_INSTANCE_ID": "0042", "QEMU_ROLE": "etcd",
                                     "QEMU_ZONE_2": "2"}
    assert provider.hostname() is None
    assert provider.ssh_keys() == [ALICE, DEPLOY]


@pytest.mark.parametrize("text, cause", [
    ("attributes: {role: etcd}", "attributes[0]: the name must consist of A-Z, 0-9 and _"),
    ("instance-id: a\nattributes: {INSTANCE_ID: b}",
     "attributes[0]: repeats a name that instance-id or local-hostname sets"),
    ("attributes: {ROLE: [etcd]}", "attributes[0]: expected a string, got a list"),
    ("attributes: [ROLE]", "attributes: expected a mapping, got a list"),
    ("- instance-id", "top level: expected a mapping, got a list"),
    ("instance-id: [", "invalid YAML at line 1"),
])
def test_invalid_entry_names_the_field(tmp_path, text, cause):
    with pytest.raises(InvalidMetadata) as info:
        entry(tmp_path, text).attributes()
    assert info.value.source == NAME and info.value.cause.startswith(cause)


@pytest.mark.parametrize("kind", ["oversized", "symlink-out", "not-utf8"])
def test_bad_entry_files(tmp_path, kind):
    with pytest.raises(MetadataError) as info:
        open_provider(PLATFORM, bad_drive(tmp_path, PLATFORM, ENTRY, kind))
    assert info.value.source in (ENTRY, NAME) and CAUSES[kind] in info.value.cause


# --- the sysfs tree -------------------------------------------------------------------------

@pytest.fixture
def modprobe_log(tmp_path, monkeypatch):
    """MODPROBE replaced by a script that logs its call (and loads nothing)."""
    log = tmp_path / "modprobe.log"
    script = tmp_path / "modprobe"
    script.write_text(f"#!{sys.executable}\nimport sys\nopen({str(log)!r}, 'a').write("
                      "' '.join(sys.argv[1:]) + '\\n')\n")
    script.chmod(0o755)
    monkeypatch.setattr(qemu, "MODPROBE", (str(script), "qemu_fw_cfg"))
    return log


def test_reads_sysfs_through_the_by_name_symlink(tmp_path, monkeypatch, modprobe_log):
    monkeypatch.setattr(qemu, "FW_CFG_ROOT", str(sysfs(tmp_path, b"local-hostname: vm-7\n")))
    provider = QemuProvider(make_context(None))
    assert provider.hostname() == "vm-7" and provider.attributes() == {"QEMU_HOSTNAME": "vm-7"}
    assert not modprobe_log.exists()  # the driver was there already


def test_missing_driver_is_loaded_then_no_entry_is_nothing(tmp_path, monkeypatch, modprobe_log,
                                                           caplog):
    monkeypatch.setattr(qemu, "FW_CFG_ROOT", str(tmp_path / "absent"))
    with pytest.raises(NoMetadataHere, match=f"no firmware config entry {NAME}; nothing to do"):
        QemuProvider(make_context(None))
    assert modprobe_log.read_text() == "qemu_fw_cfg\n"


def test_oversized_sysfs_entry(tmp_path, monkeypatch, modprobe_log):
    monkeypatch.setattr(qemu, "FW_CFG_ROOT", str(sysfs(tmp_path, b"#" * (qemu.MAX_BYTES + 1))))
    with pytest.raises(InvalidMetadata) as info:
        QemuProvider(make_context(None))
    assert info.value.source.endswith("by_name/" + ENTRY)
    assert info.value.cause == "exceeds 1048576 bytes"


# --- the real process -----------------------------------------------------------------------

def test_real_process(tmp_path, agent_env):
    paths = outputs(tmp_path)
    result = run_on_drive(agent_env, PLATFORM, write_drive(tmp_path, PLATFORM),
                          *output_args(paths, network=False))
    assert result.returncode == 0, result.stderr
    assert paths["attributes"].read_text() == FILE_BODY.replace("{p}", "COREOS")
    assert paths["hostname"].read_text() == "demo-1.example.internal\n"


def test_real_process_without_the_entry_succeeds_with_nothing(tmp_path, agent_env):
    # nothing written, and an earlier boot's files (the keys too) left as they are
    empty = tmp_path / "empty"
    empty.mkdir()
    attributes, hostname = tmp_path / "attributes", tmp_path / "hostname"
    attributes.write_text("QEMU_INSTANCE_ID=earlier\n")
    result = run_on_drive(agent_env, PLATFORM, empty, "--attributes", attributes,
                          "--hostname", hostname)
    assert result.returncode == 0, result.stderr
    assert attributes.read_text() == "QEMU_INSTANCE_ID=earlier\n" and not hostname.exists()
    assert result.stderr == (f"cl-metadata: notice: qemu: no firmware config entry {NAME}; "
                             "nothing to do\n")


@needs_root
def test_real_process_writes_the_keys(tmp_path, agent_env, throwaway_user):
    result = run_on_drive(agent_env, PLATFORM, write_drive(tmp_path, PLATFORM),
                          "--ssh-keys", throwaway_user.pw_name)
    assert result.returncode == 0, result.stderr
    with open(os.path.join(throwaway_user.pw_dir, ".ssh/authorized_keys.d/cl-metadata")) as f:
        assert f.read() == f"{ALICE}\n{DEPLOY}\n"


def test_real_process_with_invalid_yaml(tmp_path, agent_env):
    paths = outputs(tmp_path)
    root = bad_drive(tmp_path, PLATFORM, ENTRY, "invalid", invalid=b"local-hostname: [x\n")
    result = run_on_drive(agent_env, PLATFORM, root, *output_args(paths, network=False))
    assert_failed_cleanly(result, paths, PLATFORM, NAME, "invalid YAML at line 1")
