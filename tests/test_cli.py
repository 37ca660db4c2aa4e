"""Command-line parsing, provider selection and exit codes (no platform is contacted)."""

import pytest

from cl_metadata import cli, registry
from cl_metadata.errors import UsageError


@pytest.mark.parametrize("argv, expected", [
    (["-provider=ec2", "-attributes=/run/x"], ["--provider=ec2", "--attributes=/run/x"]),
    (["-cmdline", "-ssh-keys", "core"], ["--cmdline", "--ssh-keys", "core"]),
    (["multi", "--cmdline", "--check-in"], ["--cmdline", "--check-in"]),
    (["-v", "-vv", "-V"], ["-v", "-vv", "-V"]),
    (["-version"], ["--version"]),
])
def test_legacy_spellings(argv, expected):
    assert cli.normalize_argv(argv) == expected


def parse(*argv):
    return cli.build_parser().parse_args(cli.normalize_argv(argv))


def test_flags_parse():
    args = parse("-provider=openstack", "--attributes", "/run/metadata/coreos", "-ssh-keys",
                 "core", "--ssh-keys=alice", "--hostname", "/h", "--network-units", "/n",
                 "--check-in", "--attributes-prefix", "afterburn")
    assert (args.provider, args.attributes, args.ssh_keys, args.hostname, args.network_units,
            args.check_in, args.attributes_prefix) == (
        "openstack", "/run/metadata/coreos", ["core", "alice"], "/h", "/n", True, "AFTERBURN")


def test_output_is_the_old_name_of_attributes():
    assert parse("--provider", "ec2", "--output=/run/metadata/coreos").attributes == \
        "/run/metadata/coreos"


def test_bad_prefix_is_a_usage_error():
    with pytest.raises(UsageError, match="attributes-prefix"):
        parse("--provider", "ec2", "--attributes-prefix", "FLATCAR")


@pytest.mark.parametrize("argv, kernel, expected", [
    (["--provider", "openstack"], None, "openstack"),
    (["--cmdline"], {"coreos.oem.id": "ec2"}, "ec2"),
    # both given: the kernel command line wins, --provider is the fallback
    (["--cmdline", "--provider", "gcp"], {"ignition.platform.id": "aws"}, "aws"),
    (["--cmdline", "--provider", "gcp"], {}, "gcp"),
])
def test_select_provider(argv, kernel, expected):
    assert cli.select_provider(parse(*argv), {}, kernel) == expected


def test_cmdline_without_platform_id_is_a_usage_error():
    with pytest.raises(UsageError, match="no platform id on the kernel command line"):
        cli.select_provider(parse("--cmdline"), {}, {"root": "/dev/vda"})


def test_unknown_provider_lists_the_known_ones():
    with pytest.raises(UsageError) as info:
        registry.get("no-such-cloud")
    assert info.value.exit_code == 2
    assert "unknown provider 'no-such-cloud'" in str(info.value)
    assert "openstack-metadata" in str(info.value)


def test_oem_alias_resolves_only_ids_without_a_provider_of_their_own():
    assert registry.resolve_id("rackspace") == "openstack"
    assert registry.resolve_id("brightbox") == "openstack-metadata"
    assert registry.resolve_id("openstack") == "openstack"


@pytest.mark.parametrize("argv, code, message", [
    ([], 2, "set --provider ID or --cmdline"),
    (["--bogus"], 2, "unrecognized arguments: --bogus"),
    (["--provider", "nope", "--attributes", "/tmp/x"], 2, "unknown provider 'nope'"),
    (["--provider", "openstack", "--timeout", "0", "--attributes", "/tmp/x"], 2, "timeout"),
])
def test_usage_errors_exit_2_with_one_line(argv, code, message, capsys):
    assert cli.main(argv, environ={}) == code
    err = capsys.readouterr().err
    assert message in err
    assert len(err.strip().splitlines()) == 1


def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["--version"], environ={})
    assert info.value.code == 0
    from cl_metadata import __version__
    assert capsys.readouterr().out == f"cl-metadata {__version__}\n"


def test_providers_lists_ids_sources_and_features(capsys):
    assert cli.main(["providers"], environ={}) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert "openstack" in lines and "openstack-metadata" in lines
    assert "config drive, else http" in lines["openstack"]
    assert "attributes hostname ssh-keys" in lines["openstack-metadata"]


def test_no_output_requested_does_nothing(capsys):
    assert cli.main(["--provider", "openstack-metadata"], environ={}) == 0
    assert "nothing to do" in capsys.readouterr().err


def test_bad_timeout_environment(capsys):
    assert cli.main(["--provider", "openstack-metadata", "--attributes", "/tmp/x"],
                    environ={"CL_METADATA_TIMEOUT": "soon"}) == 2
    assert "CL_METADATA_TIMEOUT" in capsys.readouterr().err
