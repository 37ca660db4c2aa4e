"""azurestack against the fake server: the identity document, SSH keys decrypted from a real CMS
envelope of a PKCS#12 with openssl, what the Certificates request carried, the private temp
directory, the Ready report, and the platform check failing fast in the real process."""

import base64
import dataclasses
import os
import stat
import subprocess
import sys
import threading

import pytest

from cl_metadata.sources import dhcp
from cl_metadata.errors import FetchError, InvalidMetadata, MetadataError
from cl_metadata.fakeserver.faults import Fault
from cl_metadata.fakeserver.instance import SshKey, load_instance
from cl_metadata.fakeserver.render import azurestack as render
from cl_metadata.providers import _azure_certificates as certificates
from cl_metadata.providers.azurestack import AzureStackProvider

from conftest import make_context, needs_root

SAMPLE = load_instance(None)
ALICE, DEPLOY = (key.key for key in SAMPLE.ssh_keys)
DEPLOY_KEY = " ".join(DEPLOY.split()[:2])  # a certificate carries the key, not its comment
VERSIONS, GOAL_STATE = "/?comp=versions", "/machine/?comp=goalstate"
HEALTH = "/machine/?comp=health"
IDENTITY = "/Microsoft.Compute/identity?api-version=2019-03-11"
CERTIFICATES_PATH = f"/machine/{SAMPLE.uuid}/{SAMPLE.uuid.replace('-', '')}.demo-1"
CERTIFICATES = CERTIFICATES_PATH + "?comp=config&type=certificates&incarnation=1"
CERTIFICATES_SOURCE = "GET <the goal state's Certificates URL>"  # its path holds the VM's ids
PRELUDE = ("import os, sys, cl_metadata.sources.dhcp as d; d.ROOT = os.environ['TEST_DHCP_ROOT']; "
           "from cl_metadata.cli import run; run()")


def rsa_key(seed: int) -> str:
    """An ssh-rsa line with a made-up 2048-bit modulus (a certificate does not need a real key)."""
    modulus = b"\x00" + (bytes([0xC0 + seed]) * 255) + b"\x01"

    def string(value: bytes) -> bytes:
        return len(value).to_bytes(4, "big") + value

    blob = string(b"ssh-rsa") + string(b"\x01\x00\x01") + string(modulus)
    return "ssh-rsa " + base64.b64encode(blob).decode()


def legacy_provider_available() -> bool:
    done = subprocess.run(["openssl", "list", "-providers", "-provider", "legacy"],
                          capture_output=True)
    return done.returncode == 0


@pytest.fixture(autouse=True)
def no_dhcp_lease(tmp_path, monkeypatch):
    monkeypatch.setattr(dhcp, "ROOT", str(tmp_path / "empty-root"))


@pytest.fixture(autouse=True)
def quick_transport_keys(monkeypatch):
    """RSA-1024 transport keys: generated in a fraction of RSA-2048's time. The header test
    and the real processes use the real size."""
    monkeypatch.setattr(certificates, "TRANSPORT_KEY", "rsa:1024")


@pytest.fixture(autouse=True)
def temp_parent(tmp_path, monkeypatch):
    """Where the provider makes its private directory; every test expects it empty after."""
    parent = tmp_path / "temp"
    parent.mkdir()
    monkeypatch.setattr(certificates, "TEMP_PARENT", str(parent))
    yield parent
    assert os.listdir(parent) == []


def azurestack(**platform_data):
    return dataclasses.replace(SAMPLE, platform_data={"azurestack": platform_data})


def provider(server, timeout=5, **http):
    return AzureStackProvider(make_context(server, timeout=timeout, **http))


def seen(server):
    return [(r["method"], r["path"] + ("?" + r["query"] if r["query"] else ""))
            for r in server.requests]


def certificate_text(header_value: str) -> str:
    pem = "-----BEGIN CERTIFICATE-----\n" + header_value + "\n-----END CERTIFICATE-----\n"
    done = subprocess.run(["openssl", "x509", "-noout", "-subject", "-issuer", "-text"],
                          input=pem, capture_output=True, text=True, check=True)
    return done.stdout


# --- hostname ------------------------------------------------------------------------------

def test_hostname_is_the_identity_documents_vm_name(fake_server):
    server = fake_server("azurestack", instance=azurestack(**{"vm-name": "stack-vm-7"}))
    assert provider(server).hostname() == "stack-vm-7"
    assert sorted(seen(server)) == [("GET", VERSIONS), ("GET", IDENTITY)]
    identity = [r for r in server.requests if r["path"] == "/Microsoft.Compute/identity"][0]
    assert identity["headers"]["Metadata"] == "true"


