"""The demo behind ``scripts/demo [PROVIDER]``: one platform, the real agent, its outputs shown.

The platform is played by the bundled fake server on 127.0.0.1 (HTTP platforms), or by what it
writes (config drives, VMware guestinfo, the QEMU fw_cfg entry) together with the agent's
overrides; the two platforms that read the machine itself get stand-ins (a DHCP lease file,
the loopback interface as Vagrant's ``eth1``). Values look like the platform's own
(``cl_metadata.fakeserver.lookalike``). Nothing is sent beyond loopback.

The demo prints the one command it runs, with absolute paths and every variable it needs, so
it can be copied and run again; then each output the platform supports and what the platform
was asked. The SSH key fragment is written for the current user inside a private mount
namespace where ``OUT/home`` covers the home directory, so the real home is never touched.
"""

from __future__ import annotations

import json
import os
import pwd
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, NoReturn

import yaml

from cl_metadata import registry
from cl_metadata.fakeserver.lookalike import instance_document
from cl_metadata.fakeserver.standins import write_vmware_rpctool

REPO = Path(__file__).resolve().parent.parent
DEFAULT_PROVIDER = "openstack-metadata"
BIN = Path(sys.executable).parent  # the venv's bin: cl-metadata, cl-metadata-fake-server

# Inside the namespace: keep the paths under the home that the run needs (the venv, the output)
# visible at their own names inside the scratch home, then cover the home with it.
#   sh -c NAMESPACE_SCRIPT demo SCRATCH HOME [KEEP]... -- COMMAND...
NAMESPACE_SCRIPT = ('s=$1 h=$2; shift 2; while [ "$1" != -- ]; do '
                    'mkdir -p "$s${1#"$h"}" && mount --bind "$1" "$s${1#"$h"}" || exit 1; '
                    'shift; done; shift; mount --rbind "$s" "$h" && exec "$@"')


def fail(message: str, status: int = 1) -> NoReturn:
    print(f"demo: {message}", file=sys.stderr)
    sys.exit(status)


def fake_server(*args: str) -> List[str]:
    return [str(BIN / "cl-metadata-fake-server"), *args]


def write_drive(provider: str, instance: Path, drive: Path) -> None:
    done = subprocess.run(fake_server("--platform", provider, "--instance", str(instance),
                                      "--write-drive", str(drive)),
                          stdout=subprocess.DEVNULL, check=False)
    if done.returncode != 0:
        fail(f"the fake server could not write the {provider} drive")


def under(path: Path, parent: Path) -> bool:
    return path != parent and parent in path.parents


def namespace(out: Path, user: pwd.struct_passwd) -> List[str]:
    """The prefix that runs a command with ``out/home`` covering ``user``'s home."""
    home = Path(user.pw_dir)
    keep: List[Path] = []
    for path in sorted({REPO, Path(sys.prefix), out}):
        if under(path, home) and not any(under(path, kept) for kept in keep):
            keep.append(path)
    if os.geteuid() == 0:
        unshare = ["unshare", "--mount", "--propagation", "private"]
    else:
        unshare = ["unshare", "--user", "--map-current-user", "--mount", "--propagation", "private"]
    return [*unshare, "sh", "-c", NAMESPACE_SCRIPT, "demo", str(out / "home"), str(home),
            *map(str, keep), "--"]


