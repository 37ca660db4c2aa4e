"""One machine through every platform: each fact of the shared instance description lands in
that platform's own attribute names, and keys and hostname arrive unchanged.

Platform-specific shapes stay each provider's business (tests/providers/); this test holds them
to one logical machine, as tiny-cloud checks one fixture tree against every provider.
"""

import os

import pytest

from cl_metadata.sources import configdrive, dhcp

from cl_metadata import registry
from cl_metadata.fakeserver.drive import write_tree
from cl_metadata.fakeserver.instance import load_instance
from cl_metadata.fakeserver.render import renderer_for
from cl_metadata.fakeserver.server import FakeServer, UnixFakeServer
from cl_metadata.fakeserver.standins import write_vmware_rpctool

from conftest import make_context

MACHINE = load_instance(os.path.join(os.path.dirname(__file__), "fixtures",
                                     "contract-instance.yaml"))
KEYS = {key.key for key in MACHINE.ssh_keys}
MACS = {nic.mac for nic in MACHINE.network_interfaces}
PUBLIC_NIC_ONLY = {"hetzner"}  # its network-config describes the public NIC; private ones are
# attributes

# platform → {fact: attribute name}; facts: instance id (or uuid where the platform names its
# machines by UUID), private IPv4, public IPv4, hostname. A platform without such an item in its
# protocol simply has no entry for that fact.
HTTP_FACTS = {
    "openstack-metadata": {"instance_id": "OPENSTACK_INSTANCE_ID", "uuid": "OPENSTACK_INSTANCE_UUID",
                           "private": "OPENSTACK_IPV4_LOCAL", "public": "OPENSTACK_IPV4_PUBLIC",
                           "hostname": "OPENSTACK_HOSTNAME"},
    "aws": {"instance_id": "AWS_INSTANCE_ID", "private": "AWS_IPV4_LOCAL",
            "public": "AWS_IPV4_PUBLIC", "hostname": "AWS_HOSTNAME"},
    "ec2": {"instance_id": "EC2_INSTANCE_ID", "private": "EC2_IPV4_LOCAL",
            "public": "EC2_IPV4_PUBLIC", "hostname": "EC2_HOSTNAME"},
    "gcp": {"private": "GCP_IP_LOCAL_0", "public": "GCP_IP_EXTERNAL_0", "hostname": "GCP_HOSTNAME"},
    "gce": {"private": "GCE_IP_LOCAL_0", "public": "GCE_IP_EXTERNAL_0", "hostname": "GCE_HOSTNAME"},
    "azure": {"private": "AZURE_IPV4_DYNAMIC", "public": "AZURE_IPV4_VIRTUAL"},
    "digitalocean": {"private": "DIGITALOCEAN_IPV4_PRIVATE_0",
                     "public": "DIGITALOCEAN_IPV4_PUBLIC_0", "hostname": "DIGITALOCEAN_HOSTNAME"},
    "packet": {"private": "PACKET_IPV4_PRIVATE_0", "public": "PACKET_IPV4_PUBLIC_0",
               "hostname": "PACKET_HOSTNAME"},
    "hetzner": {"instance_id": "HETZNER_INSTANCE_ID", "private": "HETZNER_PRIVATE_IPV4_0",
                "public": "HETZNER_PUBLIC_IPV4", "hostname": "HETZNER_HOSTNAME"},
    "scaleway": {"instance_id": "SCALEWAY_INSTANCE_ID", "private": "SCALEWAY_IPV4_PRIVATE",
                 "public": "SCALEWAY_IPV4_PUBLIC", "hostname": "SCALEWAY_HOSTNAME"},
    "oraclecloud": {"instance_id": "ORACLECLOUD_INSTANCE_ID", "hostname": "ORACLECLOUD_HOSTNAME"},
    "akamai": {"uuid": "AKAMAI_INSTANCE_HOST_UUID", "private": "AKAMAI_PRIVATE_IPV4_0",
               "public": "AKAMAI_PUBLIC_IPV4_0"},
    "vultr": {"instance_id": "VULTR_INSTANCE_ID", "hostname": "VULTR_HOSTNAME"},
    "upcloud": {"uuid": "UPCLOUD_INSTANCE_ID", "hostname": "UPCLOUD_HOSTNAME"},
    "aliyun": {"instance_id": "ALIYUN_INSTANCE_ID", "private": "ALIYUN_IPV4_PRIVATE",
               "public": "ALIYUN_IPV4_PUBLIC", "hostname": "ALIYUN_HOSTNAME"},
    "exoscale": {"instance_id": "EXOSCALE_INSTANCE_ID", "private": "EXOSCALE_LOCAL_IPV4",
                 "public": "EXOSCALE_PUBLIC_IPV4", "hostname": "EXOSCALE_LOCAL_HOSTNAME"},
    "cloudstack-metadata": {"instance_id": "CLOUDSTACK_INSTANCE_ID",
                            "private": "CLOUDSTACK_IPV4_LOCAL", "public": "CLOUDSTACK_IPV4_PUBLIC",
                            "hostname": "CLOUDSTACK_LOCAL_HOSTNAME"},
}
# config drives often carry the short name (a platform's "name") where HTTP services give the
# FQDN: "hostname_short" is the first label
DRIVE_FACTS = {
    "openstack": HTTP_FACTS["openstack-metadata"],
    "cloudstack-configdrive": {"instance_id": "CLOUDSTACK_INSTANCE_ID", "uuid": "CLOUDSTACK_VM_ID",
                               "hostname_short": "CLOUDSTACK_LOCAL_HOSTNAME"},
    "cloudstack": {"instance_id": "CLOUDSTACK_INSTANCE_ID", "uuid": "CLOUDSTACK_VM_ID",
                   "hostname_short": "CLOUDSTACK_LOCAL_HOSTNAME"},  # the drive, when there is one
    "ibmcloud": {"instance_id": "IBMCLOUD_INSTANCE_ID",
                 "hostname_short": "IBMCLOUD_LOCAL_HOSTNAME"},
    "ibmcloud-classic": {"uuid": "IBMCLOUD_CLASSIC_INSTANCE_ID",
                         "hostname_short": "IBMCLOUD_CLASSIC_LOCAL_HOSTNAME"},
    "powervs": {"uuid": "POWERVS_INSTANCE_ID", "hostname_short": "POWERVS_LOCAL_HOSTNAME"},
    "kubevirt": {"uuid": "KUBEVIRT_INSTANCE_ID", "hostname": "KUBEVIRT_HOSTNAME"},
    "proxmoxve": {"instance_id": "PROXMOXVE_INSTANCE_ID", "hostname_short": "PROXMOXVE_HOSTNAME"},
    "nocloud": {"instance_id": "NOCLOUD_INSTANCE_ID", "hostname": "NOCLOUD_HOSTNAME"},
    "nutanix": {"uuid": "NUTANIX_INSTANCE_UUID", "hostname": "NUTANIX_HOSTNAME"},
    # per-NIC addresses (ETH<n>_IP): the machine's private address is on its second NIC
    "opennebula": {"instance_id": "OPENNEBULA_INSTANCE_ID", "private": "OPENNEBULA_IPV4_1",
                   "public": "OPENNEBULA_IPV4_PUBLIC", "hostname": "OPENNEBULA_HOSTNAME"},
    "qemu": {"instance_id": "QEMU_INSTANCE_ID", "private": "QEMU_IPV4_LOCAL",
             "public": "QEMU_IPV4_PUBLIC", "hostname": "QEMU_HOSTNAME"},
    # guestinfo, read through a stand-in vmware-rpctool
    "vmware": {"instance_id": "VMWARE_INSTANCE_ID", "hostname": "VMWARE_HOSTNAME"},
}