@pytest.mark.parametrize("body, hostname", [
    ('{"vmName": "", "subscriptionId": "s"}', None),
    ('{"vmName": " vm-1 ", "subscriptionId": "s"}', "vm-1"),
])
def test_identity_values(fake_server, body, hostname):
    server = fake_server("azurestack", faults=[Fault(IDENTITY, "malformed", body)])
    assert provider(server).hostname() == hostname


@pytest.mark.parametrize("body, cause", [
    ("", "invalid JSON"),
    ('["vm-1"]', "expected a JSON object"),
    ('{"subscriptionId": "s"}', "'vmName' is missing"),
    ('{"vmName": ["vm-1"]}', "'vmName': expected a string"),
])
def test_malformed_identity_is_an_error(fake_server, body, cause):
    fault = Fault(IDENTITY, "malformed", body) if body else Fault(IDENTITY, "empty")
    server = fake_server("azurestack", faults=[fault])
    with pytest.raises(InvalidMetadata, match=cause) as info:
        provider(server).hostname()
    assert info.value.source == "GET http://169.254.169.254" + IDENTITY


@pytest.mark.parametrize("fault", [Fault(IDENTITY, "status", 404), Fault(IDENTITY, "status", 503),
                                   Fault(IDENTITY, "reset")])
def test_identity_failures_are_errors(fake_server, fault):
    server = fake_server("azurestack", faults=[fault])
    with pytest.raises(FetchError):
        provider(server, timeout=1.5).hostname()


def test_fake_identity_wants_metadata_header_and_api_version(fake_server):
    server = fake_server("azurestack")
    http = make_context(server).http
    with pytest.raises(FetchError) as info:
        http.get(server.url + IDENTITY)
    assert info.value.status == 403
    with pytest.raises(FetchError) as info:
        http.get(server.url + "/Microsoft.Compute/identity", headers={"Metadata": "true"})
    assert info.value.status == 400


# --- keys ----------------------------------------------------------------------------------

def test_keys_are_decrypted_from_the_certificates_endpoint(fake_server):
    server = fake_server("azurestack")
    assert provider(server).ssh_keys() == [DEPLOY_KEY]  # the sample's one RSA key, exactly
    assert sorted(seen(server)) == [("GET", VERSIONS), ("GET", CERTIFICATES), ("GET", GOAL_STATE)]
    assert all(r["status"] == 200 for r in server.requests)


def test_what_the_certificates_request_carried(fake_server, monkeypatch):
    monkeypatch.setattr(certificates, "TRANSPORT_KEY", "rsa:2048")
    server = fake_server("azurestack")
    provider(server).ssh_keys()
    (request,) = [r for r in server.requests if "type=certificates" in r["query"]]
    headers = request["headers"]
    assert headers["x-ms-cipher-name"] == "DES_EDE3_CBC"
    assert headers["x-ms-version"] == "2012-11-30"
    assert headers["x-ms-agent-name"] == "com.coreos.metadata"
    body = headers["x-ms-guest-agent-public-x509-cert"]
    assert "-----" not in body and not any(c.isspace() for c in body)
    text = certificate_text(body)
    assert "subject=CN = LinuxTransport" in text and "issuer=CN = LinuxTransport" in text
    assert "Public Key Algorithm: rsaEncryption" in text and "Public-Key: (2048 bit)" in text


def test_every_request_gets_a_fresh_transport_certificate(fake_server):
    server = fake_server("azurestack")
    provider(server).ssh_keys()
    provider(server).ssh_keys()
    sent = [r["headers"]["x-ms-guest-agent-public-x509-cert"] for r in server.requests
            if "type=certificates" in r["query"]]
    assert len(sent) == 2 and sent[0] != sent[1]


def test_every_rsa_certificate_in_order(fake_server):
    keys = (SshKey("one", rsa_key(1)), SshKey("alice", ALICE), SshKey("two", rsa_key(2)),
            SshKey("deploy", DEPLOY))
    server = fake_server("azurestack", instance=dataclasses.replace(SAMPLE, ssh_keys=keys))
    assert provider(server).ssh_keys() == [rsa_key(1), rsa_key(2), DEPLOY_KEY]


