"""``cl-metadata-fake-server``: serve one instance description as a platform's metadata.

TCP mode prints the URL as the first stdout line and serves on loopback until SIGTERM/SIGINT.
``--stdio`` answers exactly one request from stdin on stdout (QEMU ``guestfwd=…-cmd:``) and
never writes to stderr. ``-- COMMAND…`` serves while COMMAND runs, with ``CL_METADATA_ENDPOINT``
set to the server's URL in its environment, and exits with COMMAND's status. ``--write-drive``
writes the platform's config drive and exits.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import List, Optional

from ..errors import EXIT_OK, EXIT_USAGE, CLMetadataError, UsageError
from .drive import FORMATS, write_drive
from .faults import parse_fault
from .instance import load_instance
from .render import platforms, renderer_for
from .schedule import Schedule
from .server import Dispatcher, FakeServer, UnixFakeServer, serve_stdio

PROG = "cl-metadata-fake-server"
STDIO_FAILURE = (b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n"
                 b"Connection: close\r\n\r\n")


EPILOG = """modes: serve on TCP (prints the URL, serves until SIGTERM/SIGINT), --stdio (one
request), --write-drive (the platform's config drive), --list-platforms, and
`-- COMMAND [ARG]...`: serve while COMMAND runs with CL_METADATA_ENDPOINT set to the
server's URL, then exit with COMMAND's status (127: it could not be started).

fault SPEC: PATH=KIND[:ARG][@N|@Ss]; PATH is *, a prefix ending in *, or a path. KIND:
  status:CODE[:RETRY_AFTER], delay:SECONDS, drip[:SECONDS_PER_BYTE], truncate[:BYTES],
  reset, oversize[:BYTES], redirect:URL, malformed[:BODY], empty.
  @N: the first N matching requests only; @Ss: the first S seconds only.

a platform that changes while the guest runs (files the host touches; every --stdio server
looks at them per request, a held GCE long poll every 0.2 s):
  --switch-file PATH --then-instance FILE: while PATH exists, serve FILE's instance.
  --outage-file PATH: while PATH exists, drop every request (and every held long poll)
  without an answer: the platform is gone.

exit status:
  0  served until stopped, or the drive or list was written
  1  the instance file or the drive could not be read or written
  2  usage error: bad flags, unknown platform, bad fault spec

A test tool: it serves on loopback only and is never needed on a booting machine."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Serve one instance description as a cloud platform's metadata, on\n"
                    "loopback, for testing cl-metadata.", epilog=EPILOG)
    parser.add_argument("--platform", metavar="ID", default="openstack",
                        help="platform id (default: openstack; see --list-platforms)")
    parser.add_argument("--instance", metavar="FILE", help="instance YAML (default: the bundled sample)")
    parser.add_argument("--bind", metavar="ADDRESS", default="127.0.0.1",
                        help="127.0.0.1 (default), ::1 or localhost")
    parser.add_argument("--port", metavar="PORT", type=int, default=0,
                        help="TCP port (default: any free port)")
    parser.add_argument("--unix-socket", metavar="PATH",
                        help="serve on a new unix socket at PATH instead of TCP (the LXD and "
                             "Incus guest API; `-- COMMAND` then gets CL_METADATA_LXD_SOCKET)")
    parser.add_argument("--stdio", action="store_true",
                        help="serve one request from stdin on stdout, then exit")
    parser.add_argument("--log", metavar="FILE", help="append one JSON line per request")
    parser.add_argument("--fault", metavar="SPEC", action="append", default=[],
                        help="misbehave on matching requests (see below), repeatable")
    parser.add_argument("--state", metavar="FILE",
                        help="keep fault uses and the first request's time in FILE, shared "
                             "by every server given it (--stdio: one server per connection)")
    parser.add_argument("--then-instance", metavar="FILE",
                        help="the instance served while --switch-file exists")
    parser.add_argument("--switch-file", metavar="PATH",
                        help="while PATH exists, serve --then-instance (see below)")
    parser.add_argument("--outage-file", metavar="PATH",
                        help="while PATH exists, answer nothing (see below)")
    parser.add_argument("--latency", type=float, default=0.0, metavar="SECONDS",
                        help="added before every response")
    parser.add_argument("--write-drive", metavar="PATH", help="write the config drive and exit")
    parser.add_argument("--drive-format", choices=FORMATS, default="dir",
                        help="the drive written: a directory (default), or a vfat, iso9660 or "
                             "ext4 image")
    parser.add_argument("--list-platforms", action="store_true", help="print platform ids and exit")
    return parser


