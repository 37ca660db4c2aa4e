"""cloudstack (Ignition's and Flatcar's id): the config drive when there is one — then not one
HTTP request — else the metadata service of the DHCP lease's server; a drive that cannot be
used falls back with a warning, a bad file on a drive that was read is an error (as openstack)."""

import pytest

from cl_metadata import cmdline, registry
from cl_metadata.errors import InvalidMetadata, MetadataError
from cl_metadata.fakeserver.instance import load_instance
from cl_metadata.providers import cloudstack_configdrive
from cl_metadata.providers.cloudstack import CloudStackProvider
from cl_metadata.sources import configdrive, dhcp

from conftest import make_context, run_agent
from drive_fixtures import write_drive

SAMPLE = load_instance(None)
ALICE, DEPLOY = (key.key for key in SAMPLE.ssh_keys)
DRIVE_ATTRIBUTES = {
    "CLOUDSTACK_AVAILABILITY_ZONE": "nova",
    "CLOUDSTACK_CLOUD_IDENTIFIER": "CloudStack-{8f1c2d4e6a7b4c3d9e0f1a2b3c4d5e6f}",
    "CLOUDSTACK_INSTANCE_ID": "i-0a1b2c3d4e5f60718",
    "CLOUDSTACK_LOCAL_HOSTNAME": "demo-1",  # the drive holds the first label
    "CLOUDSTACK_SERVICE_OFFERING": "m1.small",
    "CLOUDSTACK_VM_ID": "5d3f8c2a-9b14-4e6f-a0c7-2e81b4d9f063",
}
SERVICE_ATTRIBUTES = dict(
    DRIVE_ATTRIBUTES,
    CLOUDSTACK_LOCAL_HOSTNAME="demo-1.example.internal",
    CLOUDSTACK_HOSTNAME="demo-1.example.internal",
    CLOUDSTACK_IPV4_LOCAL="10.0.1.15",
    CLOUDSTACK_IPV4_PUBLIC="203.0.113.25",
    CLOUDSTACK_PUBLIC_HOSTNAME="203.0.113.25",
)


@pytest.fixture(autouse=True)
def machine(tmp_path, monkeypatch):
    """A DHCP lease naming a server, no labelled drive and no /media/ConfigDrive, whatever
    this machine has: each test adds the drive it wants through the override."""
    leases = tmp_path / "root/run/systemd/netif/leases"
    leases.mkdir(parents=True)
    (leases / "2").write_text("ADDRESS=10.1.1.20\nSERVER_ADDRESS=10.1.1.1\n")
    monkeypatch.setattr(dhcp, "ROOT", str(tmp_path / "root"))
    (tmp_path / "by-label").mkdir()
    real = configdrive.find_labelled_device
    monkeypatch.setattr(configdrive, "find_labelled_device", lambda labels, **kw: real(
        labels, **dict(kw, by_label_dir=str(tmp_path / "by-label"))))
    monkeypatch.setattr(cloudstack_configdrive, "PREMOUNTED", str(tmp_path / "media/ConfigDrive"))


def provider(server=None, drive=None):
    environ = {"CL_METADATA_CONFIG_DRIVE": str(drive)} if drive else {}
    return CloudStackProvider(make_context(server, timeout=3, environ=environ))


def test_the_drive_answers_and_nothing_is_asked_over_http(tmp_path, fake_server):
    server = fake_server("cloudstack")
    p = provider(server, write_drive(tmp_path, "cloudstack"))
    assert p.attributes() == DRIVE_ATTRIBUTES
    assert p.ssh_keys() == [ALICE, DEPLOY]
    interfaces, _ = p.network()
    assert [i.mac for i in interfaces] == [nic.mac for nic in SAMPLE.network_interfaces]
    assert p.user_data() == SAMPLE.user_data_bytes()
    assert server.requests == []


def test_cloudstacks_own_mount_is_read_without_mounting(tmp_path, fake_server, monkeypatch):
    media = write_drive(tmp_path, "cloudstack", name="media/ConfigDrive")
    monkeypatch.setattr(cloudstack_configdrive, "PREMOUNTED", str(media))
    server = fake_server("cloudstack")
    assert provider(server).attributes() == DRIVE_ATTRIBUTES
    assert server.requests == []


