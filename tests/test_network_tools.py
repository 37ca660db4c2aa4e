"""Every interface description the writers are tested with, rendered in each stack and read by
that stack's own tool:

- netplan: ``netplan generate --root-dir`` (Debian package netplan.io) over the document, in a
  temporary root; it must succeed without an error or warning and write a networkd file for
  every device the document names.
- NetworkManager: libnm's keyfile reader (``nm_keyfile_read``, the code NetworkManager loads
  profiles with), then ``normalize`` and ``verify`` as NetworkManager does before using one, run
  by tests/nm_keyfile_reader.py under the system Python (python3-gi, gir1.2-nm-1.0; Debian 12's
  NetworkManager 1.42 has no ``nmcli --offline``, which came in 1.44). It must accept each
  profile without a warning, and read back the addresses, routes and nameservers written.

tests/setup-system-deps installs the packages; without them these tests skip, naming the one
missing.
"""

import json
import os
import shutil
import subprocess

import pytest

from cl_metadata.network import netcheck, netplan, networkmanager
from network_fixtures import FIXTURES, platform_descriptions

DESCRIPTIONS = {**FIXTURES, **platform_descriptions()}
SYSTEM_PYTHON = "/usr/bin/python3"
NM_READER = os.path.join(os.path.dirname(__file__), "nm_keyfile_reader.py")


def _has_libnm() -> bool:
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        return False
    probe = "import gi; gi.require_version('NM', '1.0'); from gi.repository import NM"
    return subprocess.run([SYSTEM_PYTHON, "-c", probe], capture_output=True).returncode == 0


NETPLAN = shutil.which("netplan") or (
    "/usr/sbin/netplan" if os.access("/usr/sbin/netplan", os.X_OK) else None)
needs_netplan = pytest.mark.skipif(NETPLAN is None, reason="netplan not installed "
                                                           "(Debian package netplan.io)")
needs_libnm = pytest.mark.skipif(not _has_libnm(), reason="libnm's GObject bindings missing "
                                 "(Debian packages python3-gi, gir1.2-nm-1.0)")


@needs_netplan
@pytest.mark.parametrize("name", sorted(DESCRIPTIONS))
def test_netplan_generate_accepts_the_document(name, tmp_path):
    files = netplan.render(*DESCRIPTIONS[name])
    (tmp_path / "etc").mkdir()
    netplan.write_files(tmp_path / "etc/netplan", files)
    result = subprocess.run([NETPLAN, "generate", "--root-dir", str(tmp_path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "rror" not in result.stderr and "WARNING" not in result.stderr, result.stderr
    generated = sorted(os.listdir(tmp_path / "run/systemd/network"))
    checked = netcheck.check(*DESCRIPTIONS[name])
    ids = {i.stem for i in checked.interfaces if not i.unmanaged}
    ids |= {n.name for n in checked.netdevs}
    assert {f"10-netplan-{device}.network" for device in ids} <= set(generated)
    assert {f"10-netplan-{n.name}.netdev" for n in checked.netdevs} <= set(generated)


@needs_libnm
@pytest.mark.parametrize("name", sorted(DESCRIPTIONS))
def test_networkmanager_reads_and_verifies_every_profile(name, tmp_path):
    files = networkmanager.render(*DESCRIPTIONS[name])
    networkmanager.write_files(tmp_path, files)
    result = subprocess.run([SYSTEM_PYTHON, NM_READER, *sorted(str(tmp_path / f) for f in files)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    read = {entry["file"]: entry for entry in map(json.loads, result.stdout.splitlines())}
    assert sorted(read) == sorted(files)
    checked = netcheck.check(*DESCRIPTIONS[name])
    for interface in checked.interfaces:  # what NetworkManager read back is what was meant
        if interface.unmanaged or interface.bond or interface.bridge:
            continue
        stem = interface.name if interface.virtual else interface.stem
        profile = next(entry for file_name, entry in read.items()
                       if file_name.endswith(f"-{stem}.nmconnection"))
        for version, section in ((4, "ipv4"), (6, "ipv6")):
            addresses = [str(a) for a in interface.addresses if a.version == version]
            assert profile[section]["addresses"] == addresses
            if profile[section]["method"] != "disabled":
                assert profile[section]["dns"] == [
                    str(s) for s in interface.nameservers if s.version == version]
                assert profile[section]["routes"] == [
                    f"{r.destination},{r.gateway}" for r in interface.routes
                    if r.destination.version == version]
