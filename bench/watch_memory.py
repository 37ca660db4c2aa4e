#!/usr/bin/env python3
"""Memory of ``cl-metadata watch`` over many key changes: is it flat?

The fake GCE metadata server runs in this process on 127.0.0.1; the watcher runs in a child
process (the real long poll, the real key writer, a home directory under a temp dir, written as
the current user). The server's key set is changed N times (default 10,000), each time waiting
until the fragment holds the new key, so every change is one full cycle: the long poll answers,
the keys are fetched with a fresh client, compared, the fragment rewritten, the poll asked again.
The child's resident set (VmRSS) is read after a warm-up and at the end.

    .venv/bin/python bench/watch_memory.py [--cycles N]

Prints one line per 1,000 cycles and a summary; nothing leaves loopback.
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import logging
import os
import struct
import subprocess
import sys
import tempfile
import time

WARM_UP = 200  # cycles before the baseline: imports, connection pools and caches settle


def key_line(number: int) -> str:
    name = b"ssh-ed25519"
    blob = base64.b64encode(struct.pack(">I", len(name)) + name
                            + number.to_bytes(32, "big")).decode()
    return f"ssh-ed25519 {blob} bench-{number}"


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def child(url: str, home: str) -> None:
    """The watcher, as ``cl-metadata watch --provider gcp`` runs it, for a stand-in user."""
    from types import SimpleNamespace

    from cl_metadata import log as agent_log
    from cl_metadata.watch import command
    from cl_metadata.watch.keeper import Keeper, Plan
    from cl_metadata.watch.loop import Watcher

    agent_log.setup(0)
    logging.getLogger("cl_metadata").setLevel(logging.WARNING)  # no line per added key
    user = SimpleNamespace(pw_name="bench", pw_uid=os.geteuid(), pw_gid=os.getegid(),
                           pw_dir=home)
    environ = {"CL_METADATA_ENDPOINT": url}
    keeper = Keeper(Plan("gcp", (user,)), timeout=10.0, environ=environ)
    Watcher(keeper, command.follower_for("gcp", 60.0, environ), retry_initial=0.1,
            retry_max=1.0).run()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cycles", type=int, default=10_000)
    parser.add_argument("--child", nargs=2, metavar=("URL", "HOME"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return 0

    from cl_metadata.fakeserver.instance import SshKey, load_instance
    from cl_metadata.fakeserver.server import FakeServer

    base = load_instance()

    def serving(number: int):
        return dataclasses.replace(base, ssh_keys=(SshKey("bench", key_line(number)),))

    with tempfile.TemporaryDirectory(prefix="cl-metadata-watch-bench-") as home, \
            FakeServer("gcp", serving(0)) as server:
        fragment = os.path.join(home, ".ssh", "authorized_keys.d", "cl-metadata")
        process = subprocess.Popen([sys.executable, __file__, "--child", server.url, home])
        try:
            baseline = None
            started = time.monotonic()
            for number in range(args.cycles + 1):
                if number:
                    server.dispatcher.set_instance(serving(number))
                wanted = (key_line(number) + "\n").encode()
                end = time.monotonic() + 30
                while True:
                    try:
                        with open(fragment, "rb") as f:
                            if f.read() == wanted:
                                break
                    except FileNotFoundError:
                        pass
                    if time.monotonic() > end or process.poll() is not None:
                        raise SystemExit(f"cycle {number}: the fragment did not follow")
                    time.sleep(0.001)
                if number == WARM_UP:
                    baseline = rss_kib(process.pid)
                if number and number % 1000 == 0:
                    print(f"cycle {number:6d}: RSS {rss_kib(process.pid)} KiB, "
                          f"{(time.monotonic() - started) / number * 1000:.1f} ms/cycle",
                          flush=True)
            final = rss_kib(process.pid)
            elapsed = time.monotonic() - started
        finally:
            process.terminate()
            process.wait(10)
    print(f"{args.cycles} change cycles in {elapsed:.0f} s "
          f"({elapsed / args.cycles * 1000:.1f} ms each); watcher RSS after {WARM_UP}: "
          f"{baseline} KiB, after {args.cycles}: {final} KiB, growth {final - baseline} KiB "
          f"({(final - baseline) / baseline * 100:+.1f} %)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
