"""Hostile JSON and YAML documents: every reader of metadata documents refuses them with the one
"invalid" error (provider, source, cause), never a traceback, a crash, or minutes of work.

The readers: HTTP documents (``formats.json_document``, through digitalocean and hetzner), GCE's
``google-ssh`` expiry, config drive files (openstack's and kubevirt's JSON), and the NoCloud
files (meta-data, user-data, network-config) that qemu and vmware read with the same parser.
"""

from __future__ import annotations

import datetime
import os
import subprocess
import sys
import time

import pytest

from cl_metadata.sources import configdrive, nocloud_format

from cl_metadata.parsing import documents, formats

from cl_metadata import registry
from cl_metadata.errors import InvalidMetadata
from cl_metadata.fakeserver.drive import write_tree
from cl_metadata.fakeserver.faults import Fault
from cl_metadata.fakeserver.instance import load_instance
from cl_metadata.fakeserver.render import renderer_for
from cl_metadata.providers import gcp

from conftest import make_context, run_agent

SAMPLE = load_instance(None)

DEEP_JSON = {"100000 [": "[" * 100000, '100000 {"a":': '{"a":' * 100000}
BLOCK_NESTING = "".join(" " * level + "k:\n" for level in range(1000))  # 500 KB, 1000 levels
LAUGHS = ('a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n' + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]\n" for i in range(8)))
DEEP_YAML = {**DEEP_JSON, "block nesting": BLOCK_NESTING, "100000 '- '": "- " * 100000 + "x"}
TOO_DEEP_JSON = "invalid JSON: nested too deeply"
TOO_DEEP_YAML = "invalid YAML: nested too deeply"
BOMB = f"invalid YAML: aliases expand it to more than {documents.MAX_YAML_NODES} nodes"
HOSTILE_YAML = [(text, TOO_DEEP_YAML) for text in DEEP_YAML.values()] + [(LAUGHS, BOMB)]
HOSTILE_YAML_IDS = [*DEEP_YAML, "billion laughs"]


def nested_lists(depth: int) -> list:
    value: list = []
    for _ in range(depth - 1):
        value = [value]
    return value


def refused(call, source, cause):
    """``call()`` raises InvalidMetadata from ``source`` with exactly ``cause``, on one line."""
    with pytest.raises(InvalidMetadata) as info:
        call()
    assert (info.value.source, info.value.cause) == (source, cause)
    assert "\n" not in str(info.value)


# --- the parser: where the bounds are ----------------------------------------------------------

@pytest.mark.parametrize("text", [*DEEP_JSON.values(), "[" * 65 + "]" * 65,
                                  '{"a": ' * 65 + "1" + "}" * 65], ids=[*DEEP_JSON, "65", "65 {"])
def test_json_deeper_than_64_levels_is_refused(text):
    refused(lambda: documents.parse_json(text, "doc"), "doc", TOO_DEEP_JSON)


def test_json_64_levels_deep_and_brackets_inside_strings_are_fine():
    assert documents.parse_json("[" * 64 + "]" * 64, "doc") == nested_lists(64)
    # brackets and escaped quotes inside strings do not count
    text = '{"a": "' + "[{" * 1000 + '\\"[[[", "b": [["]]]]"]]}'
    assert documents.parse_json(text, "doc") == {"a": "[{" * 1000 + '"[[[', "b": [["]]]]"]]}


@pytest.mark.parametrize("text, cause", [
    ("[NaN]", "invalid JSON: non-standard JSON constant NaN"),
    ("1" * 5000, "invalid JSON: a number is too long"),
    ('"' + "x" * (documents.MAX_DOCUMENT_CHARS - 1) + '"', "document exceeds 1048576 characters"),
    # one string escaping every quote to the end: the depth scan reads it once, not per quote
    ('"\\' * 400000, "invalid JSON: Unterminated string starting at at line 1 column 1"),
])
def test_other_json_that_is_refused_without_quoting_it(text, cause):
    refused(lambda: documents.parse_json(text, "doc"), "doc", cause)


