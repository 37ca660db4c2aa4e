"""cl-metadata-import-image against a loopback release channel and throwaway signing keys.

The channel is served on 127.0.0.1 over plain http (``--allow-http``): ``current/version.txt``,
and ``<version>/`` with the release's ``version.txt``, the compressed image and its detached
signature, made in the test with a key generated into a temporary GNUPGHOME.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import http.server
import json
import lzma
import os
import random
import re
import shutil
import socket
import ssl
import stat
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import pytest

from cl_metadata.imageimport.errors import ImageImportError
from cl_metadata.imageimport.signature import parse_status

pytestmark = pytest.mark.skipif(shutil.which("gpg") is None or shutil.which("gpgv") is None,
                                reason="gpg and gpgv are not installed (tests/setup-system-deps)")

PROG = "cl-metadata-import-image"
VERSION = "3815.2.0"
IMAGE = "flatcar_production_openstack_image.img.bz2"
UNPACKED = "flatcar_production_openstack_image.img"
# A tiny "qcow2" image: the magic, then incompressible bytes so a download can stop halfway.
IMAGE_BYTES = b"QFI\xfb" + random.Random(14).randbytes(200_000)
VERSION_TXT = (f"FLATCAR_BUILD=3815\nFLATCAR_BRANCH=2\nFLATCAR_PATCH=0\n"
               f"FLATCAR_VERSION={VERSION}\nFLATCAR_VERSION_ID={VERSION}\n"
               f"FLATCAR_BUILD_ID=\"2024-01-01-0000\"\n").encode()


# --- throwaway keys ---------------------------------------------------------------------------

class Keys:
    """Two signing keys in a temporary GNUPGHOME: ``good`` signs releases, ``other`` does not."""

    def __init__(self, home: str):
        self.home = home
        self.env = {"GNUPGHOME": home, "PATH": os.environ["PATH"], "LC_ALL": "C"}
        self.fingerprints = {name: self._generate(name) for name in ("good", "other")}

    def gpg(self, *args: str, data: Optional[bytes] = None) -> bytes:
        result = subprocess.run(["gpg", "--batch", "--quiet", *args], input=data,
                                capture_output=True, env=self.env, timeout=60)
        assert result.returncode == 0, result.stderr.decode()
        return result.stdout

    def _generate(self, name: str) -> str:
        uid = f"{name} image signing <{name}@example.test>"
        self.gpg("--passphrase", "", "--quick-gen-key", uid, "ed25519", "sign", "never")
        listing = self.gpg("--with-colons", "--list-keys", f"<{name}@example.test>").decode()
        return re.search(r"^fpr:+([0-9A-F]{40}):", listing, re.M).group(1)

    def sign(self, data: bytes, name: str = "good") -> bytes:
        return self.gpg("--local-user", self.fingerprints[name], "--detach-sign", data=data)

    def keyring(self, path: Path, name: str = "good", armor: bool = False) -> Path:
        path.write_bytes(self.gpg(*(["--armor"] if armor else []), "--export",
                                  self.fingerprints[name]))
        return path


@pytest.fixture(scope="module")
def keys():
    home = tempfile.mkdtemp(prefix="clm-gpg-", dir="/tmp")  # short: gpg-agent's socket path
    os.chmod(home, 0o700)
    try:
        yield Keys(home)
    finally:
        subprocess.run(["gpgconf", "--kill", "all"], env={"GNUPGHOME": home,
                       "PATH": os.environ["PATH"]}, capture_output=True, timeout=30)
        shutil.rmtree(home, ignore_errors=True)


# --- the loopback channel ---------------------------------------------------------------------

class Channel:
    """A release channel on 127.0.0.1 that records every request and its Range header."""

    def __init__(self, tls: Optional[Tuple[Path, Path]] = None):
        self.files: Dict[str, bytes] = {}
        self.redirects: Dict[str, str] = {}
        self.drop_after: Dict[str, int] = {}  # path → bytes sent before the connection drops
        self.trickle: Dict[str, int] = {}  # path → bytes sent before it slows to a trickle
        self.requests: List[Tuple[str, Optional[str]]] = []
        self.released = threading.Event()
        channel = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                channel.requests.append((self.path, self.headers.get("Range")))
                if self.path in channel.redirects:
                    self.send_response(302)
                    self.send_header("Location", channel.redirects[self.path])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = channel.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                start = 0
                match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
                if match and int(match.group(1)) < len(body):
                    start = int(match.group(1))
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                if self.path in channel.drop_after:
                    self.wfile.write(body[start:start + channel.drop_after.pop(self.path)])
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                if self.path in channel.trickle:
                    sent = start + channel.trickle[self.path]
                    self.wfile.write(body[start:sent])
                    self.wfile.flush()
                    # then one byte every 0.2 s: no read timeout ever fires
                    while sent < len(body) and not channel.released.wait(0.2):
                        self.wfile.write(body[sent:sent + 1])
                        self.wfile.flush()
                        sent += 1
                    self.close_connection = True
                    return
                self.wfile.write(body[start:])

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        if tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.base = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def publish(self, keys: Keys, image: bytes = IMAGE_BYTES, name: str = IMAGE,
                compress=bz2.compress, signer: str = "good") -> bytes:
        """The release: both version files, the compressed image and its signature."""
        packed = compress(image)
        self.files["/amd64-usr/current/version.txt"] = VERSION_TXT
        self.files[f"/amd64-usr/{VERSION}/version.txt"] = VERSION_TXT
        self.files[f"/amd64-usr/{VERSION}/{name}"] = packed
        self.files[f"/amd64-usr/{VERSION}/{name}.sig"] = keys.sign(packed, signer)
        return packed

    def paths(self) -> List[str]:
        return [path for path, _ in self.requests]

    def stop(self):
        self.released.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def channel():
    server = Channel()
    yield server
    server.stop()


@pytest.fixture
def out(tmp_path) -> Path:
    directory = tmp_path / "out"
    directory.mkdir()
    return directory


def run_import(channel: Channel, keyring: Path, out: Path, *extra: str, image: str = IMAGE,
               channel_url: Optional[str] = None, allow_http: bool = True, timeout: float = 60):
    args = [sys.executable, "-m", "cl_metadata.imageimport",
            channel_url or f"{channel.base}/amd64-usr/current/", image,
            "--keyring", str(keyring), "--output-dir", str(out),
            *(["--allow-http"] if allow_http else []), *extra]
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, LC_ALL="C.UTF-8"))


def assert_refused(result, cause: str, out: Path, *, status: int = 1,
                   kept: Tuple[str, ...] = ()) -> None:
    """One error line naming ``cause``, the exit status, and nothing in ``out`` but ``kept``."""
    assert result.returncode == status, result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"{PROG}: error: ") and cause in lines[0], lines[0]
    assert sorted(os.listdir(out)) == sorted(kept)


# --- accepted ---------------------------------------------------------------------------------

def test_good_image_is_imported_with_exact_labels_and_command(keys, channel, out, tmp_path):
    packed = channel.publish(keys)
    keyring = keys.keyring(tmp_path / "keyring.gpg")
    result = run_import(channel, keyring, out, "--fingerprint", keys.fingerprints["good"])
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert sorted(os.listdir(out)) == [UNPACKED, f"{UNPACKED}.labels.json"]
    image = out / UNPACKED
    assert image.read_bytes() == IMAGE_BYTES
    assert stat.S_IMODE(image.stat().st_mode) == 0o644
    sha256 = hashlib.sha256(IMAGE_BYTES).hexdigest()
    channel_url = f"{channel.base}/amd64-usr/current/"
    source = f"{channel.base}/amd64-usr/{VERSION}/{IMAGE}"
    fpr = keys.fingerprints["good"]
    assert (out / f"{UNPACKED}.labels.json").read_text() == (
        "{\n"
        f'  "channel": "{channel_url}",\n'
        '  "disk_format": "qcow2",\n'
        f'  "image": "{UNPACKED}",\n'
        f'  "sha256": "{sha256}",\n'
        f'  "signer_fingerprint": "{fpr}",\n'
        f'  "size": {len(IMAGE_BYTES)},\n'
        f'  "source": "{source}",\n'
        f'  "version": "{VERSION}"\n'
        "}\n")
    assert stat.S_IMODE((out / f"{UNPACKED}.labels.json").stat().st_mode) == 0o644
    assert result.stdout == (
        f"openstack image create --disk-format qcow2 --container-format bare --file {image} "
        f"--property os_distro=flatcar --property os_version={VERSION} "
        f"--property cl_channel={channel_url} --property cl_sha256={sha256} "
        f"--property cl_signer_fingerprint={fpr} flatcar-{VERSION}\n")
    # current/ names the release; everything else comes from the release's own directory
    assert channel.requests == [
        ("/amd64-usr/current/version.txt", None), (f"/amd64-usr/{VERSION}/version.txt", None),
        (f"/amd64-usr/{VERSION}/{IMAGE}.sig", None), (f"/amd64-usr/{VERSION}/{IMAGE}", None)]
    assert len(packed) < len(IMAGE_BYTES) + 2000


@pytest.mark.parametrize("suffix,compress", [
    (".gz", gzip.compress), (".xz", lzma.compress), ("", lambda data: data),
    (".zst", None)])
def test_other_compressions_are_unpacked(keys, channel, out, tmp_path, suffix, compress):
    if compress is None:
        if shutil.which("zstd") is None:
            pytest.skip("no zstd command")
        compress = (lambda data: subprocess.run(["zstd", "-q", "-c"], input=data,
                                                capture_output=True, check=True).stdout)
    name = f"flatcar_production_openstack_image.img{suffix}"
    channel.publish(keys, name=name, compress=compress)
    result = run_import(channel, keys.keyring(tmp_path / "k.gpg"), out, image=name)
    assert result.returncode == 0, result.stderr
    assert (out / UNPACKED).read_bytes() == IMAGE_BYTES
    labels = json.loads((out / f"{UNPACKED}.labels.json").read_text())
    assert labels["sha256"] == hashlib.sha256(IMAGE_BYTES).hexdigest()


def test_ascii_armored_keyring_is_accepted(keys, channel, out, tmp_path):
    channel.publish(keys)
    result = run_import(channel, keys.keyring(tmp_path / "k.asc", armor=True), out)
    assert result.returncode == 0, result.stderr
    assert (out / UNPACKED).read_bytes() == IMAGE_BYTES


def test_same_origin_redirect_is_followed(keys, channel, out, tmp_path):
    channel.publish(keys)
    mirror = f"/mirror/{IMAGE}"
    channel.files[mirror] = channel.files.pop(f"/amd64-usr/{VERSION}/{IMAGE}")
    channel.redirects[f"/amd64-usr/{VERSION}/{IMAGE}"] = mirror
    result = run_import(channel, keys.keyring(tmp_path / "k.gpg"), out)
    assert result.returncode == 0, result.stderr
    assert channel.paths()[-1] == mirror


def test_an_older_image_is_replaced_whole(keys, channel, out, tmp_path):
    (out / UNPACKED).write_bytes(b"the previous release")
    channel.publish(keys)
    result = run_import(channel, keys.keyring(tmp_path / "k.gpg"), out)
    assert result.returncode == 0, result.stderr
    assert (out / UNPACKED).read_bytes() == IMAGE_BYTES
    assert sorted(os.listdir(out)) == [UNPACKED, f"{UNPACKED}.labels.json"]


def test_release_flag_imports_that_release_without_reading_current(keys, channel, out,
                                                                   tmp_path):
    channel.publish(keys)
    del channel.files["/amd64-usr/current/version.txt"]
    result = run_import(channel, keys.keyring(tmp_path / "k.gpg"), out, "--release", VERSION)
    assert result.returncode == 0, result.stderr
    assert channel.paths()[0] == f"/amd64-usr/{VERSION}/version.txt"
    assert (out / UNPACKED).read_bytes() == IMAGE_BYTES


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> Tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key."""
    if shutil.which("openssl") is None:
        pytest.skip("no openssl command")
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1", "-subj",
                    "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)],
                   capture_output=True, check=True, timeout=60)
    return cert, key


