"""The ``cl-metadata`` command line, compatible with coreos-metadata and Afterburn.

Accepts Go-style single-dash long flags (``-provider=ec2``, ``-cmdline``, ``-ssh-keys core``)
and Afterburn's ``multi`` sub-command word. Exit status: 0 success (a platform without a
metadata service, or none named with ``--settings``, is a success that does nothing), 1 the
platform could not be read or an output could not be written, 2 usage error or unknown provider.

The platform: the kernel command line (``--cmdline``), else ``--provider``, else the settings
file's (``--settings``); ``auto`` means the one the firmware's DMI strings name.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import signal
import sys
from typing import List, Mapping, Optional, Sequence

from cl_metadata import __version__
from cl_metadata import log as agent_log
from cl_metadata.errors import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, CLMetadataError, UsageError

log = logging.getLogger("cl_metadata")

TIMEOUT_ENV = "CL_METADATA_TIMEOUT"
AUTO = "auto"  # --provider auto: the platform the firmware's DMI strings name


class Terminated(BaseException):
    """SIGTERM arrived: unwind so temp files are removed and drives unmounted."""


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    # The description and epilog keep their line breaks (the exit status table); option
    # help is wrapped. A fixed width: argparse would otherwise import shutil (and bz2,
    # lzma…) on every add_argument to ask the terminal, a cost every boot pays for help it
    # never prints.
    def __init__(self, prog, width=None, **kwargs):
        columns = os.environ.get("COLUMNS", "")
        width = int(columns) - 2 if columns.isdigit() and int(columns) > 40 else 78
        super().__init__(prog, width=width, **kwargs)


class Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line and exit 2, like every other usage error
        raise UsageError(f"{message} (see --help)")


class Once(argparse.Action):
    """Store a flag's one value; a second occurrence is a usage error.

    argparse's default is "the last one wins", so ``--provider aws --provider gcp`` would
    silently ask gcp. Spellings sharing a destination (``--attributes`` and ``--output``) count
    as one flag.
    """

    def __call__(self, parser, namespace, values, option_string=None):
        given = namespace.__dict__.setdefault("_given_once", set())
        if self.dest in given:
            raise argparse.ArgumentError(self, "given more than once; it takes one value")
        given.add(self.dest)
        setattr(namespace, self.dest, values)


def command_parser(prog: str, **kwargs) -> Parser:
    """The parser of a subcommand (``query``, ``watch``, ``rd-network-kargs``): one-line usage
    errors and the fixed-width help, as the main command's."""
    return Parser(prog=prog, formatter_class=HelpFormatter, **kwargs)


def add_platform_arguments(parser: argparse.ArgumentParser, *,
                           settings_help: str = "the image's settings file: its provider is "
                                                "the last fallback") -> None:
    """``--provider``, ``--cmdline`` and ``--settings``: how every command that reads a
    platform is told which (``resolve_platform`` reads them)."""
    parser.add_argument("--provider", metavar="ID", action=Once,
                        help="the platform id (see 'providers'), or 'auto' (DMI)")
    parser.add_argument("--cmdline", action="store_true",
                        help="read the platform id from the kernel command line; --provider "
                             "then only serves as the fallback")
    parser.add_argument("--settings", metavar="FILE", action=Once, help=settings_help)


def add_deadline_arguments(parser: argparse.ArgumentParser, *,
                           deadline_of: str = "the whole run") -> None:
    """``--timeout`` and ``-v``, as every command that asks a platform takes them."""
    parser.add_argument("--timeout", metavar="SECONDS", action=Once, type=float, default=None,
                        help=f"deadline for {deadline_of} (default ${TIMEOUT_ENV} or 60)")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="also log the steps and requests (never bodies)")


USAGE = """cl-metadata [multi] (--provider ID|auto | --cmdline) [OPTIONS]
       cl-metadata providers [--json]
       cl-metadata help | --help | --version"""

