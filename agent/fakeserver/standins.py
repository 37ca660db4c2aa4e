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
import os
import sys
from typing import List, Optional

# vmware-rpctool's one call the vmware provider makes, answered from a directory of guestinfo
# files (the fake server's --write-drive for vmware writes them)
_VMWARE_RPCTOOL = """#!/bin/sh
key="${{1#info-get }}"
[ -f "{directory}/$key" ] || {{ echo "No value found" >&2; exit 1; }}
cat "{directory}/$key" && echo
"""


def write_vmware_rpctool(bin_dir: "os.PathLike[str] | str",
                         guestinfo_dir: "os.PathLike[str] | str") -> str:
    """A stand-in ``vmware-rpctool`` in ``bin_dir`` (created) answering from ``guestinfo_dir``;
    put ``bin_dir`` first on the agent's PATH. Returns the tool's path."""
    os.makedirs(bin_dir, exist_ok=True)
    tool = os.path.join(os.fspath(bin_dir), "vmware-rpctool")
    with open(tool, "w", encoding="utf-8") as f:
        f.write(_VMWARE_RPCTOOL.format(directory=os.fspath(guestinfo_dir)))
    os.chmod(tool, 0o755)
    return tool


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

    from cl_metadata.sources import dhcp
    from cl_metadata.cli import main as agent_main
    from cl_metadata.providers import vagrant_virtualbox

    if args.dhcp_root:
        dhcp.ROOT = args.dhcp_root
    if args.interface:
        vagrant_virtualbox.INTERFACE = args.interface
    return agent_main(argv[split + 1:])


if __name__ == "__main__":
    sys.exit(main())
