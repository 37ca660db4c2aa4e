"""Command-line parsing, provider selection and exit codes (no platform is contacted)."""

import os

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
    assert "attributes hostname network-units ssh-keys" in lines["openstack-metadata"]


def test_no_output_requested_does_nothing(capsys):
    assert cli.main(["--provider", "openstack-metadata"], environ={}) == 0
    assert "nothing to do" in capsys.readouterr().err


def test_bad_timeout_environment(capsys):
    assert cli.main(["--provider", "openstack-metadata", "--attributes", "/tmp/x"],
                    environ={"CL_METADATA_TIMEOUT": "soon"}) == 2
    assert "CL_METADATA_TIMEOUT" in capsys.readouterr().err


# --- a flag that takes one value may be given once --------------------------------------------

# Never a real platform: should a repeat slip through, the run meets a dead loopback port.
SAFE_ENV = {"CL_METADATA_ENDPOINT": "http://127.0.0.1:9", "CL_METADATA_TIMEOUT": "1"}
PROVIDER = ["--provider", "openstack-metadata"]


@pytest.mark.parametrize("argv, flag", [
    (["--provider", "aws", "--provider", "gcp"], "--provider"),
    (["--provider", "aws", "--provider", "aws"], "--provider"),  # even the same value
    (["-provider=aws", "-provider=gcp"], "--provider"),
    (["-provider", "aws", "--provider=gcp"], "--provider"),
    (PROVIDER + ["--attributes", "/tmp/a", "--attributes", "/tmp/b"], "--attributes/--output"),
    (PROVIDER + ["--attributes", "/tmp/a", "--output", "/tmp/b"], "--attributes/--output"),
    (PROVIDER + ["-output=/tmp/a", "-attributes=/tmp/b"], "--attributes/--output"),
    (PROVIDER + ["--attributes=/tmp/a", "--attributes-prefix", "COREOS",
                 "--attributes-prefix", "AFTERBURN"], "--attributes-prefix"),
    (PROVIDER + ["--hostname", "/tmp/h1", "-hostname=/tmp/h2"], "--hostname"),
    (PROVIDER + ["--network-units", "/tmp/n1", "--network-units", "/tmp/n2"],
     "--network-units"),
    (PROVIDER + ["--check-in", "--timeout", "5", "-timeout=9"], "--timeout"),
])
def test_a_single_value_flag_given_twice_is_a_usage_error(argv, flag, capsys):
    assert cli.main(argv, environ=SAFE_ENV) == 2
    assert capsys.readouterr().err == (
        f"cl-metadata: error: argument {flag}: given more than once; it takes one value "
        "(see --help)\n")


def test_ssh_keys_and_switches_may_repeat():
    args = parse("--cmdline", "--cmdline", "--provider", "aws", "--ssh-keys", "core",
                 "-ssh-keys=alice", "--check-in", "--check-in", "-v", "-v")
    assert (args.cmdline, args.provider, args.ssh_keys, args.check_in, args.verbose) == (
        True, "aws", ["core", "alice"], True, 2)


# --- how much reaches stderr ------------------------------------------------------------------

def emit_every_level(verbosity, stream, environ):
    from cl_metadata import log as agent_log

    agent_log.setup(verbosity, stream=stream, environ=environ)
    agent_log.log.debug("step")
    agent_log.log.info("source")
    agent_log.event("attributes-written", "milestone", path="/run/metadata/coreos")
    agent_log.log.warning("dropped")
    agent_log.log.error("failed")


@pytest.mark.parametrize("verbosity, to_journal, expected", [
    # a terminal (or pipe, file): warnings and errors only
    (0, False, "cl-metadata: warning: dropped\ncl-metadata: error: failed\n"),
    # the journal: the sources and milestones too
    (0, True, "<6>source\n<6>milestone\n<4>dropped\n<3>failed\n"),
    # -v: every step, anywhere
    (1, False, "cl-metadata: debug: step\ncl-metadata: source\ncl-metadata: milestone\n"
               "cl-metadata: warning: dropped\ncl-metadata: error: failed\n"),
    (1, True, "<7>step\n<6>source\n<6>milestone\n<4>dropped\n<3>failed\n"),
])
def test_default_verbosity_depends_on_where_stderr_goes(verbosity, to_journal, expected,
                                                         tmp_path, monkeypatch):
    from cl_metadata import journal

    monkeypatch.setattr(journal, "native_journal", lambda: None)  # the <N> lines, not journald
    with open(tmp_path / "stderr", "w") as stream:
        st = os.fstat(stream.fileno())
        environ = {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"} if to_journal else {}
        emit_every_level(verbosity, stream, environ)
    assert (tmp_path / "stderr").read_text() == expected


# --- the settings file as the last fallback ------------------------------------------------------

@pytest.mark.parametrize("argv, kernel, settings_provider, expected", [
    # the settings file's provider serves only when nothing else names a platform
    (["--cmdline", "--settings", "/s"], {}, "auto", "auto"),
    (["--cmdline", "--settings", "/s"], {"flatcar.oem.id": "ec2"}, "auto", "ec2"),
    (["--cmdline", "--settings", "/s", "--provider", "gcp"], {}, "auto", "gcp"),
    # with --settings, nothing named anywhere is "no platform", not a usage error
    (["--cmdline", "--settings", "/s"], {}, None, None),
    (["--settings", "/s"], None, "openstack", "openstack"),
])
def test_select_provider_with_settings(argv, kernel, settings_provider, expected):
    from cl_metadata.settings import Settings

    chosen = cli.select_provider(parse(*argv), {}, kernel, Settings(provider=settings_provider))
    assert chosen == expected


def test_new_flags_parse():
    args = parse("--provider", "auto", "--settings", "/etc/x.conf", "--ssh-keys-default",
                 "--attributes-flavor", "flatcar", "--attributes", "/run/metadata/flatcar")
    assert (args.provider, args.settings, args.ssh_keys_default, args.attributes_flavor) == (
        "auto", "/etc/x.conf", True, "flatcar")
    with pytest.raises(UsageError, match="attributes-flavor"):
        parse("--provider", "ec2", "--attributes-flavor", "fedora")
    with pytest.raises(UsageError, match="more than once"):
        parse("--settings", "/a", "--settings", "/b")