@pytest.mark.parametrize("text, cause", HOSTILE_YAML, ids=HOSTILE_YAML_IDS)
def test_yaml_too_deep_or_expanding_too_far_is_refused(text, cause):
    refused(lambda: documents.parse_yaml(text, "doc"), "doc", cause)


@pytest.mark.parametrize("text, cause", [
    ("&a [*a]", "invalid YAML: an alias refers to a node that contains it"),
    ("a: &a {x: 1}\n" + "".join(f"a{i}: &a{i} {{<<: *{'a' if i == 1 else f'a{i - 1}'}}}\n"
                                 for i in range(1, 3000)), TOO_DEEP_YAML),  # merge chain
    ("[" * 65 + "]" * 65, TOO_DEEP_YAML),
    ("".join(" " * i + "k:\n" for i in range(64)) + " " * 64 + "k: v\n", TOO_DEEP_YAML),
    ("a: &a " + "[" * 40 + "]" * 40 + "\nb: " + "[" * 30 + "*a" + "]" * 30 + "\n", TOO_DEEP_YAML),
    ("!!int " + "1" * 5000, "invalid YAML: a tagged value cannot be converted"),
    ("!!timestamp 2024-13-45", "invalid YAML: a tagged value cannot be converted"),
    ("!!python/object/apply:os.system ['true']", "invalid YAML at line 1 column 1"),
])
def test_other_yaml_that_is_refused_without_quoting_it(text, cause):
    refused(lambda: documents.parse_yaml(text, "doc"), "doc", cause)


def test_yaml_within_the_bounds_reads_as_before():
    text = "a: &x [1, 2]\nb: *x\nc: {<<: {d: 1}}\ne: " + "[" * 63 + "]" * 63 + "\n"
    document = documents.parse_yaml(text, "doc")
    assert document["a"] == document["b"] == [1, 2] and document["c"] == {"d": 1}
    assert document["e"] == nested_lists(63)
    block = "".join(" " * i + "k:\n" for i in range(63)) + " " * 63 + "k: v\n"
    value = documents.parse_yaml(block, "doc")
    for _ in range(63):
        value = value["k"]
    assert value == {"k": "v"}


def test_the_nocloud_loader_keeps_plain_scalars_as_text_within_the_bounds():
    assert nocloud_format.load_yaml("id: 0717\nok: yes\nnone: ~\n", "meta-data") == {
        "id": "0717", "ok": "yes", "none": None}
    refused(lambda: nocloud_format.load_yaml(LAUGHS, "meta-data"), "meta-data", BOMB)


def test_deep_documents_are_refused_in_a_blink():
    # the scan stops at level 65: a 100,000-deep document costs what a 65-deep one does
    for text in [*DEEP_YAML.values(), LAUGHS]:
        start = time.monotonic()
        with pytest.raises(InvalidMetadata):
            documents.parse_yaml(text, "doc")
        assert time.monotonic() - start < 1.0
    for text in DEEP_JSON.values():
        start = time.monotonic()
        with pytest.raises(InvalidMetadata):
            documents.parse_json(text, "doc")
        assert time.monotonic() - start < 1.0