# the LXD/Incus guest API, served on a unix socket
SOCKET_FACTS = {
    "lxd": {"instance_id": "LXD_INSTANCE_ID", "hostname": "LXD_HOSTNAME"},
    "incus": {"instance_id": "INCUS_INSTANCE_ID", "hostname": "INCUS_HOSTNAME"},
}

EXPECTED = {"instance_id": MACHINE.instance_id, "uuid": MACHINE.uuid,
            "private": MACHINE.local_ipv4, "public": MACHINE.public_ipv4,
            "hostname": MACHINE.hostname, "hostname_short": MACHINE.hostname.split(".")[0]}


def without_prefix_length(value):
    """Akamai keeps the /32 of its addresses (upstream behaviour); the address is the fact."""
    return value.split("/")[0]


def check(provider_id, provider):
    cls = type(provider)
    attributes = provider.attributes()
    for fact, name in {**HTTP_FACTS, **DRIVE_FACTS, **SOCKET_FACTS}[provider_id].items():
        assert name in attributes, f"{provider_id}: {fact} not written as {name}"
        assert without_prefix_length(attributes[name]) == EXPECTED[fact], (provider_id, fact)
    if "ssh-keys" in cls.features:
        assert set(provider.ssh_keys()) == KEYS
    if "hostname" in cls.features:
        assert provider.hostname() in (EXPECTED["hostname"], EXPECTED["hostname_short"])
    if "network-units" in cls.features:  # the machine's NICs, matched by their MACs
        interfaces, _ = provider.network()
        macs = {i.mac for i in interfaces if i.mac}
        if provider_id in PUBLIC_NIC_ONLY:
            assert macs and macs < MACS, provider_id
        else:
            assert macs == MACS, provider_id
            addresses = {a.split("/")[0] for i in interfaces for a in i.addresses}
            assert MACHINE.local_ipv4 in addresses, provider_id


