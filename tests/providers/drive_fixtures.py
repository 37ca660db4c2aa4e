"""Helpers for the config-drive and local platform tests: drive directories written by the fake
server's renderers from the shared instance description, providers opened on them, the real
process run on them, and the bad drives every platform must refuse cleanly."""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path
from typing import Dict, Iterable, Mapping, Optional

from cl_metadata.outputs import envfile

from cl_metadata import registry
from cl_metadata.fakeserver.drive import write_tree
from cl_metadata.fakeserver.instance import load_instance
from cl_metadata.fakeserver.render import renderer_for

from conftest import make_context, run_agent

SAMPLE = load_instance(None)
ALICE, DEPLOY = (key.key for key in SAMPLE.ssh_keys)
OVERSIZED = 1024 * 1024 + 1  # one byte over the drive reader's cap
PREVIOUS = "previous contents\n"
SECRET = "secret-outside-the-drive"


def write_drive(tmp_path: Path, platform: str, instance=SAMPLE, *, drop: Iterable[str] = (),
                replace: Optional[Mapping[str, bytes]] = None, name: str = "drive") -> Path:
    """The platform's drive as the fake-server tool writes it, with files dropped or replaced."""
    files: Dict[str, bytes] = dict(renderer_for(platform).drive_files(instance))
    for relpath in drop:
        del files[relpath]
    files.update(replace or {})
    root = tmp_path / name
    write_tree(files, root)
    return root


def open_provider(platform: str, root: Optional[Path]):
    environ = {"CL_METADATA_CONFIG_DRIVE": str(root)} if root is not None else {}
    return registry.provider_class(platform)(make_context(None, environ=environ))


def env_file(attributes: Mapping[str, str], prefix: str) -> str:
    data, dropped = envfile.render(attributes, prefix)
    assert dropped == []
    return data.decode("utf-8")


def without_interfaces(instance=SAMPLE):
    return dataclasses.replace(instance, network_interfaces=(), nameservers=())


# --- bad drives -------------------------------------------------------------------------------

BAD_KINDS = ("missing", "oversized", "symlink-out", "invalid", "not-utf8")


def bad_drive(tmp_path: Path, platform: str, relpath: str, kind: str,
              invalid: bytes = b"{not: [valid") -> Path:
    """A drive whose ``relpath`` is missing, too big, a symlink out of the drive, unparsable or
    not UTF-8; everything else as rendered."""
    if kind == "missing":
        return write_drive(tmp_path, platform, drop=[relpath])
    content = {"oversized": b"#" * OVERSIZED, "invalid": invalid,
               "not-utf8": b"instance-id: caf\xe9\n", "symlink-out": None}[kind]
    if content is not None:
        return write_drive(tmp_path, platform, replace={relpath: content})
    root = write_drive(tmp_path, platform, drop=[relpath])
    secret = tmp_path / "outside.txt"
    secret.write_text(SECRET)
    target = root / relpath
    target.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(secret, target)
    return root


CAUSES = {"missing": "missing", "oversized": "exceeds 1048576 bytes",
          "symlink-out": "symlinks are not followed", "invalid": "invalid",
          "not-utf8": "not valid UTF-8"}


# --- the real process ------------------------------------------------------------------------

def run_on_drive(agent_env: dict, platform: str, root: Optional[Path], *args):
    env = dict(agent_env)
    if root is not None:
        env["CL_METADATA_CONFIG_DRIVE"] = str(root)
    return run_agent("--provider", platform, *args, env=env)


def outputs(tmp_path: Path) -> Dict[str, Path]:
    """Attributes and hostname files holding earlier contents, and an empty units directory."""
    paths = {"attributes": tmp_path / "out/attributes", "hostname": tmp_path / "out/hostname",
             "units": tmp_path / "out/units"}
    paths["units"].mkdir(parents=True)
    for name in ("attributes", "hostname"):
        paths[name].write_text(PREVIOUS)
    return paths


def output_args(paths: Mapping[str, Path], *, network: bool = True):
    args = ["--attributes", paths["attributes"], "--hostname", paths["hostname"]]
    return args + (["--network-units", paths["units"]] if network else [])