def test_https_channel_with_its_ca_bundle(keys, certificate, out, tmp_path):
    server = Channel(tls=certificate)
    try:
        server.publish(keys)
        keyring = keys.keyring(tmp_path / "k.gpg")
        refused = run_import(server, keyring, out, allow_http=False)
        assert_refused(refused, "TLS verification failed", out)
        result = run_import(server, keyring, out, "--ca-bundle", str(certificate[0]),
                            allow_http=False)
        assert result.returncode == 0, result.stderr
        assert (out / UNPACKED).read_bytes() == IMAGE_BYTES
    finally:
        server.stop()


# --- refused ----------------------------------------------------------------------------------

def test_tampered_image_is_refused(keys, channel, out, tmp_path):
    packed = channel.publish(keys)
    tampered = bytearray(packed)
    tampered[len(tampered) // 2] ^= 0x01
    channel.files[f"/amd64-usr/{VERSION}/{IMAGE}"] = bytes(tampered)
    result = run_import(channel, keys.keyring(tmp_path / "k.gpg"), out)
    assert_refused(result, "signature: bad signature", out)


def test_image_truncated_on_the_server_is_refused(keys, channel, out, tmp_path):
    packed = channel.publish(keys)
    channel.files[f"/amd64-usr/{VERSION}/{IMAGE}"] = packed[:len(packed) // 2]
    result = run_import(channel, keys.keyring(tmp_path / "k.gpg"), out)
    assert_refused(result, "signature: bad signature", out)


@pytest.mark.parametrize("current,release,cause", [
    # the two names of the version disagree
    (b"FLATCAR_VERSION=3815.2.0\nFLATCAR_VERSION_ID=3815.2.1\n", None, "disagree"),
    # shell syntax is refused, never run
    (b"FLATCAR_VERSION=$(touch /tmp/pwned)\n", None, "not a plain value"),
    # a version that would walk out of the channel
    (b"FLATCAR_VERSION=../../etc\n", None, "not of the form"),
    (b"FLATCAR_BUILD=3815\n", None, "no FLATCAR_VERSION_ID"),
    # current/ names a release whose own version file names another one
    (VERSION_TXT, VERSION_TXT.replace(b"3815.2.0", b"3815.1.0"), "names another release"),
])
def test_tampered_version_file_is_refused(keys, channel, out, tmp_path, current, release,
                                          cause):
    channel.publish(keys)
    channel.files["/amd64-usr/current/version.txt"] = current
    if release is not None:
        channel.files[f"/amd64-usr/{VERSION}/version.txt"] = release
    result = run_import(channel, keys.keyring(tmp_path / "k.gpg"), out)
    assert_refused(result, cause, out)
    assert "pwned" not in result.stderr and not os.path.exists("/tmp/pwned")
    assert not [p for p in channel.paths() if p.endswith((IMAGE, ".sig"))]


def test_signature_by_a_key_not_in_the_keyring_is_refused(keys, channel, out, tmp_path):
    channel.publish(keys, signer="other")
    result = run_import(channel, keys.keyring(tmp_path / "k.gpg"), out)
    assert_refused(result, "signature: no key in the keyring made this signature", out)


def test_signature_by_another_key_of_the_keyring_than_fingerprint_is_refused(
        keys, channel, out, tmp_path):
    channel.publish(keys)
    keyring = tmp_path / "both.gpg"
    keyring.write_bytes(keys.gpg("--export", *keys.fingerprints.values()))
    result = run_import(channel, keyring, out, "--fingerprint", keys.fingerprints["other"])
    assert_refused(result, "signature: the signing key is not the one --fingerprint names",
                   out)


def test_redirect_to_another_host_is_refused_without_following_it(keys, channel, out,
                                                                   tmp_path):
    channel.publish(keys)
    elsewhere = f"http://localhost:{channel.port}/elsewhere/{IMAGE}"
    channel.redirects[f"/amd64-usr/{VERSION}/{IMAGE}"] = elsewhere
    result = run_import(channel, keys.keyring(tmp_path / "k.gpg"), out)
    assert_refused(result, f"GET {channel.base}/amd64-usr/{VERSION}/{IMAGE}: "
                           "redirect to another origin refused", out)
    assert "/elsewhere/" + IMAGE not in channel.paths()


def test_oversize_download_is_refused_before_reading_it(keys, channel, out, tmp_path):
    packed = channel.publish(keys)
    result = run_import(channel, keys.keyring(tmp_path / "k.gpg"), out,
                        "--max-download-size", str(len(packed) - 1))
    assert_refused(result, f"larger than {len(packed) - 1} bytes", out)


def test_oversize_decompressed_image_is_refused(keys, channel, out, tmp_path):
    channel.publish(keys)
    limit = len(IMAGE_BYTES) - 1
    result = run_import(channel, keys.keyring(tmp_path / "k.gpg"), out,
                        "--max-image-size", str(limit))
    assert_refused(result, f"unpacking: the image is larger than {limit} bytes", out)


def test_plain_http_needs_the_explicit_flag(keys, channel, out, tmp_path):
    channel.publish(keys)
    result = run_import(channel, keys.keyring(tmp_path / "k.gpg"), out, allow_http=False)
    assert_refused(result, "plain http refused", out)
    assert channel.requests == []


def test_dropped_download_keeps_its_part_and_the_next_run_resumes_it(keys, channel, out,
                                                                     tmp_path):
    packed = channel.publish(keys)
    path = f"/amd64-usr/{VERSION}/{IMAGE}"
    half = len(packed) // 2
    channel.drop_after[path] = half
    keyring = keys.keyring(tmp_path / "k.gpg")
    partial = f".{IMAGE}.{VERSION}.partial"
    first = run_import(channel, keyring, out)
    assert_refused(first, "connection closed mid-response", out, kept=(partial,))
    assert "run again to resume" in first.stderr
    assert (out / partial).read_bytes() == packed[:half]
    assert stat.S_IMODE((out / partial).stat().st_mode) == 0o600

    second = run_import(channel, keyring, out)
    assert second.returncode == 0, second.stderr
    assert channel.requests[-1] == (path, f"bytes={half}-")
    assert sorted(os.listdir(out)) == [UNPACKED, f"{UNPACKED}.labels.json"]
    assert (out / UNPACKED).read_bytes() == IMAGE_BYTES


def test_a_trickling_server_ends_at_the_deadline(keys, channel, out, tmp_path):
    packed = channel.publish(keys)
    channel.trickle[f"/amd64-usr/{VERSION}/{IMAGE}"] = len(packed) // 3
    started = time.monotonic()
    result = run_import(channel, keys.keyring(tmp_path / "k.gpg"), out, "--timeout", "2")
    elapsed = time.monotonic() - started
    assert_refused(result, "deadline of 2 s exceeded", out,
                   kept=(f".{IMAGE}.{VERSION}.partial",))
    # a byte arrives every 0.2 s, so no read timeout fires, and the trickle would last
    # minutes: only the deadline's watchdog ends the download this soon
    assert elapsed < 15, elapsed


# --- gpgv's verdict ---------------------------------------------------------------------------

FPR = "A" * 40
VALIDSIG = f"[GNUPG:] VALIDSIG {FPR} 2024-01-01 1704067200 0 4 0 22 10 00 {FPR}"


def test_status_lines_decide_not_the_exit_status():
    good = f"[GNUPG:] NEWSIG\n[GNUPG:] GOODSIG AAAAAAAA x\n{VALIDSIG}\n"
    assert parse_status(good, 0) == (FPR, FPR)
    with pytest.raises(ImageImportError, match="not verified"):
        parse_status("[GNUPG:] NEWSIG\n", 0)  # exit 0 but no good signature
    with pytest.raises(ImageImportError, match="bad signature"):
        parse_status(good + "[GNUPG:] NEWSIG\n[GNUPG:] BADSIG BBBBBBBB y\n", 0)
    with pytest.raises(ImageImportError, match="expected one signature, found 2"):
        parse_status(good + good, 0)
    with pytest.raises(ImageImportError, match="not verified"):
        parse_status(good, 1)