def test_every_http_platform_is_in_the_contract():
    http_ids = {pid for pid in registry.BUILTIN if registry.get(pid).provider.source == "http"}
    assert http_ids - {"azurestack"} == set(HTTP_FACTS)  # azurestack has no attributes


@pytest.mark.parametrize("provider_id", sorted(HTTP_FACTS))
def test_http_platform(provider_id, monkeypatch, tmp_path):
    # cloudstack-metadata finds its server through a DHCP lease; the endpoint override then
    # sends the request to the fake server whatever the address
    leases = tmp_path / "run/systemd/netif/leases"
    leases.mkdir(parents=True)
    (leases / "2").write_text("ADDRESS=10.20.30.40\nSERVER_ADDRESS=10.20.0.1\n")
    monkeypatch.setattr(dhcp, "ROOT", str(tmp_path))
    with FakeServer(provider_id, MACHINE) as server:
        provider = registry.get(provider_id).provider(make_context(server, timeout=10))
        check(provider_id, provider)


def test_every_drive_platform_is_in_the_contract():
    drive_ids = {pid for pid in registry.BUILTIN
                 if "config drive" in registry.get(pid).provider.source
                 or registry.get(pid).provider.source == "local"}
    # vagrant-virtualbox reads the machine itself
    assert drive_ids - {"vagrant-virtualbox"} == set(DRIVE_FACTS)


@pytest.mark.parametrize("provider_id", sorted(DRIVE_FACTS))
def test_config_drive_platform(provider_id, tmp_path, monkeypatch):
    drive = tmp_path / "drive"
    write_tree(renderer_for(provider_id).drive_files(MACHINE), drive)
    if provider_id == "vmware":  # guestinfo keys as files, answered by a stand-in tool
        write_vmware_rpctool(tmp_path / "bin", drive)
        monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    context = make_context(environ={"CL_METADATA_CONFIG_DRIVE": str(drive)})
    check(provider_id, registry.get(provider_id).provider(context))


# platforms that read a config drive, else a metadata service: without the drive, the service's
# names (a machine without a drive is one that boots from the service)
DRIVE_ELSE_HTTP = {"openstack": "openstack-metadata", "cloudstack": "cloudstack-metadata"}


def test_every_drive_else_http_platform_is_checked_without_its_drive():
    assert {pid for pid in registry.BUILTIN
            if registry.get(pid).provider.source == "config drive, else http"} \
        == set(DRIVE_ELSE_HTTP)


@pytest.mark.parametrize("provider_id", sorted(DRIVE_ELSE_HTTP))
def test_drive_else_http_platform_without_its_drive(provider_id, monkeypatch, tmp_path):
    real = configdrive.find_labelled_device
    (tmp_path / "by-label").mkdir()  # no labelled drive, whatever this machine has
    monkeypatch.setattr(configdrive, "find_labelled_device", lambda labels, **kw: real(
        labels, **dict(kw, by_label_dir=str(tmp_path / "by-label"))))
    leases = tmp_path / "run/systemd/netif/leases"
    leases.mkdir(parents=True)
    (leases / "2").write_text("ADDRESS=10.20.30.40\nSERVER_ADDRESS=10.20.0.1\n")
    monkeypatch.setattr(dhcp, "ROOT", str(tmp_path))
    with FakeServer(provider_id, MACHINE) as server:
        provider = registry.get(provider_id).provider(make_context(server, timeout=10))
        attributes = provider.attributes()
        for fact, name in HTTP_FACTS[DRIVE_ELSE_HTTP[provider_id]].items():
            assert attributes.get(name) == EXPECTED[fact], (provider_id, fact)
        assert set(provider.ssh_keys()) == KEYS
        assert server.requests


def test_every_socket_platform_is_in_the_contract():
    socket_ids = {pid for pid in registry.BUILTIN
                  if registry.get(pid).provider.source == "local socket"}
    assert socket_ids == set(SOCKET_FACTS)


@pytest.mark.parametrize("provider_id", sorted(SOCKET_FACTS))
def test_socket_platform(provider_id, tmp_path):
    with UnixFakeServer(provider_id, MACHINE, socket_path=tmp_path / "sock") as server:
        context = make_context(environ={"CL_METADATA_LXD_SOCKET": server.socket_path})
        try:
            check(provider_id, registry.get(provider_id).provider(context))
        finally:
            context.close()
        assert {r["path"] for r in server.requests} >= {"/1.0/meta-data",
                                                         "/1.0/config/cloud-init.user-data"}