@pytest.mark.skipif(not legacy_provider_available(), reason="OpenSSL's legacy provider missing")
def test_a_legacy_pkcs12_is_read_with_the_legacy_provider(fake_server, caplog):
    caplog.set_level("DEBUG", logger="cl_metadata")
    server = fake_server("azurestack", instance=azurestack(pkcs12="legacy"))
    assert provider(server).ssh_keys() == [DEPLOY_KEY]
    assert "the PKCS#12 needs OpenSSL's legacy provider; retrying with -legacy" in caplog.text


def test_no_certificates_url_is_zero_keys_without_openssl(fake_server, monkeypatch):
    monkeypatch.setattr(certificates, "OPENSSL", "openssl-not-installed-here")
    server = fake_server("azurestack", instance=azurestack(certificates=False))
    assert provider(server).ssh_keys() == []
    assert sorted(seen(server)) == [("GET", VERSIONS), ("GET", GOAL_STATE)]


def test_no_rsa_keys_and_no_data_are_zero_keys(fake_server):
    only_ed25519 = dataclasses.replace(SAMPLE, ssh_keys=SAMPLE.ssh_keys[:1])
    server = fake_server("azurestack", instance=only_ed25519)
    assert provider(server).ssh_keys() == []  # no certificates: no Certificates URL
    assert ("GET", CERTIFICATES) not in seen(server)
    no_data = "<CertificateFile><Data> </Data></CertificateFile>"
    server = fake_server("azurestack", faults=[Fault(CERTIFICATES, "malformed", no_data)])
    assert provider(server).ssh_keys() == []


def test_missing_openssl_is_a_clear_error(fake_server, monkeypatch):
    monkeypatch.setattr(certificates, "OPENSSL", "openssl-not-installed-here")
    server = fake_server("azurestack")
    with pytest.raises(MetadataError, match="the openssl-not-installed-here command, needed to "
                       r"decrypt the platform's certificates, is not installed \(not found in "
                       r"PATH\)"):
        provider(server).ssh_keys()
    assert ("GET", CERTIFICATES) not in seen(server)


def envelope_to_someone_else(tmp_path) -> str:
    """A well-formed CMS envelope for a certificate that is not the agent's."""
    subprocess.run(["openssl", "req", "-x509", "-nodes", "-newkey", "rsa:2048", "-subj", "/CN=x",
                    "-keyout", "other.key", "-out", "other.crt"], cwd=tmp_path,
                   capture_output=True, check=True)
    done = subprocess.run(["openssl", "cms", "-encrypt", "-des3", "-binary", "-outform", "DER",
                           "other.crt"], cwd=tmp_path, input=b"secret", capture_output=True,
                          check=True)
    return base64.b64encode(done.stdout).decode()


@pytest.mark.parametrize("document, cause", [
    ("<CertificateFile><Data>not base64!</Data></CertificateFile>", "Data is not valid base64"),
    ("<CertificateFile><Data>QUJD</Data></CertificateFile>",
     "openssl cms -decrypt of Data failed"),
    ("<CertificateFile><Format>Pkcs7BlobWithPfxContents</Format><Data>{other}</Data>"
     "</CertificateFile>", "openssl cms -decrypt of Data failed"),
    ("<CertificateFile><Format>Pfx</Format><Data>QUJD</Data></CertificateFile>",
     "Format is not Pkcs7BlobWithPfxContents"),
    ("<Certificates><Data>QUJD</Data></Certificates>", "expected a CertificateFile document"),
    ("<CertificateFile><Data>", "invalid XML"),
    ('<!DOCTYPE x [<!ENTITY d "QUJD">]><CertificateFile><Data>&d;</Data></CertificateFile>',
     "DOCTYPE or ENTITY declaration refused"),
])
def test_malformed_certificates_are_errors_naming_the_source(fake_server, tmp_path, document,
                                                             cause):
    if "{other}" in document:
        document = document.format(other=envelope_to_someone_else(tmp_path))
    server = fake_server("azurestack", faults=[Fault(CERTIFICATES, "malformed", document)])
    with pytest.raises(InvalidMetadata, match=cause) as info:
        provider(server).ssh_keys()
    assert info.value.source == CERTIFICATES_SOURCE
    assert "secret" not in str(info.value)


def test_an_envelope_without_a_pkcs12_inside_is_an_error(fake_server, monkeypatch):
    monkeypatch.setattr(render, "pkcs12_of", lambda keys, legacy: b"not a PKCS#12")
    server = fake_server("azurestack")
    with pytest.raises(InvalidMetadata, match=r"openssl pkcs12 of the decrypted Data failed \(")\
            as info:
        provider(server).ssh_keys()
    assert info.value.source == CERTIFICATES_SOURCE


