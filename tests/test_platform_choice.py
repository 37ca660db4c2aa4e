"""How the platform is chosen, through the real process: the kernel command line's id table,
"no metadata service" ids, the image's settings file, ``--provider auto`` (DMI), and the
Flatcar and Afterburn attribute flavors. The fake server on 127.0.0.1 counts every request.
"""

from __future__ import annotations

import json
import os

import pytest

from cl_metadata import cmdline
from cl_metadata.fakeserver.drive import write_tree
from cl_metadata.fakeserver.instance import load_instance
from cl_metadata.fakeserver.render import renderer_for

from conftest import needs_root, run_agent

SAMPLE = load_instance(None)
ALICE, DEPLOY = (key.key for key in SAMPLE.ssh_keys)
EC2_NAMES = {  # the sample instance as the aws provider reads it, by stem-less name
    "AVAILABILITY_ZONE": "nova", "AVAILABILITY_ZONE_ID": "use1-az1",
    "HOSTNAME": "demo-1.example.internal", "INSTANCE_ID": "i-0a1b2c3d4e5f60718",
    "INSTANCE_TYPE": "m1.small", "IPV4_LOCAL": "10.0.1.15", "IPV4_PUBLIC": "203.0.113.25",
    "IPV6": "2001:db8:1:2::15",
    "PUBLIC_HOSTNAME": "ec2-203-0-113-25.compute-1.amazonaws.com", "REGION": "RegionOne"}


def attributes_text(prefix: str) -> str:
    return "".join(f"{prefix}{name}={value}\n" for name, value in sorted(EC2_NAMES.items()))


@pytest.fixture
def env(agent_env, tmp_path):
    """The agent's environment, with DMI and config drive pointing at nothing real."""
    agent_env["CL_METADATA_DMI_DIR"] = str(tmp_path / "no-dmi")
    agent_env["CL_METADATA_CONFIG_DRIVE"] = str(tmp_path / "no-drive")
    return agent_env


def kernel(tmp_path, text):
    (tmp_path / "cmdline").write_text(text + "\n")


# --- ids without a metadata service ------------------------------------------------------------

@pytest.mark.parametrize("key", cmdline.PLATFORM_KEYS)
@pytest.mark.parametrize("platform", sorted(cmdline.NO_METADATA_IDS))
def test_id_without_metadata_service_is_one_notice_and_nothing_else(fake_server, env, tmp_path,
                                                                   key, platform):
    server = fake_server("openstack-metadata")
    env["CL_METADATA_ENDPOINT"] = server.url
    kernel(tmp_path, f"root=/dev/vda {key}={platform}")
    attributes = tmp_path / "coreos"
    attributes.write_text("COREOS_OLD=1\n")
    result = run_agent("--cmdline", "--attributes", attributes, "--hostname", tmp_path / "h",
                       "--ssh-keys", "no-such-user-here", "--check-in", env=env)
    assert result.returncode == 0, result.stderr
    assert result.stderr == (f"cl-metadata: notice: {platform}: this platform has no metadata "
                             "service; nothing to do\n")
    assert server.requests == []  # and no drive: the override points at nothing
    assert attributes.read_text() == "COREOS_OLD=1\n"
    assert sorted(os.listdir(tmp_path)) == sorted(["cmdline", "coreos"])


def test_unknown_kernel_id_is_still_a_usage_error(env, tmp_path):
    kernel(tmp_path, "flatcar.oem.id=no-such-cloud")
    result = run_agent("--cmdline", "--attributes", tmp_path / "a", env=env)
    assert result.returncode == 2
    assert result.stderr.startswith("cl-metadata: error: unknown provider 'no-such-cloud'")
    assert len(result.stderr.splitlines()) == 1
    assert not (tmp_path / "a").exists()


# --- nutanix: the config-2 drive without its EC2 tree ------------------------------------------

