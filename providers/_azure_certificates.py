"""The WireServer's ``Certificates`` document as SSH keys: a throw-away transport certificate,
the fabric's CMS envelope, the PKCS#12 inside it, one ``ssh-rsa`` line per RSA certificate.

Protocol (docs/protocols.md "azurestack", docs/attributes.md): the request carries
``x-ms-cipher-name: DES_EDE3_CBC`` and ``x-ms-guest-agent-public-x509-cert``, the PEM body
(BEGIN/END lines removed, lines joined) of a self-signed RSA-2048 certificate, CN=LinuxTransport,
made for this one request. The answer is a ``CertificateFile`` whose ``Data`` is the base64 of a
CMS EnvelopedData (DES-EDE3-CBC content, RSA key transport) to that certificate, holding a
PKCS#12 with an empty password. No ``Data`` means no certificates (as the Azure agent reads it).
Every RSA certificate in the PKCS#12 gives one key, in PKCS#12 order, without a comment (upstream
took only the certificate of the PKCS#12's private key); other key types are skipped with a
warning.

Decryption runs the ``openssl`` command (on every image; no Python crypto dependency), with
argument lists and no shell, bounded by the run's deadline, inside a private 0700 temp directory
(umask 077) removed on every path. The transport key is written there by openssl only: Python
never reads it and nothing logs it. OpenSSL 3.0 (Debian 12) has DES-EDE3-CBC and the PKCS#12 KDF
and MAC in its default provider; a PKCS#12 made the old Windows way (certificates under RC2-40)
needs the legacy provider, so a ``pkcs12`` run failing with "unsupported" is retried once with
``-legacy`` (OpenSSL 1.1 reads such files directly and never gets there). ``-nokeys``: private
keys in the PKCS#12 are never decrypted.

Public key to ``ssh-rsa`` in Python: a small strict DER reader walks each certificate to its
SubjectPublicKeyInfo, whose RSA INTEGER contents already are SSH mpints. Chosen over ``ssh-keygen
-i -m PKCS8`` because it needs no second tool (ssh-keygen is not on every image or initrd), no
process per certificate and no parsing of a tool's text output.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import re
import shutil
import struct
import subprocess
import tempfile
from typing import Dict, List, Optional, Tuple

from cl_metadata.sources.deadline import Deadline
from cl_metadata.errors import InvalidMetadata, MetadataError
from cl_metadata.providers import azure_wireserver as fabric

log = logging.getLogger("cl_metadata")

OPENSSL = "openssl"  # looked up in PATH
TEMP_PARENT: Optional[str] = None  # None: the system's temp directory (TMPDIR, else /tmp)
CIPHER = "DES_EDE3_CBC"
TRANSPORT_KEY = "rsa:2048"  # what the fabric expects (tests make faster, smaller ones)
FORMAT = "Pkcs7BlobWithPfxContents"
KEY, CERTIFICATE = "transport.key", "transport.crt"  # inside the private directory
RSA_ENCRYPTION = bytes.fromhex("2a864886f70d010101")  # OID 1.2.840.113549.1.1.1
_PEM = re.compile(rb"-----BEGIN CERTIFICATE-----(.*?)-----END CERTIFICATE-----", re.S)
_ERROR_LINE = re.compile(r"[0-9A-Fa-f]+:error:[0-9A-Fa-f]+:[^:]*:[^:]*:([^:]*):")


class Transport:
    """One request's throw-away key pair and the private directory it lives in (a context
    manager: the directory is gone when the block is left, however it is left)."""

    def __init__(self, deadline: Deadline):
        self._deadline = deadline
        self._openssl = ""
        self._directory: Optional[str] = None
        self.headers: Dict[str, str] = {}

    def __enter__(self) -> Transport:
        found = shutil.which(OPENSSL)
        if found is None:
            raise MetadataError(f"the {OPENSSL} command, needed to decrypt the platform's "
                                "certificates, is not installed (not found in PATH)")
        self._openssl = found
        try:
            self._directory = tempfile.mkdtemp(prefix="cl-metadata-certificates-",
                                               dir=TEMP_PARENT)
        except OSError as err:
            raise MetadataError("cannot make a private temporary directory for the "
                                f"certificates: {err.strerror}") from None
        try:
            generate = ["req", "-x509", "-nodes", "-newkey", TRANSPORT_KEY, "-days", "365",
                        "-subj", "/CN=LinuxTransport", "-keyout", KEY, "-out", CERTIFICATE]
            _output(self._run(generate), "req (the transport certificate)", None, MetadataError)
            with open(os.path.join(self._directory, CERTIFICATE), "rb") as pem:
                body = b"".join(line.strip() for line in pem if not line.startswith(b"-----"))
        except BaseException:
            self.close()
            raise
        self.headers = {"x-ms-cipher-name": CIPHER,
                        "x-ms-guest-agent-public-x509-cert": body.decode("ascii")}
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._directory is not None:
            shutil.rmtree(self._directory, ignore_errors=True)
            self._directory = None

    def ssh_keys(self, body: bytes, source: str) -> List[str]:
        """The ``ssh-rsa`` lines of a ``CertificateFile`` answered to ``self.headers``."""
        envelope = parse_certificate_file(body, source)
        if envelope is None:
            return []
        pkcs12 = _output(self._run(["cms", "-decrypt", "-inform", "DER", "-binary", "-inkey", KEY,
                                    "-recip", CERTIFICATE], envelope, source),
                         "cms -decrypt of Data", source)
        unpack = ["pkcs12", "-nokeys", "-passin", "pass:"]
        done = self._run(unpack, pkcs12, source)
        if done.returncode != 0 and "unsupported" in _diagnose(done.stderr)[1]:
            log.debug("%s: the PKCS#12 needs OpenSSL's legacy provider; retrying with -legacy",
                      source)
            done = self._run(unpack + ["-legacy"], pkcs12, source)
        keys = []
        pem = _output(done, "pkcs12 of the decrypted Data", source)
        for number, der in enumerate(pem_certificates(pem, source), start=1):
            try:
                line = ssh_rsa_line(der)
            except ValueError as err:
                raise InvalidMetadata(f"certificate #{number}: {err}", source=source) from None
            if line is None:
                log.warning("%s: certificate #%d holds no RSA key; skipped", source, number)
            else:
                keys.append(line)
        return keys

    def _run(self, arguments: List[str], data: bytes = b"",
             source: Optional[str] = None) -> subprocess.CompletedProcess:
        """openssl with ``arguments`` in the private directory, within the run's deadline."""
        if self._deadline.expired():
            raise MetadataError(f"deadline of {self._deadline.total:g} s exceeded before "
                                f"openssl {arguments[0]}", source=source)
        try:
            return subprocess.run([self._openssl, *arguments], input=data, capture_output=True,
                                  cwd=self._directory, umask=0o077, check=False,
                                  timeout=self._deadline.remaining())
        except subprocess.TimeoutExpired:
            raise MetadataError(f"openssl {arguments[0]} did not finish within the run's "
                                "deadline", source=source) from None
        except OSError as err:
            raise MetadataError(f"openssl could not be run: {err.strerror}",
                                source=source) from None


