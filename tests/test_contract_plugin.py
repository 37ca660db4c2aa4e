"""The packaged contract checks (``cl_metadata.fakeserver.contract``) a plugin's own suite runs:
they pass for built-in providers (one HTTP, one config drive) and for a tiny plugin platform
registered through the ``cl_metadata.providers`` entry-point group, and each check catches the
fault it names in a provider that breaks it."""

from __future__ import annotations

import logging
import socket
from types import SimpleNamespace

import pytest

from cl_metadata import registry
from cl_metadata.fakeserver import contract
from cl_metadata.fakeserver.render import Route, text
from cl_metadata.providers.base import ATTRIBUTES, HOSTNAME, SSH_KEYS, TextTreeProvider


# -- a plugin platform, as a plugin package would ship it --------------------------------------

class ExampleCloudProvider(TextTreeProvider):
    """Example Cloud: plain-text items under ``/examplecloud/v1/``."""

    id = "examplecloud"
    description = "Example Cloud metadata service (test plugin)"
    features = frozenset({ATTRIBUTES, SSH_KEYS, HOSTNAME})
    base = "http://169.254.169.254/examplecloud/v1/"  # the test's endpoint override serves it
    attribute_paths = {"EXAMPLECLOUD_INSTANCE_ID": "instance-id",
                       "EXAMPLECLOUD_REGION": "region"}
    hostname_path = "hostname"
    keys_path = "public-keys"


def example_routes(instance):
    items = {"instance-id": instance.instance_id, "region": instance.region,
             "hostname": instance.hostname,
             "public-keys": "\n".join(key.key for key in instance.ssh_keys)}
    return [Route(f"/examplecloud/v1/{path}", text(value))
            for path, value in items.items() if value]


# the plugin's render module (a module object in a real plugin)
EXAMPLE_RENDER = SimpleNamespace(PLATFORMS=("examplecloud",), routes=example_routes)
EXAMPLE_NEEDS = {
    "attributes": {("GET", "/examplecloud/v1/instance-id"), ("GET", "/examplecloud/v1/region")},
    "hostname": {("GET", "/examplecloud/v1/hostname")},
    "ssh-keys": {("GET", "/examplecloud/v1/public-keys")},
}


@pytest.fixture
def installed_plugin(tmp_path, monkeypatch):
    """ExampleCloudProvider registered as an installed distribution would be: a ``.dist-info``
    with an entry point, on the path of this process and of the agent processes it starts."""
    site = tmp_path / "site"
    info = site / "examplecloud_plugin-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: examplecloud-plugin\n"
                                   "Version: 1.0\n")
    (info / "entry_points.txt").write_text(
        f"[cl_metadata.providers]\nexamplecloud = {__name__}:ExampleCloudProvider\n")
    monkeypatch.syspath_prepend(str(site))
    return site


# -- the contract holds -------------------------------------------------------------------------

def test_a_builtin_http_provider_keeps_the_contract(tmp_path):
    base = "/v1/"
    contract.check_provider("vultr", tmp_path, needs={
        "attributes": {("GET", base + "instanceid"), ("GET", base + "region/regioncode"),
                       ("GET", base + "hostname")},
        "hostname": {("GET", base + "hostname")},
        "ssh-keys": {("GET", base + "public-keys")}})


def test_a_builtin_config_drive_provider_keeps_the_contract(tmp_path):
    contract.check_provider("nocloud", tmp_path)


def test_a_plugin_registered_by_entry_point_keeps_the_contract(installed_plugin, tmp_path):
    entry = registry.get("examplecloud")
    assert (entry.provider, entry.origin) == (ExampleCloudProvider, "examplecloud-plugin")
    contract.check_provider("examplecloud", tmp_path, renderer=EXAMPLE_RENDER,
                            needs=EXAMPLE_NEEDS)


def test_the_plugin_run_is_the_real_agent_with_the_plugin_s_outputs(installed_plugin, tmp_path):
    tgt = contract.target("examplecloud", renderer=EXAMPLE_RENDER)
    done = contract.run(tgt, tmp_path, prefix="AFTERBURN")
    assert done.returncode == 0, done.stderr
    assert done.outputs["attributes"] == (b"AFTERBURN_EXAMPLECLOUD_INSTANCE_ID=zqxinstance0001\n"
                                          b"AFTERBURN_EXAMPLECLOUD_REGION=zqxregion\n")
    assert done.outputs["hostname"] == b"zqxhost.zqxdomain.example\n"
    fragment = tmp_path / "home/.ssh/authorized_keys.d/cl-metadata"
    assert fragment.read_text() == contract.MARKED_INSTANCE.ssh_keys[0].key + "\n"
    assert sorted(done.requests) == sorted(set().union(*EXAMPLE_NEEDS.values()))
    assert done.refused == []


