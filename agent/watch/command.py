"""``cl-metadata watch``: the long-running mode, as ``cl-metadata-watch.service`` runs it.

The platform and users are chosen as for a run (``--provider ID|auto``, ``--cmdline``,
``--settings``, ``--ssh-keys USER``…, ``--ssh-keys-default``); ``--attributes FILE`` keeps the
attributes file in step too. Platforms read over HTTP are followed, and LXD's and Incus's
guest API on its local socket (their instance configuration can change while the machine runs);
a config drive, QEMU's fw_cfg or VMware's guestinfo does not change, so for them (and for no
platform at all) the command says so in one notice and exits 0, so that an enabled unit is not
restarted in a loop. SIGTERM ends it with status 0; SIGHUP re-reads the settings and looks at
once.
"""

from __future__ import annotations

import argparse
import logging
import signal
from typing import Mapping, Optional, Sequence, Tuple

from cl_metadata import log as agent_log
from cl_metadata.cli import (Once, add_deadline_arguments, add_platform_arguments,
                             command_parser, normalize_argv, resolve_platform, timeout_seconds)
from cl_metadata.errors import EXIT_OK, UsageError
from cl_metadata.watch import sources
from cl_metadata.watch.keeper import Plan

log = logging.getLogger("cl_metadata")

GCE_IDS = ("gcp", "gce")
MIN_INTERVAL, MAX_INTERVAL = 1.0, 86400.0


# Sources that can change while the machine runs: metadata services, and the guest API socket
# of LXD and Incus (`lxc config set` reaches a running instance).
FOLLOWED_SOURCES = ("http", "local socket")


class Stopped(BaseException):
    """SIGTERM or SIGINT: leave the loop at once (every write is atomic)."""


def build_parser() -> argparse.ArgumentParser:
    parser = command_parser(
        "cl-metadata watch",
        usage="cl-metadata watch (--provider ID|auto | --cmdline) [--settings FILE]\n"
              "                         (--ssh-keys USER... | --ssh-keys-default) "
              "[--attributes FILE]\n"
              "                         [--interval SECONDS] [--timeout SECONDS] [-v]",
        description="Keep each user's SSH key fragment (and the attributes file) equal to what\n"
                    "the platform serves while the machine runs: GCE's long poll, elsewhere\n"
                    "a look every --interval seconds. Rewrites only on change; never removes\n"
                    "a key because the platform could not be read. SIGHUP: re-read the\n"
                    "settings and look now; SIGTERM: stop (status 0).")
    add_platform_arguments(parser, settings_help="the image's settings file: its provider is "
                                                 "the last fallback, its ssh-users the users "
                                                 "of --ssh-keys-default")
    parser.add_argument("--ssh-keys", metavar="USER", action="append", default=[],
                        dest="ssh_keys", help="keep USER's key fragment in step (repeatable)")
    parser.add_argument("--ssh-keys-default", action="store_true",
                        help="the same for the settings file's ssh-users (default: core)")
    parser.add_argument("--attributes", metavar="FILE", action=Once,
                        help="keep the attributes file FILE in step too")
    parser.add_argument("--attributes-prefix", metavar="COREOS|AFTERBURN", action=Once,
                        default="COREOS", type=str.upper, choices=("COREOS", "AFTERBURN"),
                        help="prefix of attribute names (default COREOS)")
    parser.add_argument("--interval", metavar="SECONDS", action=Once, type=float,
                        default=sources.DEFAULT_INTERVAL,
                        help=f"seconds between looks where there is no long poll (default "
                             f"{sources.DEFAULT_INTERVAL:g}, ±10 %% jitter)")
    add_deadline_arguments(parser, deadline_of="one look")
    return parser


def plan_for(args, environ: Mapping[str, str]) -> Optional[Tuple[Plan, object, object]]:
    """``(plan, follower, kernel command line)``, or None when there is nothing to follow (a
    notice says why). Raises ``UsageError`` or ``OutputError`` (an unusable user or path)."""
    from cl_metadata import registry
    from cl_metadata.outputs import fsutil, sshkeys
    from cl_metadata.providers.base import ATTRIBUTES, SSH_KEYS

    provider_id, settings, kernel = resolve_platform(args, environ)
    if provider_id is None:
        return None
    entry = registry.get(provider_id)
    if entry.provider.source not in FOLLOWED_SOURCES:
        agent_log.notice("%s: reads %s, which does not change while the machine runs; "
                         "nothing to watch", entry.id, entry.provider.source)
        return None
    names = list(args.ssh_keys)
    if args.ssh_keys_default:
        names += [user for user in settings.ssh_users if user not in names]
    if not names and args.attributes is None:
        raise UsageError("watch: nothing to keep in step; give --ssh-keys USER, "
                         "--ssh-keys-default or --attributes FILE")
    features = entry.provider.features
    if (not names or SSH_KEYS not in features) and \
            (args.attributes is None or ATTRIBUTES not in features):
        agent_log.notice("%s: the platform serves none of the outputs asked for; nothing to "
                         "watch", entry.id)
        return None
    users = tuple(sshkeys.lookup_user(name) for name in names) if SSH_KEYS in features else ()
    fsutil.check_outputs(files=(args.attributes,), directories=())
    attributes = args.attributes if ATTRIBUTES in features else None
    plan = Plan(provider_id=entry.id, users=users, attributes_path=attributes,
                prefix=args.attributes_prefix)
    return plan, follower_for(entry.id, args.interval, environ), kernel


def follower_for(provider_id: str, interval: float, environ: Mapping[str, str]):
    if provider_id in GCE_IDS:
        from cl_metadata.context import ENDPOINT_ENV
        from cl_metadata.sources.http import HttpClient

        endpoint = environ.get(ENDPOINT_ENV) or None

        def client(deadline, read_timeout):  # one per long poll: nothing kept across polls
            return HttpClient(deadline=deadline, endpoint=endpoint, read_timeout=read_timeout,
                              max_workers=1)

        from cl_metadata.sources.deadline import Deadline

        client(Deadline(1.0), 1.0).close()  # a bad CL_METADATA_ENDPOINT: a usage error now
        return sources.GceLongPoll(client)
    return sources.Polling(interval)


def main(argv: Sequence[str], environ: Mapping[str, str]) -> int:
    """The ``watch`` command; errors before the first look propagate to ``cli.main``."""
    from cl_metadata.watch.keeper import Keeper
    from cl_metadata.watch.loop import Watcher

    args = build_parser().parse_args(normalize_argv(argv))
    if args.verbose:
        agent_log.setup(args.verbose)
    if not MIN_INTERVAL <= args.interval <= MAX_INTERVAL:
        raise UsageError(f"--interval must be between {MIN_INTERVAL:g} and {MAX_INTERVAL:g} "
                         f"seconds, not {args.interval:g}")
    timeout = timeout_seconds(args.timeout, environ)
    found = plan_for(args, environ)
    if found is None:
        return EXIT_OK
    plan, follower, kernel = found
    keeper = Keeper(plan, timeout=timeout, environ=environ, kernel=kernel)

    def reload():
        again = plan_for(args, environ)
        if again is None:
            raise UsageError("no platform to follow any more")
        return again[0], again[1]

    watcher = Watcher(keeper, follower, reload=reload)

    def stop(signum, frame):
        raise Stopped()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGHUP, lambda signum, frame: watcher.request_reload())
    log.info("watch: following %s for %s (%s)", plan.provider_id,
             ", ".join(u.pw_name for u in plan.users) or "the attributes",
             follower.describe())
    try:
        return watcher.run()
    except Stopped:
        log.info("watch: stopped")
        return EXIT_OK
