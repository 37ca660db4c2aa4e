"""``cl-metadata query``: print what the platform says about this machine, writing nothing.

The platform is chosen as for a run (``--provider ID|auto``, ``--cmdline``, ``--settings``, the
overrides), everything the instance-data document holds is fetched and validated by the
pipeline's own steps, and the document is printed: aligned text for people, or with ``--json``
exactly what ``--instance-data -`` would print. No file is written, no lock taken, no check-in
sent; bad metadata fails as a run does (one line, exit status 1). A platform without a
metadata service is the same notice and exit status 0 as a run, and prints nothing.
"""

from __future__ import annotations

import argparse
import logging
from typing import Any, Dict, Mapping, Optional, Sequence

from cl_metadata import log as agent_log
# the parser pieces every cl-metadata command shares: one-line usage errors, no repeated flags
from cl_metadata.cli import (Once, add_deadline_arguments, add_platform_arguments,
                             command_parser, normalize_argv, resolve_platform, timeout_seconds)
from cl_metadata.errors import EXIT_OK, MetadataError, NoMetadataHere

log = logging.getLogger("cl_metadata")


def build_parser() -> argparse.ArgumentParser:
    parser = command_parser(
        "cl-metadata query",
        usage="cl-metadata query (--provider ID|auto | --cmdline) [--settings FILE] [--json]\n"
              "                         [--attributes-flavor F] [--timeout SECONDS] [-v]",
        description="Print what the platform says about this machine: the attributes under\n"
                    "both prefixes, SSH key fingerprints (never the keys), the host name, the\n"
                    "network description, whether user-data exists (never its content) and\n"
                    "whether the platform has a check-in (never sent). Writes nothing.")
    add_platform_arguments(parser)
    parser.add_argument("--attributes-flavor", metavar="coreos|flatcar|afterburn",
                        action=Once, choices=("coreos", "flatcar", "afterburn"),
                        help="read the platform id as a run with this flavor would (flatcar: "
                             "aws and gcp as ec2 and gce; afterburn: the reverse)")
    parser.add_argument("--json", action="store_true",
                        help="one JSON document (docs/instance-data.schema.json), as "
                             "--instance-data writes it")
    add_deadline_arguments(parser, deadline_of="the whole query")
    return parser


def main(argv: Sequence[str], environ: Mapping[str, str]) -> int:
    """The ``query`` command; errors propagate to ``cli.main`` (one line, its exit status)."""
    from cl_metadata.context import Context
    from cl_metadata.outputs import flavors, fsutil, instancedata
    from cl_metadata.sources.deadline import Deadline

    args = build_parser().parse_args(normalize_argv(argv))
    if args.verbose:
        agent_log.setup(args.verbose)
    deadline = Deadline(timeout_seconds(args.timeout, environ))
    flavor = flavors.get(args.attributes_flavor or "coreos")
    provider_id, _, kernel = resolve_platform(args, environ)
    if provider_id is None:  # nothing to read; a notice said why
        return EXIT_OK
    provider_id = flavor.ids.get(provider_id, provider_id)
    context = Context(deadline=deadline, environ=environ, kernel_cmdline=kernel)
    try:
        doc = gather(provider_id, context)
    finally:
        context.close()
    if doc is not None:
        shown = instancedata.render(doc) if args.json else instancedata.text(doc).encode("utf-8")
        fsutil.write_stdout(shown)
    return EXIT_OK


def gather(provider_id: str, context) -> Optional[Dict[str, Any]]:
    """The instance-data document for ``provider_id``: fetched and validated exactly as a run
    with ``--instance-data`` does, nothing written. None when the platform has no metadata
    here (a drive that is not there: a notice says so)."""
    from cl_metadata import pipeline, registry

    entry = registry.get(provider_id)
    job = pipeline.Job(provider_id=entry.id, instance_data_path="-")  # what it fetches, checks
    needs = job.needs(entry.provider.features)
    agent_log.status(f"reading {entry.id} metadata")
    try:
        with entry.provider(context) as provider:
            metadata = pipeline.fetch(provider, needs)
            hostname, keys, _ = pipeline.validate(metadata, needs, job)
            return pipeline.instance_data(provider, metadata, hostname, keys)
    except NoMetadataHere as err:  # as a run: a success that shows nothing
        err.provider = err.provider or entry.id
        agent_log.notice("%s", err)
        return None
    except MetadataError as err:
        if err.provider is None:
            err.provider = entry.id
        raise