# -- and each check catches what it names -------------------------------------------------------

class ValueLoggingProvider(ExampleCloudProvider):
    def hostname(self):
        name = super().hostname()
        logging.getLogger("cl_metadata").info("examplecloud: host name %s", name)
        return name


class OffHostProvider(ExampleCloudProvider):
    def region(self):  # not a Provider method: called from attributes() below
        # a provider that bypasses the HTTP client and its endpoint override; TEST-NET-1
        with socket.create_connection(("192.0.2.1", 80), timeout=0.5):
            pass

    def attributes(self):
        try:
            self.region()
        except OSError:
            pass
        return super().attributes()


class RefetchingProvider(ExampleCloudProvider):
    def hostname(self):  # the same item with other options: the client cannot share the answer
        self.context.http.get(self.base + self.hostname_path, headers={"Accept": "text/plain"})
        return super().hostname()


class WrongStemProvider(ExampleCloudProvider):
    attribute_paths = {"EXAMPLE_INSTANCE_ID": "instance-id"}


class KeysWithEverythingProvider(ExampleCloudProvider):
    def attributes(self):
        self.ssh_keys()  # fetched whether or not --ssh-keys asked for them
        return super().attributes()


def example(cls):
    return contract.target(cls, renderer=EXAMPLE_RENDER)


def test_a_logged_metadata_value_breaks_the_contract(tmp_path):
    tgt = example(ValueLoggingProvider)
    runs = [contract.run(tgt, tmp_path)]
    assert runs[0].returncode == 0, runs[0].stderr
    with pytest.raises(contract.ContractBroken, match="a metadata value reached the log"):
        contract.check_no_value_logged(tgt, runs)


def test_a_connection_beyond_loopback_is_refused_and_breaks_the_contract(tmp_path):
    done = contract.run(example(OffHostProvider), tmp_path)
    assert done.refused == ["192.0.2.1"]
    with pytest.raises(contract.ContractBroken, match=r"tried to reach \['192.0.2.1'\]"):
        contract.check_loopback_only([done])


def test_a_document_fetched_twice_breaks_the_contract(tmp_path):
    with pytest.raises(contract.ContractBroken, match="fetched more than once in one run: "
                                                      r"\['/examplecloud/v1/hostname'\]"):
        contract.check_requests(example(RefetchingProvider), tmp_path)


def test_fetching_what_the_outputs_do_not_need_breaks_the_contract(tmp_path):
    with pytest.raises(contract.ContractBroken, match="attributes asked"):
        contract.check_requests(example(KeysWithEverythingProvider), tmp_path, EXAMPLE_NEEDS)


def test_attributes_without_the_platform_s_stem_break_the_contract(tmp_path):
    with pytest.raises(contract.ContractBroken,
                       match="'COREOS_EXAMPLE_INSTANCE_ID' is not COREOS_EXAMPLECLOUD_<NAME>"):
        contract.check_attribute_names(example(WrongStemProvider), tmp_path)


def test_a_failed_run_must_be_one_error_line_and_leave_outputs_alone():
    tgt = example(ExampleCloudProvider)
    before = {"attributes": b"PREVIOUS=1\n"}
    one_line = "cl-metadata: error: examplecloud: GET http://x/: HTTP 500 after 3 attempts\n"
    contract._one_line_error_or_success(  # the rule kept: nothing raised
        tgt, contract.Run([], 1, "", one_line, dict(before)), before, "kept")
    with pytest.raises(contract.ContractBroken, match="changed the existing attributes file"):
        contract._one_line_error_or_success(
            tgt, contract.Run([], 1, "", one_line, {"attributes": b"NEW=1\n"}), before, "x")
    with pytest.raises(contract.ContractBroken, match="not one `cl-metadata: error"):
        contract._one_line_error_or_success(
            tgt, contract.Run([], 1, "", "Traceback (most recent call last):\nValueError\n",
                              dict(before)), before, "x")