# The statuses of errors.py, as --help and the manual page state them.
EXIT_STATUS_HELP = f"""exit status:
  {EXIT_OK}  success (also: no metadata service, or no platform named with --settings)
  {EXIT_FAILURE}  the platform could not be read, its metadata is invalid, or an output
     could not be written
  {EXIT_USAGE}  usage error: bad or repeated flags, unknown provider, no platform id on the
     kernel command line, a bad override or settings file"""


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="cl-metadata", usage=USAGE, formatter_class=HelpFormatter,
        description="Fetch this machine's metadata from its cloud platform and write the\n"
                    "attributes file, SSH keys, hostname and network configuration.",
        epilog="commands:\n"
               "  providers [--json]  list the platform ids, their sources and features\n"
               "  query [--json]      print what the platform says, writing nothing\n"
               "  watch               keep the SSH keys in step with the platform while the\n"
               "                      machine runs ('help watch')\n"
               "  help                this help\n\n"
               + EXIT_STATUS_HELP + "\n\n"
               "environment: CL_METADATA_ENDPOINT, CL_METADATA_ENDPOINT6, CL_METADATA_CONFIG_DRIVE,\n"
               "  CL_METADATA_CMDLINE, CL_METADATA_DMI_DIR, CL_METADATA_TIMEOUT, CL_METADATA_CONCURRENCY,\n"
               "  CL_METADATA_LXD_SOCKET (see cl-metadata(1))")
    # Flags with one value use Once: repeating them is an error. --ssh-keys is repeatable.
    parser.add_argument("--provider", metavar="ID", action=Once,
                        help="the platform id (see 'providers'), or 'auto': the platform the "
                             "firmware's DMI strings name")
    parser.add_argument("--cmdline", action="store_true",
                        help="read the platform id from the kernel command line "
                             "(ignition.platform.id, flatcar.oem.id, coreos.oem.id); "
                             "--provider then only serves as the fallback")
    parser.add_argument("--attributes", "--output", metavar="FILE", action=Once,
                        dest="attributes",
                        help="write the attributes (EnvironmentFile= format) to FILE")
    parser.add_argument("--attributes-prefix", metavar="COREOS|AFTERBURN", action=Once,
                        default="COREOS", type=str.upper, choices=("COREOS", "AFTERBURN"),
                        help="prefix of attribute names (default COREOS)")
    parser.add_argument("--attributes-flavor", metavar="coreos|flatcar|afterburn", action=Once,
                        choices=("coreos", "flatcar", "afterburn"),
                        help="names and layout of the attributes file: Container Linux's "
                             "(default), Flatcar's (also links 'coreos' to it) or Afterburn's")
    parser.add_argument("--settings", metavar="FILE", action=Once,
                        help="the image's settings file (the units pass "
                             "/etc/cl-metadata/cl-metadata.conf; missing = none): its provider "
                             "is the last fallback, and with no platform named anywhere the "
                             "run succeeds doing nothing")
    parser.add_argument("--ssh-keys", metavar="USER", action="append", default=[],
                        dest="ssh_keys", help="write USER's key fragment "
                        "~USER/.ssh/authorized_keys.d/cl-metadata (repeatable)")
    parser.add_argument("--ssh-keys-default", action="store_true",
                        help="write the key fragment of the settings file's ssh-users "
                             "(default: core)")
    parser.add_argument("--ssh-keys-once", action="store_true",
                        help="first-boot-only keys: leave a user whose key fragment exists "
                             "alone (never rewritten nor removed)")
    parser.add_argument("--ssh-keys-per-user", action="store_true",
                        help="gcp/gce: write each key only to the user its 'user:' prefix "
                             "names, among the users asked for (never root); also the "
                             "settings file's ssh-keys-per-user")
    parser.add_argument("--hostname", metavar="FILE", action=Once,
                        help="write the hostname to FILE")
    parser.add_argument("--network-units", metavar="DIR", action=Once,
                        help="write systemd-networkd units to DIR")
    parser.add_argument("--netplan-config", metavar="DIR", action=Once,
                        help="write a netplan document to DIR")
    parser.add_argument("--networkmanager-profiles", metavar="DIR", action=Once,
                        help="write NetworkManager keyfiles to DIR")
    parser.add_argument("--instance-data", metavar="FILE", action=Once,
                        help="write everything the platform says as one JSON document "
                             "(no keys, no user-data; see 'query'); fetches every part")
    parser.add_argument("--user-data", metavar="FILE", action=Once,
                        help="write the user-data the platform holds to FILE (mode 0600, gzip "
                             "inflated); none: FILE is removed")
    parser.add_argument("--check-in", action="store_true",
                        help="report a successful boot to the platform, where it wants that")
    parser.add_argument("--local-only", action="store_true",
                        help="read only sources on this machine (config drives, firmware "
                             "entries, guestinfo): for a unit that runs before the network; a "
                             "platform read over the network is left to a later run")
    parser.add_argument("--timeout", metavar="SECONDS", action=Once, type=float, default=None,
                        help=f"deadline for the whole run (default ${TIMEOUT_ENV} or 60)")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="also log the steps and requests (never bodies)")
    parser.add_argument("-V", "--version", action="version", version=f"cl-metadata {__version__}")
    parser.add_argument("--legacy-cli", action="store_true", help=argparse.SUPPRESS)
    return parser


