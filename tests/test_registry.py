"""Providers from the built-in table and from the ``cl_metadata.providers`` entry-point group."""

import os
import subprocess
import sys
import textwrap

import pytest

from cl_metadata import registry

PLUGIN_MODULE = '''
from cl_metadata.providers.base import ATTRIBUTES, Provider

class ExampleProvider(Provider):
    id = "example-cloud"
    source = "http"
    description = "Example Cloud"
    features = frozenset({ATTRIBUTES})

    def attributes(self):
        return {"EXAMPLE_CLOUD_ZONE": "zone-1"}

class Impostor(Provider):
    id = "openstack"
    source = "http"

class Misnamed(Provider):
    id = "something-else"
    source = "http"
'''


@pytest.fixture
def plugin_path(tmp_path):
    """A distribution on sys.path declaring four entry points of the group."""
    (tmp_path / "example_plugin.py").write_text(PLUGIN_MODULE)
    dist = tmp_path / "example_cloud_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: example-cloud-plugin\n"
                                   "Version: 1.0\n")
    (dist / "entry_points.txt").write_text(textwrap.dedent("""\
        [cl_metadata.providers]
        example-cloud = example_plugin:ExampleProvider
        openstack = example_plugin:Impostor
        broken-cloud = example_plugin_missing:Provider
        misnamed = example_plugin:Misnamed
        """))
    return tmp_path


def run(plugin_path, *args, env_extra=None):
    env = dict(os.environ, PYTHONPATH=str(plugin_path))
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "cl_metadata", *args], env=env,
                          capture_output=True, text=True, timeout=30)


def test_plugins_are_listed_and_bad_ones_isolated(plugin_path):
    result = run(plugin_path, "providers")
    assert result.returncode == 0
    ids = [line.split()[0] for line in result.stdout.splitlines()]
    assert "example-cloud" in ids
    assert ids.count("openstack") == 1  # the built-in keeps its id
    assert "broken-cloud" not in ids and "misnamed" not in ids
    line = next(l for l in result.stdout.splitlines() if l.startswith("example-cloud"))
    assert "(plugin: example-cloud-plugin)" in line
    assert "'openstack' from example-cloud-plugin ignored: the id is built in" in result.stderr
    assert "'broken-cloud' from example-cloud-plugin failed to load" in result.stderr
    assert "'misnamed' from example-cloud-plugin ignored" in result.stderr


def test_a_plugin_provider_runs(plugin_path, tmp_path):
    out = tmp_path / "attrs"
    result = run(plugin_path, "--provider", "example-cloud", "--attributes", out)
    assert result.returncode == 0, result.stderr
    assert out.read_text() == "COREOS_EXAMPLE_CLOUD_ZONE=zone-1\n"


def test_a_broken_plugin_is_an_unknown_provider(plugin_path, tmp_path):
    result = run(plugin_path, "--provider", "broken-cloud", "--attributes", tmp_path / "a")
    assert result.returncode == 2
    assert "unknown provider 'broken-cloud'" in result.stderr
    assert "example-cloud" in result.stderr  # the list of known ids


def test_builtin_lookup_does_not_scan_entry_points(monkeypatch):
    def fail():
        raise AssertionError("entry points scanned for a built-in id")
    monkeypatch.setattr(registry, "_plugins", fail)
    assert registry.get("openstack-metadata").provider.id == "openstack-metadata"


def test_every_builtin_declares_its_own_id():
    for provider_id, target in registry.BUILTIN.items():
        cls = registry.get(provider_id).provider
        assert cls.id == provider_id, target
        assert cls.source and cls.description and cls.features