@pytest.mark.parametrize("fault", [Fault(CERTIFICATES, "status", 404),
                                   Fault(CERTIFICATES, "reset"),
                                   Fault(CERTIFICATES, "status", 503)])
def test_certificates_endpoint_failures_are_errors(fake_server, fault):
    server = fake_server("azurestack", faults=[fault])
    with pytest.raises(FetchError):
        provider(server, timeout=1.5).ssh_keys()


def test_an_empty_certificates_document_is_invalid(fake_server):
    server = fake_server("azurestack", faults=[Fault(CERTIFICATES, "empty")])
    with pytest.raises(InvalidMetadata, match="invalid XML") as info:
        provider(server).ssh_keys()
    assert info.value.source == CERTIFICATES_SOURCE


def test_a_certificates_url_off_the_wireserver_is_refused(fake_server):
    goal_state = ("<GoalState><Incarnation>1</Incarnation><Container><ContainerId>c</ContainerId>"
                  "<RoleInstanceList><RoleInstance><InstanceId>i</InstanceId><Configuration>"
                  "<Certificates>http://192.0.2.1/machine/c/i?comp=certificates</Certificates>"
                  "</Configuration></RoleInstance></RoleInstanceList></Container></GoalState>")
    server = fake_server("azurestack", faults=[Fault(GOAL_STATE, "malformed", goal_state)])
    with pytest.raises(InvalidMetadata, match="Certificates URL is not on the WireServer's"):
        provider(server).ssh_keys()
    assert sorted(seen(server)) == [("GET", VERSIONS), ("GET", GOAL_STATE)]


def test_an_unusable_temp_directory_is_a_clear_error(fake_server, monkeypatch, tmp_path):
    monkeypatch.setattr(certificates, "TEMP_PARENT", str(tmp_path / "missing"))
    server = fake_server("azurestack")
    with pytest.raises(MetadataError, match="cannot make a private temporary directory for the "
                       "certificates: No such file or directory"):
        provider(server).ssh_keys()


def test_openssl_runs_in_a_private_directory_without_a_shell(fake_server, monkeypatch,
                                                             temp_parent):
    calls = []
    real_run = subprocess.run

    def spy(arguments, **options):
        if threading.current_thread() is not threading.main_thread():
            return real_run(arguments, **options)  # the fake server's own openssl calls
        directory = options["cwd"]
        key = os.path.join(directory, certificates.KEY)
        calls.append({"arguments": arguments, "shell": options.get("shell", False),
                      "directory": os.path.dirname(directory),
                      "mode": stat.S_IMODE(os.stat(directory).st_mode),
                      "key mode": stat.S_IMODE(os.stat(key).st_mode) if os.path.exists(key)
                      else None})
        return real_run(arguments, **options)

    monkeypatch.setattr(certificates.subprocess, "run", spy)
    server = fake_server("azurestack")
    assert provider(server).ssh_keys() == [DEPLOY_KEY]
    assert [c["arguments"][1] for c in calls] == ["req", "cms", "pkcs12"]
    assert all(not c["shell"] and c["directory"] == str(temp_parent) and c["mode"] == 0o700
               for c in calls)
    assert [c["key mode"] for c in calls] == [None, 0o600, 0o600]
    assert "-nokeys" in calls[2]["arguments"]  # the PKCS#12's own private keys stay sealed


def test_the_private_directory_is_removed_when_decryption_fails(fake_server, temp_parent):
    server = fake_server("azurestack", faults=[Fault(
        CERTIFICATES, "malformed", "<CertificateFile><Data>QUJD</Data></CertificateFile>")])
    with pytest.raises(InvalidMetadata):
        provider(server).ssh_keys()
    assert os.listdir(temp_parent) == []


def test_fake_certificates_endpoint_wants_its_headers(fake_server):
    server = fake_server("azurestack")
    http = make_context(server).http
    wireserver = {"x-ms-version": "2012-11-30", "x-ms-agent-name": "test"}
    for headers, status in [(wireserver, 403),
                            ({**wireserver, "x-ms-cipher-name": "DES_EDE3_CBC"}, 403),
                            ({**wireserver, "x-ms-cipher-name": "DES_EDE3_CBC",
                              "x-ms-guest-agent-public-x509-cert": "QUJD"}, 400)]:
        with pytest.raises(FetchError) as info:
            http.request("GET", server.url + CERTIFICATES, headers=headers)
        assert info.value.status == status