def assert_failed_cleanly(result, paths: Mapping[str, Path], *names: str) -> None:
    """Exit 1, a one-line error naming the file(s), no metadata value on stderr, and every
    output exactly as it was."""
    assert result.returncode == 1, result.stderr
    error = [line for line in result.stderr.splitlines() if "error: " in line]
    assert len(error) == 1 and all(name in error[0] for name in names), result.stderr
    assert SECRET not in result.stderr and ALICE.split()[1] not in result.stderr
    assert paths["attributes"].read_text() == PREVIOUS
    assert paths["hostname"].read_text() == PREVIOUS
    assert list(paths["units"].iterdir()) == []


# --- a fake guestinfo tool (vmware) ------------------------------------------------------------

FAKE_TOOL = '''#!{python}
"""Fake {name}: answers "info-get <key>" from the files in {directory!r}."""
import os, sys
with open({log!r}, "a") as log:
    log.write(" ".join(sys.argv[1:]) + "\\n")
if {name!r} == "vmtoolsd" and sys.argv[1:2] != ["--cmd"]:
    sys.exit("usage: vmtoolsd --cmd <command>")
command = sys.argv[-1]
if not command.startswith("info-get "):
    sys.exit("unknown command")
path = os.path.join({directory!r}, command[len("info-get "):])
if not os.path.isfile(path):
    sys.stderr.write("No value found\\n")
    sys.exit(1)
with open(path, "rb") as value:
    sys.stdout.buffer.write(value.read() + b"\\n")
'''


def fake_guestinfo_tool(bin_dir: Path, guestinfo_dir: Path, name: str = "vmware-rpctool") -> Path:
    """An executable ``name`` in ``bin_dir``; its calls are logged to ``bin_dir/calls``."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    tool = bin_dir / name
    tool.write_text(FAKE_TOOL.format(python=sys.executable, name=name,
                                     directory=str(guestinfo_dir), log=str(bin_dir / "calls")))
    tool.chmod(0o755)
    return tool


# --- the sample's interfaces, as models and as units ------------------------------------------

def sample_interfaces(priority: int):
    """The two interfaces of the sample instance as every drive platform describes them."""
    from cl_metadata.model import NetworkInterface, Route

    dns = ("192.0.2.53", "2001:db8::53")
    return [
        NetworkInterface(name="eth0", mac="fa:16:3e:4c:2d:7a", priority=priority,
                         addresses=("10.0.1.15/24", "2001:db8:1:2::15/64"),
                         routes=(Route("0.0.0.0/0", "10.0.1.1"),
                                 Route("::/0", "2001:db8:1:2::1")), nameservers=dns),
        NetworkInterface(name="eth1", mac="fa:16:3e:4c:2d:7b", priority=priority,
                         addresses=("10.130.0.15/16",), nameservers=dns),
    ]


UNIT_BODIES = {  # named and matched by MAC: the drives' eth0/eth1 are other systems' names
    "fa:16:3e:4c:2d:7a": (
        "\n[Match]\nMACAddress=fa:16:3e:4c:2d:7a\n\n[Network]\nDNS=192.0.2.53\nDNS=2001:db8::53\n\n"
        "[Address]\nAddress=10.0.1.15/24\n\n[Address]\nAddress=2001:db8:1:2::15/64\n\n"
        "[Route]\nDestination=0.0.0.0/0\nGateway=10.0.1.1\n\n"
        "[Route]\nDestination=::/0\nGateway=2001:db8:1:2::1\n"),
    "fa:16:3e:4c:2d:7b": (
        "\n[Match]\nMACAddress=fa:16:3e:4c:2d:7b\n\n[Network]\nDNS=192.0.2.53\nDNS=2001:db8::53\n\n"
        "[Address]\nAddress=10.130.0.15/16\n"),
}


def assert_sample_units(directory: Path, priority: int) -> None:
    """Exactly the sample's two unit files, whole, as the real process wrote them."""
    from cl_metadata.network.networkd import HEADER

    written = {path.name: path.read_text() for path in directory.iterdir()}
    assert written == {f"{priority:02d}-{name}.network": HEADER + body
                       for name, body in UNIT_BODIES.items()}
    assert all((path.stat().st_mode & 0o777) == 0o644 for path in directory.iterdir())