def _output(done: subprocess.CompletedProcess, what: str, source: Optional[str],
            error: type = InvalidMetadata) -> bytes:
    """openssl's standard output, or ``error`` saying what failed (openssl's words, no data)."""
    if done.returncode == 0:
        return done.stdout
    message, reasons = _diagnose(done.stderr)
    cause = ": ".join(p for p in (message, reasons[0] if reasons else None) if p)
    raise error(f"openssl {what} failed ({cause or f'exit status {done.returncode}'})",
                source=source)


def parse_certificate_file(body: bytes, source: str) -> Optional[bytes]:
    """The DER CMS envelope in a ``CertificateFile``; None when it holds no ``Data``."""
    root = fabric.parse_xml(body, source)
    if root.tag != "CertificateFile":
        raise InvalidMetadata("expected a CertificateFile document", source=source)
    if (root.findtext("Format") or FORMAT).strip() != FORMAT:
        raise InvalidMetadata(f"Format is not {FORMAT}", source=source)
    data = "".join((root.findtext("Data") or "").split())
    if not data:
        return None
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidMetadata("Data is not valid base64", source=source) from None


def pem_certificates(pem: bytes, source: str) -> List[bytes]:
    try:
        return [base64.b64decode(b"".join(m.group(1).split()), validate=True)
                for m in _PEM.finditer(pem)]
    except (binascii.Error, ValueError):
        raise InvalidMetadata("openssl pkcs12 printed an unreadable certificate",
                              source=source) from None