def plan(provider: str, features: frozenset, source: str, out: Path) -> List[str]:
    """Prepare the platform's source under ``out`` and return the command that runs the agent."""
    instance = out / "instance.yaml"
    instance.write_text(yaml.safe_dump(instance_document(provider), sort_keys=False))
    env: Dict[str, str] = {}
    standins: List[str] = []
    serve = False
    listen = ["--bind", "127.0.0.1"]
    if provider == "vmware":
        write_drive(provider, instance, out / "guestinfo")
        write_vmware_rpctool(out / "bin", out / "guestinfo")
        env["PATH"] = f"{out / 'bin'}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    elif "config drive" in source or provider == "qemu":
        write_drive(provider, instance, out / "drive")
        env["CL_METADATA_CONFIG_DRIVE"] = str(out / "drive")
    elif source == "local socket":  # LXD/Incus guest API: the fake server on a unix socket
        serve = True
        listen = ["--unix-socket", str(out / "guest-api.sock")]
    elif provider == "vagrant-virtualbox":
        standins = ["--interface", "lo"]  # the machine's own eth1, played by loopback
    else:
        serve = True
        if provider == "cloudstack-metadata":  # its server is the DHCP server: a lease names it
            leases = out / "machine/run/systemd/netif/leases"
            leases.mkdir(parents=True)
            (leases / "2").write_text("ADDRESS=10.1.1.15\nSERVER_ADDRESS=10.1.1.1\n")
            standins = ["--dhcp-root", str(out / "machine")]

    agent = ([str(BIN / "python"), "-m", "cl_metadata.fakeserver.standins", *standins, "--"]
             if standins else [str(BIN / "cl-metadata")])
    agent += ["--provider", provider]
    if "attributes" in features:
        agent += ["--attributes", str(out / "attributes")]
    if "hostname" in features:
        agent += ["--hostname", str(out / "hostname")]
    if "network-units" in features:
        (out / "network").mkdir()
        agent += ["--network-units", str(out / "network")]
    if "check-in" in features:
        agent += ["--check-in"]
    command = agent
    if "ssh-keys" in features:
        user = pwd.getpwuid(os.getuid())
        (out / "home").mkdir()
        command = namespace(out, user) + agent + ["--ssh-keys", user.pw_name]
    if env:
        command = ["env", *(f"{name}={value}" for name, value in env.items()), *command]
    if serve:
        command = fake_server("--platform", provider, "--instance", str(instance),
                              *listen, "--log", str(out / "requests.jsonl"),
                              "--", *command)
    return command


def show(title: str, body: str) -> None:
    print(f"\n== {title}")
    print(body, end="" if body.endswith("\n") or not body else "\n")


def main(argv: List[str]) -> int:
    provider = argv[0] if argv else DEFAULT_PROVIDER
    if len(argv) > 1 or provider.startswith("-"):
        fail("usage: scripts/demo [PROVIDER]", 2)
    if provider not in registry.BUILTIN:
        fail(f"unknown provider {provider!r}; known: {', '.join(sorted(registry.BUILTIN))}", 2)
    platform = registry.get(provider).provider
    out = Path(os.environ.get("CL_METADATA_DEMO_OUT") or REPO / "demo-output").absolute()
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)

    command = plan(provider, platform.features, platform.source, out)
    print("$ " + shlex.join(command), flush=True)
    status = subprocess.run(command, check=False).returncode
    if status != 0:
        fail(f"cl-metadata {provider} exited with status {status}", status if status > 0 else 1)

    if "attributes" in platform.features:
        show(f"attributes ({out / 'attributes'})", (out / "attributes").read_text())
    if "hostname" in platform.features:
        show(f"hostname ({out / 'hostname'})", (out / "hostname").read_text())
    if "ssh-keys" in platform.features:
        user = pwd.getpwuid(os.getuid()).pw_name
        fragment = out / "home/.ssh/authorized_keys.d/cl-metadata"
        show(f"ssh keys (~{user}/.ssh/authorized_keys.d/cl-metadata, kept in {out / 'home'})",
             fragment.read_text())
    if "network-units" in platform.features:
        for unit in sorted((out / "network").iterdir()):
            show(f"network unit ({unit})", unit.read_text())
    log = out / "requests.jsonl"
    if log.exists():
        lines = [json.loads(line) for line in log.read_text().splitlines()]
        show("requests the fake server saw", "".join(
            f"{r['status']} {r['method']} {r['path']}\n" for r in lines if "status" in r))
    for name in ("drive", "guestinfo"):
        if (out / name).is_dir():
            show(f"what the agent read ({out / name})", "".join(
                f"{path.relative_to(out / name)}\n"
                for path in sorted((out / name).rglob("*")) if path.is_file()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