def normalize_argv(argv: Sequence[str]) -> List[str]:
    """Accept the historical spellings: ``multi`` first, single-dash long flags."""
    args = list(argv)
    if args and args[0] == "multi":
        args = args[1:]
    normalized = []
    for arg in args:
        if re.match(r"^-[A-Za-z][A-Za-z-]+(=.*)?$", arg) and not re.match(r"^-v+$", arg):
            arg = "-" + arg
        normalized.append(arg)
    return normalized


def timeout_seconds(value: Optional[float], environ: Mapping[str, str]) -> float:
    """The run's deadline in seconds: ``--timeout``, else ``$CL_METADATA_TIMEOUT``, else 60."""
    from cl_metadata.sources.deadline import DEFAULT_TIMEOUT

    if value is None:
        raw = environ.get(TIMEOUT_ENV)
        try:
            value = float(raw) if raw else DEFAULT_TIMEOUT
        except ValueError:
            raise UsageError(f"{TIMEOUT_ENV}={raw!r} is not a number of seconds") from None
    if not 0 < value <= 3600:
        raise UsageError(f"timeout must be between 0 and 3600 seconds, not {value:g}")
    return value


def select_provider(args, environ: Mapping[str, str], kernel: Optional[Mapping[str, str]],
                    settings=None) -> Optional[str]:
    """The kernel command line (with --cmdline) wins over --provider, which wins over the
    settings file's provider (with --settings).

    None means no platform is named anywhere; that is only an answer with --settings (the
    units: a plain image that names no platform boots cleanly). Without it, a usage error.
    """
    from cl_metadata import cmdline

    if args.cmdline:
        found = cmdline.platform_id(kernel or {})
        if found:
            key, provider_id = found
            log.debug("platform %s from the kernel command line (%s)", provider_id, key)
            return provider_id
    if args.provider:
        if args.cmdline:
            log.debug("no platform id on the kernel command line; using --provider %s",
                      args.provider)
        return args.provider
    if args.settings:
        provider_id = settings.provider if settings is not None else None
        log.debug("platform %s from the settings file %s", provider_id or "(none)",
                  args.settings)
        return provider_id
    if args.cmdline:
        raise UsageError("no platform id on the kernel command line (looked for "
                         + ", ".join(cmdline.PLATFORM_KEYS) + ")")
    raise UsageError("set --provider ID or --cmdline")


def build_providers_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="cl-metadata providers", formatter_class=HelpFormatter,
                     description="List every platform id this agent knows, where it reads\n"
                                 "the metadata from and which outputs it supports.")
    parser.add_argument("--json", action="store_true",
                        help="one JSON array of objects: id, source, features (a list), "
                             "origin ('built-in' or the plugin's distribution)")
    return parser


