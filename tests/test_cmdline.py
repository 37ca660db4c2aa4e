import pytest

from cl_metadata import cmdline
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