def _diagnose(stderr: bytes) -> Tuple[Optional[str], List[str]]:
    """openssl's first message line and the reasons of its error-queue lines (no values)."""
    message, reasons = None, []
    for line in stderr.decode("utf-8", "replace").splitlines():
        line = "".join(c for c in line.strip() if c.isprintable())[:160]
        match = _ERROR_LINE.match(line)
        if match:
            reasons.append(match.group(1).strip())
        elif message is None and line.strip(".+*-") and not line.lower().startswith("warning"):
            message = line  # not key-generation progress dots, not a warning
    return message, reasons


# --- DER: certificate → SubjectPublicKeyInfo → ssh-rsa ----------------------------------

def _elements(data: bytes) -> List[Tuple[int, bytes]]:
    """(tag, contents) of each DER element making up ``data``; definite, minimal lengths only."""
    elements, offset = [], 0
    while offset < len(data):
        if len(data) - offset < 2 or data[offset] & 0x1F == 0x1F:
            raise ValueError("truncated DER element or unsupported tag")
        tag, length, offset = data[offset], data[offset + 1], offset + 2
        if length & 0x80:
            raw = data[offset:offset + (length & 0x7F)]
            if not 1 <= len(raw) <= 4 or len(raw) != length & 0x7F or raw[0] == 0:
                raise ValueError("invalid DER length")
            length, offset = int.from_bytes(raw, "big"), offset + len(raw)
            if length < 0x80:
                raise ValueError("non-minimal DER length")
        if offset + length > len(data):
            raise ValueError("truncated DER element")
        elements.append((tag, data[offset:offset + length]))
        offset += length
    return elements


def _shaped(data: bytes, tags: Tuple[int, ...], what: str) -> List[bytes]:
    """The contents of ``data``'s elements, which must be exactly of ``tags``."""
    elements = _elements(data)
    if tuple(tag for tag, _ in elements) != tags:
        raise ValueError(f"{what} is not well-formed")
    return [contents for _, contents in elements]


def ssh_rsa_line(certificate: bytes) -> Optional[str]:
    """``ssh-rsa <base64>`` for a DER X.509 certificate's RSA key; None for another key type."""
    (body,) = _shaped(certificate, (0x30,), "certificate")
    tbs = _shaped(body, (0x30, 0x30, 0x03), "certificate")[0]
    fields = _elements(tbs)
    fields = fields[1:] if fields and fields[0][0] == 0xA0 else fields  # [0] version
    if [tag for tag, _ in fields[:6]] != [0x02, 0x30, 0x30, 0x30, 0x30, 0x30]:
        raise ValueError("TBSCertificate is not well-formed")
    algorithm, bits = _shaped(fields[5][1], (0x30, 0x03), "SubjectPublicKeyInfo")
    oid = _elements(algorithm)[:1]
    if not oid or oid[0] != (0x06, RSA_ENCRYPTION):
        return None
    if bits[:1] != b"\x00":
        raise ValueError("RSA public key bit string has unused bits")
    (key,) = _shaped(bits[1:], (0x30,), "RSA public key")
    modulus, exponent = _shaped(key, (0x02, 0x02), "RSA public key")
    for value in (modulus, exponent):
        if not value or value[0] & 0x80 or (value[0] == 0 and value[1:2] < b"\x80"):
            raise ValueError("RSA public key integer is negative or not minimally encoded")
    blob = b"".join(struct.pack(">I", len(p)) + p for p in (b"ssh-rsa", exponent, modulus))
    return "ssh-rsa " + base64.b64encode(blob).decode("ascii")