def build_rd_network_kargs_parser() -> argparse.ArgumentParser:
    """``rd-network-kargs`` (Afterburn's ``exp rd-network-kargs``): dracut network arguments."""
    from cl_metadata.network import kargs

    parser = command_parser("cl-metadata rd-network-kargs",
                     description="Write dracut network kernel arguments (ip=, ifname=, bond=,\n"
                                 "vlan=, bridge=, rd.route=, nameserver=) for the interfaces the\n"
                                 "platform describes, for the initrd; nothing when the kernel\n"
                                 "command line has ip= already. Reads only sources on this\n"
                                 "machine (config drives, guestinfo). Writes\n"
                                 f"  {kargs.KARGS_PATH}\n"
                                 "unless --kargs-file names another file.",
                     epilog=EXIT_STATUS_HELP)
    add_platform_arguments(parser)
    parser.add_argument("--default-value", metavar="ARGS", action=Once,
                        help="the arguments written when the platform describes no "
                             "interfaces (default: none, nothing written)")
    parser.add_argument("--kargs-file", metavar="FILE", action=Once, default=kargs.KARGS_PATH,
                        help="where to write them (default: the file above)")
    add_deadline_arguments(parser)
    return parser


def list_providers(out=None, as_json: bool = False) -> int:
    from cl_metadata import registry

    out = out or sys.stdout
    if as_json:
        import json

        entries = [{"id": e.id, "source": e.provider.source,
                    "features": sorted(e.provider.features), "origin": e.origin}
                   for e in registry.all_entries()]
        out.write(json.dumps(entries, indent=2) + "\n")
        return EXIT_OK
    rows = [(e.id, e.provider.source, " ".join(sorted(e.provider.features)),
             "" if e.origin == "built-in" else f"(plugin: {e.origin})")
            for e in registry.all_entries()]
    width = max(len(r[0]) for r in rows)
    source_width = max(len(r[1]) for r in rows)
    for pid, source, features, origin in rows:
        out.write(f"{pid:<{width}}  {source:<{source_width}}  {features} {origin}".rstrip() + "\n")
    return EXIT_OK


def _on_sigterm(signum, frame):
    raise Terminated()


def main(argv: Optional[Sequence[str]] = None, environ: Mapping[str, str] = os.environ) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    signal.signal(signal.SIGTERM, _on_sigterm)
    agent_log.setup(0)  # usage errors are logged like every other error
    try:
        if argv[:1] == ["providers"]:
            return list_providers(as_json=build_providers_parser().parse_args(argv[1:]).json)
        if argv[:1] == ["query"]:
            from cl_metadata import query

            return query.main(argv[1:], environ)
        if argv[:1] == ["watch"]:  # the long-running mode (cl-metadata-watch.service)
            from cl_metadata.watch import command as watch

            return watch.main(argv[1:], environ)
        if argv[:1] == ["rd-network-kargs"] or argv[:2] == ["exp", "rd-network-kargs"]:
            from cl_metadata.network import kargs  # Afterburn spells it "exp rd-network-kargs"

            args = build_rd_network_kargs_parser().parse_args(
                normalize_argv(argv[argv.index("rd-network-kargs") + 1:]))
            if args.verbose:
                agent_log.setup(args.verbose)
            return kargs.run(args, environ)
        if argv[:1] == ["help"]:  # the same as --help; "help providers" for the subcommand
            if argv[1:] == ["providers"]:
                build_providers_parser().print_help()
            elif argv[1:] == ["rd-network-kargs"]:
                build_rd_network_kargs_parser().print_help()
            elif argv[1:] == ["query"]:
                from cl_metadata import query

                query.build_parser().print_help()
            elif argv[1:] == ["watch"]:
                from cl_metadata.watch import command as watch

                watch.build_parser().print_help()
            elif argv[1:]:
                raise UsageError(f"help: no such command {argv[1]!r} "
                                 "(commands: providers, query, watch, rd-network-kargs, help)")
            else:
                build_parser().print_help()
            return EXIT_OK
        args = build_parser().parse_args(normalize_argv(argv))
        if args.verbose:
            agent_log.setup(args.verbose)
        return _run(args, environ)
    except CLMetadataError as err:
        log.error("%s", err)
        return err.exit_code
    except Terminated:
        log.error("terminated by SIGTERM; outputs left as they were")
        return EXIT_FAILURE
    except KeyboardInterrupt:
        log.error("interrupted; outputs left as they were")
        return EXIT_FAILURE