def test_the_bound_holds_whatever_the_recursion_limit():
    """Bound first, then parse: with the recursion limit out of the way, ``json`` recursing
    100,000 levels in C crashes the process (SIGSEGV) and PyYAML takes minutes."""
    code = (
        "import sys; sys.setrecursionlimit(1_000_000)\n"
        "from cl_metadata.parsing import formats\n"
        "from cl_metadata.sources import nocloud_format\n"
        "from cl_metadata.errors import InvalidMetadata\n"
        "for read in (lambda: formats.json_document(b'[' * 100000 + b']' * 100000, 'a'),\n"
        "             lambda: nocloud_format.load_yaml('[' * 100000 + ']' * 100000, 'b')):\n"
        "    try:\n"
        "        read()\n"
        "    except InvalidMetadata as err:\n"
        "        print(err)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60)
    assert (result.returncode, result.stdout, result.stderr) == (
        0, f"a: {TOO_DEEP_JSON}\nb: {TOO_DEEP_YAML}\n", "")


# --- every reader --------------------------------------------------------------------------------

@pytest.mark.parametrize("text", DEEP_JSON.values(), ids=DEEP_JSON)
def test_http_json_documents(fake_server, text):
    path = "/metadata/v1.json"
    server = fake_server("digitalocean", faults=[Fault(path, "malformed", text)])
    provider = registry.get("digitalocean").provider(make_context(server, timeout=3))
    refused(provider.attributes, f"GET http://169.254.169.254{path}", TOO_DEEP_JSON)
    refused(lambda: formats.json_object(text.encode(), "doc"), "doc", TOO_DEEP_JSON)


@pytest.mark.parametrize("path", ["/hetzner/v1/metadata", "/hetzner/v1/metadata/network-config"])
@pytest.mark.parametrize("text, cause", HOSTILE_YAML, ids=HOSTILE_YAML_IDS)
def test_hetzner_yaml_documents(fake_server, path, text, cause):
    if path.endswith("network-config") and text.startswith("{"):
        cause = TOO_DEEP_JSON  # a network-config that starts with "{" is read as JSON
    server = fake_server("hetzner", faults=[Fault(path, "malformed", text)])
    provider = registry.get("hetzner").provider(make_context(server, timeout=3))
    read = provider.attributes if path.endswith("metadata") else provider.network
    refused(read, f"GET http://169.254.169.254{path}", cause)


def test_hetzner_json_key_list(fake_server):
    path = "/hetzner/v1/metadata/public-keys"
    server = fake_server("hetzner", faults=[Fault(path, "malformed", "[" * 100000)])
    provider = registry.get("hetzner").provider(make_context(server, timeout=3))
    refused(provider.ssh_keys, f"GET http://169.254.169.254{path}", TOO_DEEP_JSON)


@pytest.mark.parametrize("text", DEEP_JSON.values(), ids=DEEP_JSON)
def test_a_google_ssh_expiry_that_is_too_deep_drops_the_key(text, caplog):
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAxYgbg7sT/3EjY7mw+pqeP/YuiykylRre135lEkf43f"
    now = datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)
    assert gcp.is_expired(f"{key} google-ssh {text}", now)
    lines = gcp.parse_ssh_keys({gcp.INSTANCE_KEYS: f"core:{key} google-ssh {text}"}, now)
    assert lines == []
    assert [r.getMessage() for r in caplog.records] == [
        f"{gcp.BASE}{gcp.INSTANCE_KEYS} line 1 dropped: expired or unreadable google-ssh expiry"]


def drive_with(tmp_path, platform, relpath, content):
    files = dict(renderer_for(platform).drive_files(SAMPLE))
    files[relpath] = content.encode("utf-8")
    write_tree(files, tmp_path / "drive")
    return make_context(environ={"CL_METADATA_CONFIG_DRIVE": str(tmp_path / "drive")})


@pytest.mark.parametrize("text", DEEP_JSON.values(), ids=DEEP_JSON)
@pytest.mark.parametrize("platform, relpath, part", [
    ("openstack", "openstack/latest/meta_data.json", "attributes"),
    ("openstack", "ec2/latest/meta-data.json", "attributes"),
    ("kubevirt", "openstack/latest/network_data.json", "network"),
])
def test_config_drive_json_files(tmp_path, text, platform, relpath, part):
    def read():
        provider = registry.get(platform).provider(drive_with(tmp_path, platform, relpath, text))
        getattr(provider, part)()

    refused(read, relpath, TOO_DEEP_JSON)


@pytest.mark.parametrize("text", DEEP_JSON.values(), ids=DEEP_JSON)
def test_the_drive_readers_own_json(tmp_path, text):
    (tmp_path / "meta.json").write_text(text)
    with configdrive.open_config_drive(["config-2"], override=str(tmp_path)) as drive:
        refused(lambda: drive.read_json("meta.json"), "meta.json", TOO_DEEP_JSON)


