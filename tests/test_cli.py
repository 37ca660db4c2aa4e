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
    (PROVIDER + ["--user-data", "/tmp/u1", "-user-data=/tmp/u2"], "--user-data"),
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


# --- the providers and help commands, the usage text -------------------------------------------

def test_providers_json_is_every_entry_with_its_source_features_and_origin(capsys):
    import json

    assert cli.main(["providers", "--json"], environ={}) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed == [{"id": e.id, "source": e.provider.source,
                       "features": sorted(e.provider.features), "origin": e.origin}
                      for e in registry.all_entries()]
    by_id = {entry["id"]: entry for entry in listed}
    assert by_id["openstack-metadata"] == {
        "id": "openstack-metadata", "source": "http", "origin": "built-in",
        "features": ["attributes", "hostname", "network-units", "ssh-keys", "user-data"]}
    assert by_id["openstack"]["source"] == "config drive, else http"


@pytest.mark.parametrize("argv", [["providers", "--bogus"], ["providers", "extra"],
                                  ["providers", "--json", "--json=yes"]])
def test_providers_rejects_other_arguments_as_a_usage_error(argv, capsys):
    assert cli.main(argv, environ={}) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("cl-metadata: error: ") and captured.err.count("\n") == 1


def test_providers_help_describes_json(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["providers", "--help"], environ={})
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: cl-metadata providers [-h] [--json]\n")
    assert "--json" in out.split("options:", 1)[1]


def test_help_command_prints_the_help_of_dash_dash_help(capsys):
    assert cli.main(["help"], environ={}) == 0
    assert capsys.readouterr().out == cli.build_parser().format_help()
    assert cli.main(["help", "providers"], environ={}) == 0
    assert capsys.readouterr().out == cli.build_providers_parser().format_help()
    assert cli.main(["help", "nonsense"], environ={}) == 2
    assert "no such command 'nonsense'" in capsys.readouterr().err


def test_usage_and_help_list_the_commands_and_exit_statuses():
    text = cli.build_parser().format_help()
    usage = text.split("\n\n", 1)[0]
    assert usage.splitlines() == [
        "usage: cl-metadata [multi] (--provider ID|auto | --cmdline) [OPTIONS]",
        "       cl-metadata providers [--json]",
        "       cl-metadata help | --help | --version"]
    assert "\n  providers [--json]  " in text and "\n  help  " in text
    statuses = text.split("exit status:\n", 1)[1]
    assert [line.split()[0] for line in statuses.splitlines() if line[:3].strip().isdigit()] == [
        "0", "1", "2"]


def test_usage_error_message_points_to_help(capsys):
    assert cli.main(["--provider"], environ={}) == 2
    err = capsys.readouterr().err
    assert err == "cl-metadata: error: argument --provider: expected one argument (see --help)\n"


def test_drive_wait_is_reported_to_the_hundredth_of_a_second(tmp_path):
    # the wait is what was left of the run's deadline, an arbitrary float
    from cl_metadata.sources import configdrive
    from cl_metadata.errors import ConfigDriveNotFound

    now = [100.0]

    def sleep(seconds):
        now[0] += seconds

    with pytest.raises(ConfigDriveNotFound) as err:
        configdrive.find_labelled_device(["config-2"], by_label_dir=str(tmp_path),
                                         wait=2.9849123, sleep=sleep, clock=lambda: now[0])
    assert err.value.cause == "no drive labelled config-2 (waited 2.98 s)"