def test_nutanix_reads_the_config_drive_without_an_ec2_tree(fake_server, env, tmp_path):
    server = fake_server("openstack-metadata")
    files = renderer_for("openstack").drive_files(SAMPLE)
    del files["ec2/latest/meta-data.json"]  # AHV's drive has none
    write_tree(files, tmp_path / "drive")
    meta = json.loads(files["openstack/latest/meta_data.json"])
    env.update(CL_METADATA_ENDPOINT=server.url, CL_METADATA_CONFIG_DRIVE=str(tmp_path / "drive"))
    kernel(tmp_path, "flatcar.oem.id=nutanix")
    out = tmp_path / "attrs"
    result = run_agent("--cmdline", "--attributes", out, "--hostname", tmp_path / "h", env=env)
    assert result.returncode == 0, result.stderr
    assert out.read_text() == (f"COREOS_NUTANIX_HOSTNAME={meta['hostname']}\n"
                               f"COREOS_NUTANIX_INSTANCE_UUID={meta['uuid']}\n")
    assert (tmp_path / "h").read_text() == "demo-1.example.internal\n"
    assert server.requests == []  # never the metadata service


# --- Flatcar's and Afterburn's files -----------------------------------------------------------

def test_flatcar_flavor_writes_flatcar_names_and_links_coreos(fake_server, env, tmp_path):
    server = fake_server("aws")
    env["CL_METADATA_ENDPOINT"] = server.url
    metadata = tmp_path / "run/metadata"
    metadata.mkdir(parents=True)
    (metadata / "coreos").write_text("COREOS_STALE=1\n")  # an earlier run's regular file
    kernel(tmp_path, "flatcar.oem.id=ec2")
    result = run_agent("--cmdline", "--attributes-flavor", "flatcar",
                       "--attributes", metadata / "flatcar", env=env)
    assert result.returncode == 0, result.stderr
    assert (metadata / "flatcar").read_text() == attributes_text("COREOS_EC2_")
    assert os.readlink(metadata / "coreos") == "flatcar"
    assert sorted(os.listdir(metadata)) == ["coreos", "flatcar"]  # no temp names left
    # a second run finds its own link and keeps it
    assert run_agent("--cmdline", "--attributes-flavor", "flatcar",
                     "--attributes", metadata / "flatcar", env=env).returncode == 0
    assert os.readlink(metadata / "coreos") == "flatcar"


