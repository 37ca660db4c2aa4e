"""The pipeline: fetch only what is needed, validate before writing, name the provider."""

import threading

import pytest

from cl_metadata import pipeline, registry
from cl_metadata.sources.deadline import Deadline
from cl_metadata.context import Context
from cl_metadata.errors import InvalidMetadata, MetadataError
from cl_metadata.model import Needs
from cl_metadata.providers.base import ATTRIBUTES, HOSTNAME, SSH_KEYS, Provider

KEY = ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDvG8tq4ts5rW1o3JmzjDLSHw8rHX3uo3qNBQu8LEjfF "
       "alice@example")


class RecordingProvider(Provider):
    id = "recording"
    source = "test"
    features = frozenset({ATTRIBUTES, SSH_KEYS, HOSTNAME})
    calls = []
    barrier = None
    hostname_value = "node-1.example.com"

    def attributes(self):
        self._record("attributes")
        return {"RECORDING_ID": "i-1"}

    def ssh_keys(self):
        self._record("ssh_keys")
        return [KEY]

    def hostname(self):
        self._record("hostname")
        return self.hostname_value

    def _record(self, name):
        self.calls.append(name)
        if self.barrier:
            self.barrier.wait(timeout=5)


@pytest.fixture
def recording(monkeypatch):
    RecordingProvider.calls = []
    RecordingProvider.barrier = None
    RecordingProvider.hostname_value = "node-1.example.com"
    monkeypatch.setitem(registry.BUILTIN, "recording", "test_pipeline:RecordingProvider")
    return RecordingProvider


def context():
    return Context(deadline=Deadline(5), environ={})


def test_only_the_needed_parts_are_fetched(recording):
    provider = recording(context())
    metadata = pipeline.fetch(provider, Needs(attributes=True))
    assert recording.calls == ["attributes"]
    assert metadata.attributes == {"RECORDING_ID": "i-1"}
    assert metadata.ssh_keys == () and metadata.hostname is None


def test_several_parts_are_fetched_concurrently(recording):
    # each part waits until all three are running at once: a sequential fetch would time out
    recording.barrier = threading.Barrier(3)
    metadata = pipeline.fetch(recording(context()),
                              Needs(attributes=True, ssh_keys=True, hostname=True))
    assert sorted(recording.calls) == ["attributes", "hostname", "ssh_keys"]
    assert metadata.hostname == "node-1.example.com" and metadata.ssh_keys == (KEY,)


def test_run_writes_attributes_and_hostname(recording, tmp_path):
    job = pipeline.Job("recording", attributes_path=str(tmp_path / "attrs"),
                       hostname_path=str(tmp_path / "hostname"), prefix="AFTERBURN")
    pipeline.run(job, context())
    assert (tmp_path / "attrs").read_text() == "AFTERBURN_RECORDING_ID=i-1\n"
    assert (tmp_path / "hostname").read_text() == "node-1.example.com\n"


def test_invalid_hostname_fails_before_any_write(recording, tmp_path):
    recording.hostname_value = "bad_host!name"
    attrs = tmp_path / "attrs"
    attrs.write_text("OLD=1\n")
    job = pipeline.Job("recording", attributes_path=str(attrs),
                       hostname_path=str(tmp_path / "hostname"))
    with pytest.raises(InvalidMetadata) as info:
        pipeline.run(job, context())
    assert info.value.provider == "recording"
    assert str(info.value).startswith("recording: hostname: ")
    assert attrs.read_text() == "OLD=1\n"
    assert not (tmp_path / "hostname").exists()


def test_errors_are_attributed_to_the_provider(recording, monkeypatch, tmp_path):
    def broken(self):
        raise MetadataError("boom", source="GET /x")
    monkeypatch.setattr(recording, "attributes", broken)
    with pytest.raises(MetadataError) as info:
        pipeline.run(pipeline.Job("recording", attributes_path=str(tmp_path / "a")), context())
    assert str(info.value) == "recording: GET /x: boom"
    assert not (tmp_path / "a").exists()


def test_platform_without_check_in_or_network_succeeds(recording, tmp_path, caplog):
    caplog.set_level("INFO", logger="cl_metadata")
    pipeline.run(pipeline.Job("recording", check_in=True,
                              network_units_dir=str(tmp_path / "units")), context())
    assert "has no boot check-in" in caplog.text
    assert "describes no network interfaces" in caplog.text
    assert not (tmp_path / "units").exists()


def test_unknown_user_fails_before_the_platform_is_asked(recording):
    with pytest.raises(Exception) as info:
        pipeline.run(pipeline.Job("recording", ssh_users=("no-such-user-xyz",)), context())
    assert getattr(info.value, "exit_code", None) == 1
    assert "no-such-user-xyz" in str(info.value)
    assert recording.calls == []