def _silence_stderr() -> None:
    """In --stdio mode fd 2 is the guest's connection: nothing may ever reach it."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)
    sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the process


def _schedule(args: argparse.Namespace) -> Optional[Schedule]:
    """The files that change what is served, or None when no option names one."""
    if not (args.switch_file or args.then_instance or args.outage_file):
        return None
    return Schedule(switch_file=Path(args.switch_file) if args.switch_file else None,
                    then_instance=load_instance(args.then_instance) if args.then_instance
                    else None,
                    outage_file=Path(args.outage_file) if args.outage_file else None)


def _run_stdio(args: argparse.Namespace) -> int:
    try:
        dispatcher = Dispatcher(args.platform, load_instance(args.instance),
                                faults=[parse_fault(s) for s in args.fault],
                                log_path=args.log, latency=args.latency,
                                fault_state=args.state, schedule=_schedule(args))
    except CLMetadataError as err:
        if args.log:
            try:
                with open(args.log, "a", encoding="utf-8") as log:
                    log.write(json.dumps({"time": round(time.time(), 6), "error": str(err)}) + "\n")
            except OSError:
                pass
        sys.stdout.buffer.write(STDIO_FAILURE)
        sys.stdout.buffer.flush()
        return err.exit_code
    serve_stdio(dispatcher)
    return EXIT_OK


def _server(args: argparse.Namespace) -> FakeServer:
    """The TCP server, or with ``--unix-socket`` the same on a unix socket."""
    options = dict(faults=[parse_fault(s) for s in args.fault], log_path=args.log,
                   latency=args.latency, fault_state=args.state, schedule=_schedule(args))
    if args.unix_socket:
        return UnixFakeServer(args.platform, load_instance(args.instance),
                              socket_path=args.unix_socket, **options)
    return FakeServer(args.platform, load_instance(args.instance), bind=args.bind,
                      port=args.port, **options)


def _run_tcp(args: argparse.Namespace) -> int:
    server = _server(args)
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.start()
        print(server.url, flush=True)
        while not stop.wait(1.0):
            pass
    finally:
        server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return EXIT_OK


def _run_command(args: argparse.Namespace, command: List[str]) -> int:
    """Serve while ``command`` runs: one re-runnable line starts the platform and the agent."""
    server = _server(args)
    server.start()
    try:
        if isinstance(server, UnixFakeServer):
            env = dict(os.environ, CL_METADATA_LXD_SOCKET=server.socket_path)
        else:
            env = dict(os.environ, CL_METADATA_ENDPOINT=server.url)
        try:
            status = subprocess.run(command, env=env, check=False).returncode
        except OSError as err:
            print(f"{PROG}: {command[0]}: {err.strerror}", file=sys.stderr)
            return 127
    finally:
        server.stop()
    return 128 - status if status < 0 else status  # killed by a signal: the shell's number


def _write_drive(args: argparse.Namespace) -> int:
    renderer = renderer_for(args.platform)
    if not hasattr(renderer, "drive_files"):
        raise UsageError(f"platform {args.platform} has no config drive")
    files = renderer.drive_files(load_instance(args.instance))
    write_drive(files, args.write_drive, args.drive_format, renderer.DRIVE_LABEL)
    print(args.write_drive, flush=True)
    return EXIT_OK


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command: List[str] = []
    if "--" in argv:
        argv, command = argv[:argv.index("--")], argv[argv.index("--") + 1:]
    stdio = "--stdio" in argv
    if stdio:
        _silence_stderr()
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_:
        if stdio and exit_.code:
            sys.stdout.buffer.write(STDIO_FAILURE)
            sys.stdout.buffer.flush()
        return exit_.code if isinstance(exit_.code, int) else EXIT_USAGE
    if command and (args.stdio or args.write_drive or args.list_platforms):
        print(f"{PROG}: -- COMMAND serves on TCP: not with --stdio, --write-drive or "
              "--list-platforms", file=sys.stderr)
        return EXIT_USAGE
    try:
        if command:
            return _run_command(args, command)
        if args.list_platforms:
            for platform in sorted(platforms()):
                print(platform)
            return EXIT_OK
        if args.stdio:
            return _run_stdio(args)
        if args.write_drive:
            return _write_drive(args)
        return _run_tcp(args)
    except CLMetadataError as err:
        print(f"{PROG}: {err}", file=sys.stderr)
        return err.exit_code
