"""What an HTTP platform's boot path imports: ``requests``, but not its character-set
detection (the agent decodes bodies by its own rules), on the venv's requests and on the
Debian 12 python3-requests 2.28 the .deb runs with."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import REPO

DETECTORS = {"chardet", "charset_normalizer"}
LOADER = os.path.join(REPO, "agent", "sources", "requests_loader.py")
SYSTEM_PYTHON = "/usr/bin/python3"


# The agent's entry point (as ``python -m cl_metadata`` runs it, without its final os._exit),
# then the names of the modules loaded by then, into the file named by argv[1]. (``-X
# importtime`` would not do: it also lists imports that were attempted and refused.)
RUN_AND_LIST_MODULES = """
import sys
listing = sys.argv.pop(1)
sys.argv[0] = "cl-metadata"
from cl_metadata.cli import main
code = main()
with open(listing, "w") as f:
    f.write("\\n".join(sorted(m for m, mod in sys.modules.items() if mod is not None)))
sys.exit(code)
"""


def test_an_http_platform_run_imports_requests_without_charset_detection(
        fake_server, agent_env, tmp_path):
    server = fake_server("ec2")
    out, listing = tmp_path / "attributes", tmp_path / "modules"
    env = dict(agent_env, CL_METADATA_ENDPOINT=server.url)
    proc = subprocess.run([sys.executable, "-c", RUN_AND_LIST_MODULES, str(listing),
                           "--provider", "ec2", "--attributes", str(out),
                           "--hostname", str(tmp_path / "hostname")],
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "COREOS_EC2_INSTANCE_ID=" in out.read_text()
    loaded = {name.split(".")[0] for name in listing.read_text().split()}
    assert {"requests", "urllib3"} <= loaded  # the listing did see the HTTP stack
    assert not loaded & DETECTORS, sorted(loaded & DETECTORS)
    # requests' complaint about the missing detector is not passed on
    assert "RequestsDependencyWarning" not in proc.stderr


def load_requests_with(python: str) -> subprocess.CompletedProcess:
    """``python`` imports requests through the agent's loader; prints what it loaded."""
    code = ("import importlib.util, sys\n"
            f"spec = importlib.util.spec_from_file_location('requests_loader', {LOADER!r})\n"
            "loader = importlib.util.module_from_spec(spec); spec.loader.exec_module(loader)\n"
            "requests = loader.import_requests()\n"
            "print(requests.__version__)\n"
            "print(' '.join(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('chardet', 'charset_normalizer') and sys.modules[m] is not None)))\n"
            "import chardet  # still importable by anyone else afterwards (if installed)\n")
    return subprocess.run([python, "-I", "-c", code], capture_output=True, text=True,
                          timeout=60)


def test_the_venv_requests_loads_no_detector():
    proc = load_requests_with(sys.executable)
    version, loaded = (proc.stdout.splitlines() + ["", ""])[:2]
    if tuple(int(p) for p in version.split(".")[:2]) < (2, 32):
        pytest.skip(f"requests {version} needs a detector")
    assert loaded == ""
    assert proc.stderr == "" or "No module named 'chardet'" in proc.stderr


@pytest.mark.skipif(not os.path.exists(SYSTEM_PYTHON), reason="no system python3")
def test_debian_requests_2_28_keeps_only_charset_normalizer():
    # requests 2.28 refuses to import without a detector: the loader falls back to the
    # cheaper one instead of failing (the .deb depends on this version)
    probe = subprocess.run([SYSTEM_PYTHON, "-I", "-c",
                            "import requests, chardet, charset_normalizer; "
                            "print(requests.__version__)"], capture_output=True, text=True)
    if probe.returncode != 0 or not probe.stdout.startswith("2.28."):
        pytest.skip("the system python3 has no requests 2.28 with both detectors")
    proc = load_requests_with(SYSTEM_PYTHON)
    assert proc.returncode == 0, proc.stderr
    version, loaded = proc.stdout.splitlines()[:2]
    assert version.startswith("2.28.")
    assert set(loaded.split()) and {m.split(".")[0] for m in loaded.split()} == \
        {"charset_normalizer"}
    assert "Warning" not in proc.stderr, proc.stderr