def test_ssh_rsa_line_of_a_non_rsa_certificate_is_none(tmp_path):
    subprocess.run(["openssl", "req", "-x509", "-nodes", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-subj", "/CN=x", "-keyout", "k", "-outform",
                    "DER", "-out", "c.der"], cwd=tmp_path, capture_output=True, check=True)
    der = (tmp_path / "c.der").read_bytes()
    assert certificates.ssh_rsa_line(der) is None
    for broken in (der[:-1], der + b"\x00", b"\x30\x81\x05" + der[3:8]):
        with pytest.raises(ValueError):
            certificates.ssh_rsa_line(broken)


# --- attributes, check-in, the platform check ------------------------------------------------

def test_no_attributes_but_the_platform_is_checked(fake_server):
    server = fake_server("azurestack")
    assert provider(server).attributes() == {}
    assert seen(server) == [("GET", VERSIONS)]


def test_check_in_sends_the_ready_report(fake_server):
    server = fake_server("azurestack", instance=azurestack(incarnation="3"))
    provider(server).check_in()
    assert seen(server)[-1] == ("POST", HEALTH)
    post = server.requests[-1]
    assert post["status"] == 200  # the fake server checked incarnation, ids and Ready
    assert post["headers"]["Content-Type"] == "text/xml; charset=utf-8"
    assert "<GoalStateIncarnation>3</GoalStateIncarnation>" in post["body"]
    assert "<State>Ready</State>" in post["body"]


@pytest.mark.parametrize("part", ["attributes", "hostname", "ssh_keys", "check_in"])
def test_versions_without_2012_11_30_fail_every_part(fake_server, part):
    server = fake_server("azurestack", instance=azurestack(versions=["2015-04-05"]))
    with pytest.raises(MetadataError, match="does not list version 2012-11-30") as info:
        getattr(provider(server), part)()
    assert info.value.source == "GET http://168.63.129.16/?comp=versions"
    assert not any("certificates" in query or method == "POST" for method, query in seen(server))


def run_process(server, tmp_path, agent_env, *arguments):
    agent_env.update(CL_METADATA_ENDPOINT=server.url, TEST_DHCP_ROOT=str(tmp_path / "none"),
                     TMPDIR=str(tmp_path / "temp"))  # checked empty afterwards (temp_parent)
    return subprocess.run([sys.executable, "-c", PRELUDE, "--provider", "azurestack",
                           *map(str, arguments)], env=agent_env, capture_output=True,
                          text=True, timeout=60)


def test_a_server_without_the_versions_endpoint_fails_fast_real_process(fake_server, agent_env,
                                                                         tmp_path):
    server = fake_server("azurestack", faults=[Fault("/", "status", 404)])
    hostname = tmp_path / "hostname"
    result = run_process(server, tmp_path, agent_env, "--hostname", hostname, "--check-in")
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines()
              if line.startswith("cl-metadata: error:")]
    assert len(errors) == 1 and errors[0].startswith("cl-metadata: error: azurestack: GET http")
    assert errors[0].endswith("/?comp=versions: HTTP 404")
    assert seen(server).count(("GET", VERSIONS)) == 1  # a 404 is not retried
    assert not any(method == "POST" for method, _ in seen(server))
    assert not hostname.exists()


def test_end_to_end_real_process(fake_server, agent_env, tmp_path):
    server = fake_server("azurestack")
    attributes, hostname = tmp_path / "attributes", tmp_path / "hostname"
    result = run_process(server, tmp_path, agent_env, "--attributes", attributes,
                         "--hostname", hostname, "--check-in")
    assert result.returncode == 0, result.stderr
    assert attributes.read_text() == ""
    assert hostname.read_text() == "demo-1.example.internal\n"
    assert [(r["method"], r["path"], r["status"]) for r in server.requests
            if r["method"] == "POST"] == [("POST", "/machine/", 200)]


@needs_root
def test_real_process_writes_the_decrypted_key(fake_server, agent_env, tmp_path, throwaway_user):
    server = fake_server("azurestack")
    result = run_process(server, tmp_path, agent_env, "--ssh-keys", throwaway_user.pw_name)
    assert result.returncode == 0, result.stderr
    fragment = os.path.join(throwaway_user.pw_dir, ".ssh/authorized_keys.d/cl-metadata")
    with open(fragment) as f:
        assert f.read() == DEPLOY_KEY + "\n"
