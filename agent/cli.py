"""The ``cl-metadata`` command line, compatible with coreos-metadata and Afterburn.

Accepts Go-style single-dash long flags (``-provider=ec2``, ``-cmdline``, ``-ssh-keys core``)
and Afterburn's ``multi`` sub-command word. Exit status: 0 success, 1 the platform could not be
read or an output could not be written, 2 usage error or unknown provider.
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
from cl_metadata.errors import EXIT_FAILURE, EXIT_OK, CLMetadataError, UsageError

log = logging.getLogger("cl_metadata")

TIMEOUT_ENV = "CL_METADATA_TIMEOUT"


class Terminated(BaseException):
    """SIGTERM arrived: unwind so temp files are removed and drives unmounted."""


class _HelpFormatter(argparse.HelpFormatter):
    # A fixed width: argparse would otherwise import shutil (and bz2, lzma…) on every
    # add_argument to ask the terminal, a cost every boot pays for help it never prints.
    def __init__(self, prog, width=None, **kwargs):
        columns = os.environ.get("COLUMNS", "")
        width = int(columns) - 2 if columns.isdigit() and int(columns) > 40 else 78
        super().__init__(prog, width=width, **kwargs)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line and exit 2, like every other usage error
        raise UsageError(f"{message} (see --help)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="cl-metadata", formatter_class=_HelpFormatter,
        description="Fetch this machine's metadata from its cloud platform and write the "
                    "attributes file, SSH keys, hostname and network units.",
        epilog="Other commands: 'cl-metadata providers' lists the platforms. Environment: "
               "CL_METADATA_ENDPOINT, CL_METADATA_CONFIG_DRIVE, CL_METADATA_CMDLINE, "
               "CL_METADATA_TIMEOUT (see the README).")
    parser.add_argument("--provider", metavar="ID", help="the platform id (see 'providers')")
    parser.add_argument("--cmdline", action="store_true",
                        help="read the platform id from the kernel command line "
                             "(ignition.platform.id, flatcar.oem.id, coreos.oem.id); "
                             "--provider then only serves as the fallback")
    parser.add_argument("--attributes", "--output", metavar="FILE", dest="attributes",
                        help="write the attributes (EnvironmentFile= format) to FILE")
    parser.add_argument("--attributes-prefix", metavar="COREOS|AFTERBURN", default="COREOS",
                        type=str.upper, choices=("COREOS", "AFTERBURN"),
                        help="prefix of attribute names (default COREOS)")
    parser.add_argument("--ssh-keys", metavar="USER", action="append", default=[],
                        dest="ssh_keys", help="write USER's key fragment "
                        "~USER/.ssh/authorized_keys.d/cl-metadata (repeatable)")
    parser.add_argument("--hostname", metavar="FILE", help="write the hostname to FILE")
    parser.add_argument("--network-units", metavar="DIR",
                        help="write systemd-networkd units to DIR")
    parser.add_argument("--check-in", action="store_true",
                        help="report a successful boot to the platform, where it wants that")
    parser.add_argument("--timeout", metavar="SECONDS", type=float, default=None,
                        help=f"deadline for the whole run (default ${TIMEOUT_ENV} or 60)")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="debug logging")
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


def _timeout(value: Optional[float], environ: Mapping[str, str]) -> float:
    from cl_metadata.deadline import DEFAULT_TIMEOUT

    if value is None:
        raw = environ.get(TIMEOUT_ENV)
        try:
            value = float(raw) if raw else DEFAULT_TIMEOUT
        except ValueError:
            raise UsageError(f"{TIMEOUT_ENV}={raw!r} is not a number of seconds") from None
    if not 0 < value <= 3600:
        raise UsageError(f"timeout must be between 0 and 3600 seconds, not {value:g}")
    return value


def select_provider(args, environ: Mapping[str, str], kernel: Optional[Mapping[str, str]]) -> str:
    """The kernel command line wins over --provider, which is then the fallback."""
    from cl_metadata import cmdline

    if args.cmdline:
        found = cmdline.platform_id(kernel or {})
        if found:
            key, provider_id = found
            log.info("platform %s from the kernel command line (%s)", provider_id, key)
            return provider_id
        if args.provider:
            log.info("no platform id on the kernel command line; using --provider %s",
                     args.provider)
            return args.provider
        raise UsageError("no platform id on the kernel command line (looked for "
                         + ", ".join(cmdline.PLATFORM_KEYS) + ")")
    if args.provider:
        return args.provider
    raise UsageError("set --provider ID or --cmdline")


def list_providers(out=None) -> int:
    from cl_metadata import registry

    out = out or sys.stdout
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
            return list_providers()
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


def _run(args, environ: Mapping[str, str]) -> int:
    from cl_metadata import cmdline, pipeline
    from cl_metadata.context import Context
    from cl_metadata.deadline import Deadline

    deadline = Deadline(_timeout(args.timeout, environ))
    kernel = None
    if args.cmdline:
        try:
            kernel = cmdline.read(environ)
        except UsageError:
            if not args.provider:
                raise
            log.warning("kernel command line unreadable; using --provider %s", args.provider)
    job = pipeline.Job(provider_id=select_provider(args, environ, kernel),
                       attributes_path=args.attributes, ssh_users=tuple(args.ssh_keys),
                       hostname_path=args.hostname, network_units_dir=args.network_units,
                       check_in=args.check_in, prefix=args.attributes_prefix)
    context = Context(deadline=deadline, environ=environ, kernel_cmdline=kernel)
    try:
        pipeline.run(job, context)
    finally:
        context.close()
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