def test_flatcar_flavor_reads_aws_with_flatcar_names(fake_server, env, tmp_path):
    server = fake_server("aws")
    env["CL_METADATA_ENDPOINT"] = server.url
    kernel(tmp_path, "ignition.platform.id=aws")
    result = run_agent("--cmdline", "--attributes-flavor=flatcar", "--attributes", "-", env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == attributes_text("COREOS_EC2_")


def test_flatcar_link_over_a_directory_fails_before_any_request(fake_server, env, tmp_path):
    server = fake_server("aws")
    env["CL_METADATA_ENDPOINT"] = server.url
    (tmp_path / "coreos").mkdir()
    (tmp_path / "flatcar").write_text("COREOS_OLD=1\n")
    result = run_agent("--provider", "ec2", "--attributes-flavor", "flatcar",
                       "--attributes", tmp_path / "flatcar", env=env)
    assert result.returncode == 1
    assert result.stderr.startswith(f"cl-metadata: error: {tmp_path / 'coreos'}: exists and is "
                                    "neither a symbolic link nor a regular file")
    assert server.requests == [] and (tmp_path / "flatcar").read_text() == "COREOS_OLD=1\n"


def test_afterburn_flavor_writes_afterburn_names_even_for_ec2(fake_server, env, tmp_path):
    server = fake_server("aws")
    env["CL_METADATA_ENDPOINT"] = server.url
    kernel(tmp_path, "coreos.oem.id=ec2")
    out = tmp_path / "afterburn"
    result = run_agent("--cmdline", "--attributes-flavor", "afterburn", "--attributes", out,
                       env=env)
    assert result.returncode == 0, result.stderr
    assert out.read_text() == attributes_text("AFTERBURN_AWS_")
    assert not (tmp_path / "coreos").exists()  # only Flatcar's flavor links


def test_flavor_and_prefix_together_are_a_usage_error(env, tmp_path):
    result = run_agent("--provider", "ec2", "--attributes-flavor", "afterburn",
                       "--attributes-prefix", "COREOS", "--attributes", tmp_path / "a", env=env)
    assert result.returncode == 2 and "--attributes-flavor" in result.stderr


# --- the image's settings file and --provider auto ---------------------------------------------

def write_settings(tmp_path, text):
    path = tmp_path / "cl-metadata.conf"
    path.write_text(text)
    return path


def dmi(env, tmp_path, **strings):
    directory = tmp_path / "dmi"
    directory.mkdir()
    for field, value in strings.items():
        (directory / field).write_text(value + "\n")
    env["CL_METADATA_DMI_DIR"] = str(directory)


def test_settings_auto_finds_aws_in_dmi(fake_server, env, tmp_path):
    server = fake_server("aws")
    env["CL_METADATA_ENDPOINT"] = server.url
    dmi(env, tmp_path, sys_vendor="Amazon EC2", product_name="t3.micro")
    settings = write_settings(tmp_path, "provider = auto\n")
    result = run_agent("--cmdline", "--settings", settings, "--attributes", "-", env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == attributes_text("COREOS_AWS_")
    assert server.requests and server.requests[0]["path"] == "/latest/api/token"


def test_kernel_command_line_wins_over_settings_and_dmi(fake_server, env, tmp_path):
    server = fake_server("aws")
    write_tree(renderer_for("openstack").drive_files(SAMPLE), tmp_path / "drive")
    env.update(CL_METADATA_ENDPOINT=server.url, CL_METADATA_CONFIG_DRIVE=str(tmp_path / "drive"))
    dmi(env, tmp_path, sys_vendor="Amazon EC2")
    kernel(tmp_path, "ignition.platform.id=openstack")
    settings = write_settings(tmp_path, "provider = auto\n")
    result = run_agent("--cmdline", "--settings", settings, "--hostname", "-", env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "demo-1.example.internal\n" and server.requests == []


@pytest.mark.parametrize("args, text, notice", [
    # a plain image whose builder wrote nothing: the units succeed, doing nothing
    (["--cmdline", "--settings", "{settings}"], None,
     "no platform: neither the kernel command line, --provider nor the settings file "
     "{settings} names one; nothing to do"),
    (["--cmdline", "--settings", "{settings}"], "provider = none\n",
     "none: this platform has no metadata service; nothing to do"),
    (["--provider", "auto"], None,
     "no platform: the firmware's DMI strings name none this agent knows; nothing to do"),
])
def test_no_platform_anywhere_is_a_notice(fake_server, env, tmp_path, args, text, notice):
    server = fake_server("aws")
    env["CL_METADATA_ENDPOINT"] = server.url
    dmi(env, tmp_path, sys_vendor="QEMU", product_name="Standard PC (Q35 + ICH9, 2009)")
    settings = tmp_path / "cl-metadata.conf"
    if text is not None:
        settings.write_text(text)
    args = [a.format(settings=settings) for a in args]
    result = run_agent(*args, "--ssh-keys-default", "--attributes", tmp_path / "a", env=env)
    assert result.returncode == 0, result.stderr
    assert result.stderr == "cl-metadata: notice: " + notice.format(settings=settings) + "\n"
    assert server.requests == [] and not (tmp_path / "a").exists()


def test_without_settings_cmdline_still_needs_a_platform(env, tmp_path):
    result = run_agent("--cmdline", "--attributes", tmp_path / "a", env=env)
    assert result.returncode == 2 and "no platform id on the kernel command line" in result.stderr


def test_malformed_settings_stop_the_run_before_any_request(fake_server, env, tmp_path):
    server = fake_server("aws")
    env["CL_METADATA_ENDPOINT"] = server.url
    kernel(tmp_path, "ignition.platform.id=aws")  # even with a platform named
    settings = write_settings(tmp_path, "provider = auto\nssh-users debian\n")
    result = run_agent("--cmdline", "--settings", settings, "--attributes", tmp_path / "a",
                       env=env)
    assert result.returncode == 2
    assert result.stderr == (f"cl-metadata: error: settings {settings} line 2: not a "
                             "'key = value' line\n")
    assert server.requests == [] and not (tmp_path / "a").exists()


@needs_root
def test_ssh_keys_default_writes_the_settings_users_keys(fake_server, env, tmp_path,
                                                        throwaway_user):
    server = fake_server("aws")
    env["CL_METADATA_ENDPOINT"] = server.url
    dmi(env, tmp_path, sys_vendor="Amazon EC2")
    settings = write_settings(tmp_path, f"provider = auto\nssh-users = {throwaway_user.pw_name}\n")
    result = run_agent("--cmdline", "--settings", settings, "--ssh-keys-default", env=env)
    assert result.returncode == 0, result.stderr
    fragment = os.path.join(throwaway_user.pw_dir, ".ssh/authorized_keys.d/cl-metadata")
    with open(fragment) as f:
        assert f.read() == f"{ALICE}\n{DEPLOY}\n"


# --- the units' own command lines ---------------------------------------------------------------

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def unit_command(name, variables, paths):
    """The unit's ExecStart= words after systemd's expansion (unset $VARs vanish), with the
    absolute paths in ``paths`` moved into the test's directory."""
    with open(os.path.join(REPO, "units", name)) as f:
        line = next(l for l in f if l.startswith("ExecStart="))
    words = []
    for word in line[len("ExecStart="):].split()[1:]:
        expanded = variables.get(word.strip("${}"), "").split() if word.startswith("$") else [word]
        for old, new in paths.items():
            expanded = [w.replace(old, str(new)) for w in expanded]
        words += expanded
    return words


def test_afterburn_unit_writes_afterburns_names(fake_server, env, tmp_path):
    server = fake_server("aws")
    env["CL_METADATA_ENDPOINT"] = server.url
    kernel(tmp_path, "ignition.platform.id=aws")  # Fedora CoreOS on EC2
    (tmp_path / "run/metadata").mkdir(parents=True)
    argv = unit_command("afterburn.service", {"CL_METADATA_OPT_PROVIDER": "--cmdline"},
                        {"/run/metadata": tmp_path / "run/metadata",
                         "/etc/cl-metadata": tmp_path / "etc"})
    result = run_agent(*argv, env=env)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "run/metadata/afterburn").read_text() == attributes_text("AFTERBURN_AWS_")
    assert os.listdir(tmp_path / "run/metadata") == ["afterburn"]


def test_flatcar_drop_in_on_the_attributes_unit(fake_server, env, tmp_path):
    server = fake_server("aws")
    env["CL_METADATA_ENDPOINT"] = server.url
    kernel(tmp_path, "flatcar.oem.id=ec2")
    (tmp_path / "run/metadata").mkdir(parents=True)
    drop_in = {"CL_METADATA_OPT_PROVIDER": "--cmdline",  # as README's 10-flatcar.conf sets it
               "CL_METADATA_OPT_ATTRIBUTES": "--attributes-flavor=flatcar "
                                             "--attributes=/run/metadata/flatcar"}
    argv = unit_command("cl-metadata.service", drop_in,
                        {"/run/metadata": tmp_path / "run/metadata",
                         "/etc/cl-metadata": tmp_path / "etc"})
    result = run_agent(*argv, env=env)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "run/metadata/flatcar").read_text() == attributes_text("COREOS_EC2_")
    assert os.readlink(tmp_path / "run/metadata/coreos") == "flatcar"