def test_no_drive_means_the_metadata_service_of_the_lease(fake_server, caplog):
    caplog.set_level("INFO", logger="cl_metadata")
    server = fake_server("cloudstack")
    p = provider(server)
    assert p.attributes() == SERVICE_ATTRIBUTES
    assert p.ssh_keys() == [ALICE, DEPLOY]
    assert p.network() == ([], [])  # the service describes no interfaces
    assert p.user_data() == SAMPLE.user_data_bytes()
    paths = {r["path"] for r in server.requests}
    assert "/latest/meta-data/instance-id" in paths and "/latest/user-data" in paths
    assert "cloudstack: no config drive; using the metadata service" in caplog.text


def test_no_drive_and_no_lease_is_the_services_error(tmp_path, fake_server, monkeypatch):
    monkeypatch.setattr(dhcp, "ROOT", str(tmp_path / "no-dhcp-client"))
    server = fake_server("cloudstack")
    with pytest.raises(MetadataError, match="no DHCP lease names a server identifier") as info:
        provider(server).attributes()
    assert info.value.source == "DHCP leases"
    assert server.requests == []


@pytest.mark.parametrize("case", ["an OpenStack drive", "a symlink out of the drive"])
def test_an_unusable_drive_falls_back_to_the_service_with_a_warning(tmp_path, fake_server,
                                                                    caplog, case):
    if case == "an OpenStack drive":  # config-2 without cloudstack/metadata/
        drive = write_drive(tmp_path, "openstack")
    else:
        drive = write_drive(tmp_path, "cloudstack", drop=["cloudstack/metadata/instance_id.txt"])
        (tmp_path / "secret").write_text("stolen-value")
        (drive / "cloudstack/metadata/instance_id.txt").symlink_to(tmp_path / "secret")
    server = fake_server("cloudstack")
    p = provider(server, drive)
    assert p.attributes() == SERVICE_ATTRIBUTES
    assert server.requests
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1
    assert "cloudstack: config drive unusable" in warnings[0].getMessage()
    assert "stolen-value" not in caplog.text


def test_a_bad_file_on_a_drive_that_was_read_is_an_error_not_a_fallback(tmp_path, fake_server):
    drive = write_drive(tmp_path, "cloudstack",
                        replace={"cloudstack/metadata/instance_id.txt": b"caf\xe9\n"})
    server = fake_server("cloudstack")
    with pytest.raises(InvalidMetadata, match="not valid UTF-8") as info:
        provider(server, drive).attributes()
    assert info.value.source == "cloudstack/metadata/instance_id.txt"
    assert server.requests == []


def test_the_kernel_ids_land_on_this_provider():
    assert "cloudstack" not in cmdline.KERNEL_IDS  # it used to select cloudstack-configdrive
    assert registry.get("cloudstack").provider is CloudStackProvider


@pytest.mark.parametrize("key", ["flatcar.oem.id", "ignition.platform.id"])
def test_real_process_from_the_kernel_command_line(tmp_path, agent_env, key):
    (tmp_path / "cmdline").write_text(f"root=/dev/vda {key}=cloudstack\n")
    agent_env.update(CL_METADATA_CMDLINE=str(tmp_path / "cmdline"),
                     CL_METADATA_CONFIG_DRIVE=str(write_drive(tmp_path, "cloudstack")))
    attributes = tmp_path / "attributes"
    result = run_agent("--cmdline", "--attributes", attributes, "-v", env=agent_env)
    assert result.returncode == 0, result.stderr
    assert "cloudstack" in result.stderr and "cloudstack-configdrive" not in result.stderr
    # the drive's names, and ct's unprefixed hostname as cloudstack-configdrive wrote it
    assert attributes.read_text() == "CLOUDSTACK_LOCAL_HOSTNAME=demo-1\n" + "".join(
        f"COREOS_{name}={value}\n" if "{" not in value else f'COREOS_{name}="{value}"\n'
        for name, value in sorted(DRIVE_ATTRIBUTES.items()))
