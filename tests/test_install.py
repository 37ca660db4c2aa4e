"""Both install forms work: a wheel in a fresh venv, and an editable install of the tree.

Either way exactly one import root lands in site-packages (cl_metadata, with providers under
it), the console scripts and ``python -m cl_metadata`` run, and the package data ships."""

import glob
import os
import subprocess
import sys
import venv

import pytest

import cl_metadata

from conftest import REPO


def sh(*argv, **kwargs):
    result = subprocess.run([str(a) for a in argv], capture_output=True, text=True,
                            timeout=300, **kwargs)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    dist = tmp_path_factory.mktemp("dist")
    sh(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
       "-w", dist, REPO)
    (path,) = glob.glob(str(dist / "cl_metadata-*.whl"))
    return path


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory, wheel):
    root = tmp_path_factory.mktemp("wheel-venv")
    venv.create(root, with_pip=True)
    sh(root / "bin/python", "-m", "pip", "install", "-q", "--disable-pip-version-check", wheel)
    return root


def site_packages(root):
    (path,) = glob.glob(str(root / "lib/python3*/site-packages"))
    return path


def test_wheel_holds_one_import_root(wheel):
    import zipfile
    names = zipfile.ZipFile(wheel).namelist()
    roots = {name.split("/")[0] for name in names}
    assert {r for r in roots if not r.endswith(".dist-info")} == {"cl_metadata"}
    assert "cl_metadata/providers/openstack.py" in names
    assert "cl_metadata/fakeserver/sample-instance.yaml" in names
    assert not any(n.startswith(("cl_metadata/tests", "agent/", "providers/")) for n in names)


def test_wheel_install_runs(wheel_venv, tmp_path):
    bin_dir = wheel_venv / "bin"
    assert sh(bin_dir / "cl-metadata", "--version") == f"cl-metadata {cl_metadata.__version__}\n"
    assert sh(bin_dir / "python", "-m", "cl_metadata", "--version").startswith("cl-metadata ")
    assert "openstack-metadata" in sh(bin_dir / "cl-metadata", "providers")
    top = set(os.listdir(site_packages(wheel_venv)))
    assert "cl_metadata" in top and "agent" not in top and "providers" not in top

    # the installed agent against the installed fake server, end to end on loopback
    server = subprocess.Popen([bin_dir / "cl-metadata-fake-server", "--port", "0"],
                              stdout=subprocess.PIPE, text=True)
    try:
        url = server.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        env = {"PATH": os.environ["PATH"], "CL_METADATA_ENDPOINT": url,
               "CL_METADATA_CMDLINE": os.devnull}
        sh(bin_dir / "cl-metadata", "--provider", "openstack-metadata", "--attributes",
           tmp_path / "attrs", env=env)
    finally:
        server.terminate()
        server.wait(timeout=10)
    assert "COREOS_OPENSTACK_INSTANCE_ID=i-0a1b2c3d4e5f60718\n" in (tmp_path / "attrs").read_text()


def test_editable_install_maps_both_folders(tmp_path):
    root = tmp_path / "editable-venv"
    venv.create(root, with_pip=True)  # --no-deps below: these checks import no dependency
    sh(root / "bin/python", "-m", "pip", "install", "-q", "--disable-pip-version-check",
       "--no-deps", "-e", REPO)
    out = sh(root / "bin/python", "-c",
             "import cl_metadata, cl_metadata.providers.openstack as o; "
             "print(cl_metadata.__file__); print(o.__file__)", cwd=tmp_path)
    assert out.split() == [os.path.join(REPO, "agent", "__init__.py"),
                           os.path.join(REPO, "providers", "openstack.py")]
    assert sh(root / "bin/cl-metadata", "--version").startswith("cl-metadata ")
    top = set(os.listdir(site_packages(root)))
    assert "agent" not in top and "providers" not in top
