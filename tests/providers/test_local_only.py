"""``--local-only``: a run before the network reads config drives (and other sources on the
machine) and leaves platforms read over the network to a later run — a notice, exit 0, no
request, nothing written and nothing removed."""

import json
import os
import stat

from cl_metadata import pipeline
from cl_metadata.context import Context
from cl_metadata.sources import configdrive
from cl_metadata.sources.deadline import Deadline

from conftest import run_agent
from drive_fixtures import write_drive

NETWORK_DATA = "openstack/latest/network_data.json"
STATIC = {
    "links": [{"id": "nic0", "type": "phy", "ethernet_mac_address": "52:54:00:12:34:56"}],
    "networks": [{"id": "net0", "link": "nic0", "type": "ipv4", "ip_address": "10.0.2.50",
                  "netmask": "255.255.255.0",
                  "routes": [{"network": "0.0.0.0", "netmask": "0.0.0.0",
                              "gateway": "10.0.2.2"}]}],
    "services": [{"type": "dns", "address": "10.0.2.3"}],
}
STATIC_UNIT = """\
# Written by cl-metadata from the platform's metadata; replaced on every run.

[Match]
MACAddress=52:54:00:12:34:56

[Network]
DNS=10.0.2.3

[Address]
Address=10.0.2.50/24

[Route]
Destination=0.0.0.0/0
Gateway=10.0.2.2
"""


def test_an_http_platform_is_left_alone(fake_server, agent_env, tmp_path):
    server = fake_server("aws")
    attributes = tmp_path / "coreos"
    attributes.write_text("COREOS_EC2_IPV4_LOCAL=10.9.9.9\n")
    fragment_home = tmp_path / "units"
    result = run_agent("--provider", "aws", "--local-only", "--attributes", attributes,
                       "--network-units", fragment_home,
                       env={**agent_env, "CL_METADATA_ENDPOINT": server.url})
    assert result.returncode == 0, result.stderr
    assert result.stderr == ("cl-metadata: notice: aws: the platform is read over the network; "
                             "--local-only leaves it to a later run\n")
    assert server.requests == []
    assert attributes.read_text() == "COREOS_EC2_IPV4_LOCAL=10.9.9.9\n"
    assert not fragment_home.exists()


def test_a_config_drive_network_is_written_before_the_network(fake_server, agent_env, tmp_path):
    server = fake_server("openstack")  # would answer, but must not be asked
    drive = write_drive(tmp_path, "openstack", replace={NETWORK_DATA: json.dumps(STATIC).encode()})
    units = tmp_path / "run-systemd-network"
    result = run_agent("--provider", "openstack", "--local-only", "--network-units", units,
                       env={**agent_env, "CL_METADATA_ENDPOINT": server.url,
                            "CL_METADATA_CONFIG_DRIVE": str(drive)})
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert server.requests == []
    [name] = os.listdir(units)
    assert (units / name).read_text() == STATIC_UNIT
    assert stat.S_IMODE((units / name).stat().st_mode) == 0o644


def test_openstack_without_a_drive_waits_for_one_then_stays_off_the_network(
        fake_server, tmp_path, monkeypatch):
    """No ``config-2`` label: the service is not asked before the network; the drive was
    waited for as long as a drive-only platform waits."""
    server = fake_server("openstack")
    waits = []
    real = configdrive.find_labelled_device

    def no_drive(labels, *, wait=0.0, **kwargs):
        waits.append(wait)
        return real(labels, by_label_dir=str(tmp_path / "by-label"), wait=0.0,
                    **{k: v for k, v in kwargs.items() if k != "by_label_dir"})

    monkeypatch.setattr(configdrive, "find_labelled_device", no_drive)
    (tmp_path / "by-label").mkdir()
    attributes = tmp_path / "coreos"
    context = Context(deadline=Deadline(10), environ={"CL_METADATA_ENDPOINT": server.url},
                      local_only=True)
    pipeline.run(pipeline.Job(provider_id="openstack", attributes_path=str(attributes)),
                 context)
    assert waits == [5.0]
    assert server.requests == []
    assert not attributes.exists()


def test_check_in_cannot_be_local(agent_env, tmp_path):
    result = run_agent("--provider", "openstack", "--local-only", "--check-in", env=agent_env)
    assert result.returncode == 2
    assert result.stderr == ("cl-metadata: error: --check-in talks to the platform over the "
                             "network; --local-only never does\n")