@pytest.mark.parametrize("text, cause", HOSTILE_YAML, ids=HOSTILE_YAML_IDS)
@pytest.mark.parametrize("relpath, header, part", [
    ("meta-data", "", "attributes"),
    ("user-data", "#cloud-config\n", "hostname"),
    ("network-config", "", "network"),
])
def test_nocloud_files(tmp_path, text, cause, relpath, header, part):
    if relpath == "network-config" and text.startswith("{"):
        cause = TOO_DEEP_JSON  # a network-config that starts with "{" is read as JSON
    context = drive_with(tmp_path, "nocloud", relpath, header + text)
    refused(lambda: getattr(registry.get("nocloud").provider(context), part)(), relpath, cause)


def test_qemu_fw_cfg_entry(tmp_path):
    entry = "opt/org.cl-metadata/meta-data"
    context = drive_with(tmp_path, "qemu", entry + "/raw", LAUGHS)
    refused(lambda: registry.get("qemu").provider(context), entry, BOMB)


# --- through the real process: exit 1, one line, the previous file untouched ----------------

def run_refused(agent_env, tmp_path, provider_id, *expected):
    out = tmp_path / "attributes"
    out.write_bytes(b"COREOS_OLD=1\n")
    start = time.monotonic()
    result = run_agent("--provider", provider_id, "--attributes", out, env=agent_env)
    elapsed = time.monotonic() - start
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and "invalid" in lines[0], result.stderr[-2000:]
    assert lines[0] == "cl-metadata: error: " + ": ".join((provider_id, *expected))
    assert out.read_bytes() == b"COREOS_OLD=1\n" and os.listdir(tmp_path) != []
    assert result.stdout == "" and elapsed < 30


@pytest.mark.parametrize("text", DEEP_JSON.values(), ids=DEEP_JSON)
def test_the_process_refuses_deep_json_over_http(fake_server, agent_env, tmp_path, text):
    path = "/metadata/v1.json"
    server = fake_server("digitalocean", faults=[Fault(path, "malformed", text)])
    agent_env["CL_METADATA_ENDPOINT"] = server.url
    run_refused(agent_env, tmp_path, "digitalocean", f"GET http://169.254.169.254{path}",
                TOO_DEEP_JSON)


@pytest.mark.parametrize("text, cause", HOSTILE_YAML, ids=HOSTILE_YAML_IDS)
def test_the_process_refuses_hostile_yaml_over_http(fake_server, agent_env, tmp_path, text,
                                                    cause):
    path = "/hetzner/v1/metadata"
    server = fake_server("hetzner", faults=[Fault(path, "malformed", text)])
    agent_env["CL_METADATA_ENDPOINT"] = server.url
    run_refused(agent_env, tmp_path, "hetzner", f"GET http://169.254.169.254{path}", cause)


@pytest.mark.parametrize("text", DEEP_JSON.values(), ids=DEEP_JSON)
def test_the_process_refuses_deep_json_on_a_config_drive(agent_env, tmp_path, text):
    relpath = "openstack/latest/meta_data.json"
    drive_with(tmp_path, "openstack", relpath, text)
    agent_env["CL_METADATA_CONFIG_DRIVE"] = str(tmp_path / "drive")
    run_refused(agent_env, tmp_path, "openstack", relpath, TOO_DEEP_JSON)


@pytest.mark.parametrize("text, cause", HOSTILE_YAML, ids=HOSTILE_YAML_IDS)
def test_the_process_refuses_hostile_yaml_on_a_config_drive(agent_env, tmp_path, text, cause):
    drive_with(tmp_path, "nocloud", "meta-data", text)
    agent_env["CL_METADATA_CONFIG_DRIVE"] = str(tmp_path / "drive")
    run_refused(agent_env, tmp_path, "nocloud", "meta-data", cause)
