"""``scripts/demo PROVIDER`` works for every provider, shows that platform's outputs, and the
command it prints runs again as printed.

Every demo runs once (in parallel, a few at a time) into its own directory under tmp; the real
home directory must not change.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from cl_metadata import registry
from cl_metadata.fakeserver.instance import parse_instance
from cl_metadata.fakeserver.lookalike import OVERRIDES, SAMPLE_PLATFORMS, instance_document

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "scripts/demo"
PROVIDERS = sorted(registry.BUILTIN)
SECTION = re.compile(r"^== (.*)$", re.M)
REAL_FRAGMENT = Path(os.path.expanduser("~")) / ".ssh/authorized_keys.d/cl-metadata"


def sections(stdout: str) -> dict:
    """``== title`` -> the lines under it, titles shortened to their first word(s)."""
    parts = SECTION.split(stdout)
    found = {}
    for title, body in zip(parts[1::2], parts[2::2]):
        found.setdefault(title.split(" (")[0], []).append(body.strip())
    return found


def run_demo(provider: str, out: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, CL_METADATA_DEMO_OUT=str(out))
    return subprocess.run([str(DEMO), provider], env=env, capture_output=True, text=True,
                          timeout=120, cwd="/")


@pytest.fixture(scope="module")
def demos(tmp_path_factory):
    """provider -> (its output directory, the completed demo); the real key fragment before."""
    root = tmp_path_factory.mktemp("demos")
    before = REAL_FRAGMENT.read_bytes() if REAL_FRAGMENT.exists() else None
    with ThreadPoolExecutor(max_workers=4) as pool:
        done = dict(zip(PROVIDERS, pool.map(lambda p: run_demo(p, root / p), PROVIDERS)))
    yield {p: (root / p, result) for p, result in done.items()}
    after = REAL_FRAGMENT.read_bytes() if REAL_FRAGMENT.exists() else None
    assert after == before, "the demo touched the real home directory"


@pytest.mark.parametrize("provider", PROVIDERS)
def test_the_demo_shows_every_output_the_platform_has(demos, provider):
    out, result = demos[provider]
    assert result.returncode == 0, result.stderr[-2000:]
    features = registry.get(provider).provider.features
    shown = sections(result.stdout)
    expected = {"attributes": "attributes", "hostname": "hostname", "ssh-keys": "ssh keys",
                "network-units": "network unit"}
    assert {title for feature, title in expected.items() if feature in features} == \
        set(shown) & set(expected.values())
    if "attributes" in features:
        lines = shown["attributes"][0].splitlines()
        assert lines and all(re.match(r'(COREOS|CLOUDSTACK)_[A-Z0-9_]+=', line)
                             for line in lines), lines
    if "hostname" in features:
        assert re.fullmatch(r"[a-z0-9][a-z0-9.-]*", shown["hostname"][0])
    if "ssh-keys" in features:
        keys = shown["ssh keys"][0].splitlines()
        assert keys and all(re.match(r"ssh-(ed25519|rsa) AAAA", key) for key in keys)
        assert (out / "home/.ssh/authorized_keys.d/cl-metadata").read_text().strip() == \
            shown["ssh keys"][0]
    if "network-units" in features:
        assert all(re.search(r"^\[(Match|NetDev)\]$", unit, re.M) for unit in shown["network unit"])
    # HTTP platforms: the requests are shown, and every one went to the loopback fake server
    # (the LXD/Incus guest API: to its socket in the demo's directory)
    command = result.stdout.splitlines()[0]
    if "cl-metadata-fake-server" in command:
        if registry.get(provider).provider.source == "local socket":
            assert f"--unix-socket {out}/guest-api.sock " in command
            assert not (out / "guest-api.sock").exists()  # removed when the demo ended
        else:
            assert "--bind 127.0.0.1" in command
        requests = shown["requests the fake server saw"][0].splitlines()
        assert requests and all(re.fullmatch(r"[2-5]\d\d [A-Z]+ /\S*", r) for r in requests)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_the_printed_command_runs_again_as_printed(demos, provider):
    out, result = demos[provider]
    assert result.returncode == 0, result.stderr[-2000:]
    command = result.stdout.splitlines()[0]
    assert command.startswith("$ /") or command.startswith("$ env ")
    written = [path for path in (out / "attributes", out / "hostname",
                                 out / "home/.ssh/authorized_keys.d/cl-metadata") if path.exists()]
    saved = {path: path.read_bytes() for path in written}
    for path in written:
        path.unlink()
    rerun = subprocess.run(["sh", "-c", command[2:]], capture_output=True, text=True, timeout=60,
                           cwd="/", env={"PATH": os.defpath})  # nothing from the demo's env
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    # the same files again; only a URL naming the fake server's port may differ
    port = re.compile(rb"127\.0\.0\.1:\d+")
    assert {path: port.sub(b"PORT", path.read_bytes()) for path in written} == \
        {path: port.sub(b"PORT", content) for path, content in saved.items()}


def test_every_platform_but_the_sample_s_own_has_a_lookalike():
    assert sorted(set(OVERRIDES) | set(SAMPLE_PLATFORMS)) == PROVIDERS
    assert not set(OVERRIDES) & set(SAMPLE_PLATFORMS)


@pytest.mark.parametrize("provider", sorted(OVERRIDES))
def test_lookalike_instances_are_valid_and_not_the_openstack_sample(provider):
    sample = instance_document("openstack")
    document = instance_document(provider)
    instance = parse_instance(yaml.safe_load(yaml.safe_dump(document)), provider)
    assert instance.region != "RegionOne" and instance.availability_zone != "nova"
    assert instance.instance_type != "m1.small"
    assert not instance.mac.startswith("fa:16:3e")  # OpenStack's MAC prefix
    assert [nic.mac for nic in instance.network_interfaces][0] == instance.mac
    # every field the platform names its own way differs from the sample's (or is absent)
    for key in OVERRIDES[provider]:
        if key != "platform-data":
            assert document.get(key) != sample.get(key), key


@pytest.mark.parametrize("provider", sorted(OVERRIDES))
def test_no_lookalike_demo_shows_the_openstack_sample(demos, provider):
    """What the demo prints (attributes, hostname, network units) has none of the sample's
    OpenStack-only values: its region, zone, flavor, image, ids, host name or MAC prefix."""
    result = demos[provider][1]
    assert result.returncode == 0, result.stderr[-2000:]
    shown = "\n".join("\n".join(bodies) for title, bodies in sections(result.stdout).items()
                      if title != "requests the fake server saw")
    for value in ("RegionOne", "m1.small", "3e9a1f52-7c4b-4d0e-8a61-5f2b9c7d0e14",
                  "8f1c2d4e6a7b4c3d9e0f1a2b3c4d5e6f", "example.internal",
                  "5d3f8c2a-9b14-4e6f-a0c7-2e81b4d9f063", "fa:16:3e", "fa163e"):
        assert value not in shown, value
    assert not re.search(r"^[A-Z_]+=nova$", shown, re.M)


def test_ec2_and_digitalocean_demos_look_like_their_platform(demos):
    ec2 = sections(demos["ec2"][1].stdout)["attributes"][0]
    assert "COREOS_EC2_REGION=us-east-1\n" in ec2 + "\n"
    assert re.search(r"^COREOS_EC2_INSTANCE_ID=i-[0-9a-f]{17}$", ec2, re.M)
    assert "COREOS_EC2_INSTANCE_TYPE=t3.micro" in ec2
    do = sections(demos["digitalocean"][1].stdout)["attributes"][0]
    assert "COREOS_DIGITALOCEAN_REGION=nyc3" in do
    assert "RegionOne" not in do and "nova" not in do


def test_an_unknown_provider_is_a_usage_error(tmp_path):
    result = run_demo("no-such-cloud", tmp_path / "out")
    assert result.returncode == 2
    assert result.stderr.startswith("demo: unknown provider 'no-such-cloud'; known: akamai, ")
    assert shlex.split(result.stdout) == []