def resolve_platform(args, environ: Mapping[str, str]):
    """The platform id a run (or ``query``) reads, the image settings and the kernel command
    line: ``select_provider``, then ``auto`` read from DMI. The id is None when there is nothing
    to read (no platform named, or one without a metadata service); a notice then says why.
    Uses ``args.settings``, ``args.cmdline`` and ``args.provider``."""
    from cl_metadata import cmdline, registry, settings as image_settings

    settings = image_settings.load(args.settings) if args.settings else image_settings.Settings()
    kernel = None
    if args.cmdline:
        try:
            kernel = cmdline.read(environ)
        except UsageError:
            if not args.provider:
                raise
            log.warning("kernel command line unreadable; using --provider %s", args.provider)
    provider_id = select_provider(args, environ, kernel, settings)
    if provider_id == AUTO:
        from cl_metadata import dmi

        provider_id = dmi.identify(environ)
        if provider_id is None:
            agent_log.notice("no platform: the firmware's DMI strings name none this agent "
                             "knows; nothing to do")
            return None, settings, kernel
    if provider_id is None:
        agent_log.notice("no platform: neither the kernel command line, --provider nor the "
                         "settings file %s names one; nothing to do", args.settings)
        return None, settings, kernel
    if registry.has_no_metadata(provider_id):
        agent_log.notice("%s: this platform has no metadata service; nothing to do",
                         provider_id)
        return None, settings, kernel
    return provider_id, settings, kernel


def _run(args, environ: Mapping[str, str]) -> int:
    from cl_metadata import pipeline
    from cl_metadata.outputs import flavors
    from cl_metadata.context import Context
    from cl_metadata.sources.deadline import Deadline

    deadline = Deadline(timeout_seconds(args.timeout, environ))
    if args.attributes_flavor and "attributes_prefix" in getattr(args, "_given_once", ()):
        raise UsageError("--attributes-flavor sets the prefix; give one of it and "
                         "--attributes-prefix, not both")
    flavor = flavors.get(args.attributes_flavor or "coreos")
    provider_id, settings, kernel = resolve_platform(args, environ)
    if provider_id is None:  # nothing to do; a notice said why
        return EXIT_OK
    provider_id = flavor.ids.get(provider_id, provider_id)
    ssh_users = list(args.ssh_keys)
    if args.ssh_keys_default:
        ssh_users += [user for user in settings.ssh_users if user not in ssh_users]
    keys_taken = False  # --ssh-keys-once: every user asked for has a fragment already
    if args.ssh_keys_once and ssh_users:
        from cl_metadata.outputs import sshkeys_once

        ssh_users = sshkeys_once.users_without_fragment(ssh_users)
        keys_taken = not ssh_users
    prefix = flavor.prefix if args.attributes_flavor else args.attributes_prefix
    link = flavors.link_path(flavor, args.attributes)
    if link is not None:
        flavors.check_link(link)  # before the platform is asked, like every output path
    job = pipeline.Job(provider_id=provider_id,
                       attributes_path=args.attributes, ssh_users=tuple(ssh_users),
                       hostname_path=args.hostname, network_units_dir=args.network_units,
                       netplan_dir=args.netplan_config,
                       networkmanager_dir=args.networkmanager_profiles,
                       check_in=args.check_in, prefix=prefix,
                       instance_data_path=args.instance_data, user_data_path=args.user_data,
                       ssh_keys_per_user=args.ssh_keys_per_user or settings.ssh_keys_per_user)
    if keys_taken and not job.needs().any():
        return EXIT_OK  # nothing else asked for: not even the platform is asked
    if args.local_only and args.check_in:
        raise UsageError("--check-in talks to the platform over the network; "
                         "--local-only never does")
    context = Context(deadline=deadline, environ=environ, kernel_cmdline=kernel,
                      local_only=args.local_only)
    try:
        pipeline.run(job, context)
    finally:
        context.close()
    if link is not None:
        flavors.make_link(link, args.attributes)
    return EXIT_OK


def run() -> None:
    """Console entry point: ``main()``, then exit at once.

    After a failure or SIGTERM, worker threads may still be waiting on a platform that already
    failed the run; every output is complete and fsynced (or untouched) by the time ``main``
    returns, so the process does not wait for them.
    """
    code = main()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


if __name__ == "__main__":  # pragma: no cover
    run()
