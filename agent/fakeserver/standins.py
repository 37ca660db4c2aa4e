"""Run cl-metadata with stand-ins for what a test machine or a laptop lacks.

    python -m cl_metadata.fakeserver.standins [--dhcp-root DIR] [--interface NAME] -- AGENT-ARGS

Two platforms read the machine itself rather than a metadata source an override can redirect:
``cloudstack-metadata`` finds its server in a DHCP lease (``--dhcp-root``: lease files are read
under DIR instead of ``/``), ``vagrant-virtualbox`` reads the address of ``eth1``
(``--interface``: another interface, e.g. ``lo``). Everything else is the real agent, given the
arguments after ``--``. A test tool, shipped with the fake server, never used on a booting
machine.
"""

from __future__ import annotations

import argparse
import sys
from typing import List, Optional


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--" not in argv:
        print("usage: python -m cl_metadata.fakeserver.standins [--dhcp-root DIR] "
              "[--interface NAME] -- AGENT-ARGS", file=sys.stderr)
        return 2
    split = argv.index("--")
    parser = argparse.ArgumentParser(prog="cl_metadata.fakeserver.standins")
    parser.add_argument("--dhcp-root", metavar="DIR")
    parser.add_argument("--interface", metavar="NAME")
    args = parser.parse_args(argv[:split])

    from cl_metadata import dhcp
    from cl_metadata.cli import main as agent_main
    from cl_metadata.providers import vagrant_virtualbox

    if args.dhcp_root:
        dhcp.ROOT = args.dhcp_root
    if args.interface:
        vagrant_virtualbox.INTERFACE = args.interface
    return agent_main(argv[split + 1:])


if __name__ == "__main__":
    sys.exit(main())
