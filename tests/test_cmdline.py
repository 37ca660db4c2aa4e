import pathlib
import re

import pytest

from cl_metadata import cmdline, registry
from cl_metadata.errors import UsageError


@pytest.mark.parametrize("text, expected", [
    ("root=/dev/vda ignition.platform.id=openstack quiet",
     ("ignition.platform.id", "openstack")),
    ("coreos.oem.id=ec2\n", ("coreos.oem.id", "ec2")),  # trailing newline of /proc/cmdline
    ("coreos.oem.id=ec2\tflatcar.oem.id=packet", ("flatcar.oem.id", "packet")),  # tabs split
    # the first key in priority order wins, wherever it stands on the line
    ("coreos.oem.id=gce flatcar.oem.id=azure ignition.platform.id=aws",
     ("ignition.platform.id", "aws")),
    # an empty value does not count; the first non-empty occurrence of a key does
    ("ignition.platform.id= ignition.platform.id=gcp ignition.platform.id=aws",
     ("ignition.platform.id", "gcp")),
    ('ignition.platform.id="" coreos.oem.id=digitalocean', ("coreos.oem.id", "digitalocean")),
    ('ignition.platform.id="openstack"', ("ignition.platform.id", "openstack")),
    ("ignition.platform.idx=aws ignition.platform.id", None),  # exact key only; no value
    ("", None),
])
def test_platform_id(text, expected):
    assert cmdline.platform_id(cmdline.parse(text)) == expected


def test_quoted_values_keep_spaces_and_split_at_first_equals():
    values = cmdline.parse('a="x y" b=c=d flag')
    assert values == {"a": "x y", "b": "c=d"}


def test_read_uses_override_file(tmp_path):
    path = tmp_path / "cmdline"
    path.write_text("console=ttyS0 coreos.oem.id=packet\n")
    assert cmdline.read({"CL_METADATA_CMDLINE": str(path)})["coreos.oem.id"] == "packet"


def test_read_missing_file_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="cannot read kernel command line .*nope"):
        cmdline.read({"CL_METADATA_CMDLINE": str(tmp_path / "nope")})


# --- every id a kernel command line can carry has one outcome -----------------------------------

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"

# The ids the platforms' own sources put on a kernel command line:
# Ignition's supported platforms (ignition.platform.id, Fedora CoreOS and Flatcar's Ignition),
IGNITION_IDS = {"akamai", "aliyun", "applehv", "aws", "azure", "azurestack", "brightbox",
                "cloudstack", "digitalocean", "exoscale", "gcp", "hetzner", "hyperv", "ibmcloud",
                "ionoscloud", "kubevirt", "metal", "nutanix", "openstack", "oraclecloud",
                "packet", "powervs", "proxmoxve", "qemu", "scaleway", "upcloud", "virtualbox",
                "vmware", "vultr", "zvm"}
# Flatcar's OEM images (common-oem-files: "ami" boots with ec2, "stackit" with openstack) and
# its PXE/ISO images (pxe),
FLATCAR_IDS = {"akamai", "azure", "brightbox", "cloudsigma", "cloudstack", "digitalocean", "ec2",
               "exoscale", "gce", "hetzner", "hyperv", "interoute", "kubevirt", "niftycloud",
               "nutanix", "openstack", "packet", "proxmoxve", "pxe", "qemu", "rackspace",
               "rackspace-onmetal", "scaleway", "vagrant", "virtualbox", "vmware"}
# Container Linux's OEM grub.cfg files (coreos.oem.id).
CONTAINER_LINUX_IDS = {"azure", "brightbox", "cloudsigma", "cloudstack", "digitalocean", "ec2",
                       "exoscale", "gce", "hyperv", "interoute", "niftycloud", "openstack",
                       "packet", "rackspace", "rackspace-onmetal", "vagrant", "vagrant-virtualbox",
                       "virtualbox", "vmware"}


@pytest.mark.parametrize("platform", sorted(IGNITION_IDS | FLATCAR_IDS | CONTAINER_LINUX_IDS))
def test_every_known_kernel_id_has_one_outcome(platform):
    if registry.has_no_metadata(platform):
        assert platform not in registry.BUILTIN
    else:
        assert registry.get(platform).provider.id == registry.resolve_id(platform)


def test_the_id_table_lists_no_provider_id_and_only_providers_or_none():
    assert not set(cmdline.KERNEL_IDS) & set(registry.BUILTIN)
    assert set(cmdline.OEM_ALIASES.values()) <= set(registry.BUILTIN)


def readme_outcomes():
    """The README's id → outcome table: {id: provider id, or None for no metadata service}."""
    text = README.read_text()
    section = text[text.index("### Old OEM ids on the kernel command line"):]
    section = section[:section.index("\n### ", 5)]
    outcomes = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 2 or not cells[0].startswith("`"):
            continue
        ids = re.findall(r"`([^`]+)`", cells[0])
        if cells[1].startswith("no metadata service"):
            outcome = None
        else:
            outcome = re.match(r"`([^`]+)`", cells[1]).group(1)
        for platform in ids:
            assert platform not in outcomes, f"{platform} listed twice"
            outcomes[platform] = outcome
    return outcomes


def test_readme_table_is_the_code_table():
    assert readme_outcomes() == dict(cmdline.KERNEL_IDS)
