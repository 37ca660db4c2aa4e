"""Azure Stack Hub: azure's WireServer (``render/azure.py``) plus the IMDS identity document and
an encrypted ``Certificates`` document (docs/protocols.md "azurestack"); no IMDS ``compute``
tree.

``GET /Microsoft.Compute/identity`` wants ``Metadata: true`` and an ``api-version`` (400
without) and answers ``{"vmName", "subscriptionId"}``. The goal state names a Certificates URL
(the SharedConfig path with ``type=certificates``); that request wants, besides azure's
headers, ``x-ms-cipher-name: DES_EDE3_CBC`` and ``x-ms-guest-agent-public-x509-cert`` (403
without; 400 when the value is not a certificate openssl can encrypt to). The answer is a real
``CertificateFile``: ``Data`` = base64 of a CMS EnvelopedData (DES-EDE3-CBC, recipient named by
subject key identifier, as Azure does) to that certificate, of a PKCS#12 (empty password,
certificates only) with one certificate per ``ssh-rsa`` key of the instance, in order, made for
that exact public key (``x509 -force_pubkey``, signed by a throw-away P-256 key). Needs the
``openssl`` command.

platform-data ``azurestack``: every ``azure`` key (``render/azure.py``; ``certificates``
defaults to whether the instance has an ``ssh-rsa`` key, as no PKCS#12 can be empty), plus
``subscription-id`` (default: project-id) and ``pkcs12``: ``aes`` (default, OpenSSL 3's
PBKDF2/AES-256) or ``legacy`` (RC2-40 and a SHA-1 MAC, as old Windows-made PFX files; needs
OpenSSL's legacy provider).
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import os
import shutil
import struct
import subprocess
import tempfile
from typing import List, Tuple
from urllib.parse import parse_qs

from ..instance import Instance, InstanceError
from . import Request, Response, Route, azure, json_body, text

PLATFORMS = ("azurestack",)
IDENTITY = "/Microsoft.Compute/identity"
CERTIFICATE_HEADER = "x-ms-guest-agent-public-x509-cert"
OWN_KEYS = ("subscription-id", "pkcs12")
OPENSSL_TIMEOUT = 30.0


def _der(tag: int, contents: bytes) -> bytes:
    size = len(contents)
    if size < 0x80:
        return bytes([tag, size]) + contents
    raw = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(raw)]) + raw + contents


def public_key_pem(key_line: str) -> bytes:
    """The PEM SubjectPublicKeyInfo of an ``ssh-rsa`` key line (its mpints are DER INTEGERs)."""
    blob, parts = base64.b64decode(key_line.split()[1]), []
    while blob:
        (size,) = struct.unpack(">I", blob[:4])
        parts.append(blob[4:4 + size])
        blob = blob[4 + size:]
    _, exponent, modulus = parts
    algorithm = _der(0x30, _der(0x06, bytes.fromhex("2a864886f70d010101")) + b"\x05\x00")
    rsa = _der(0x30, _der(0x02, modulus) + _der(0x02, exponent))
    spki = base64.encodebytes(_der(0x30, algorithm + _der(0x03, b"\x00" + rsa)))
    return b"-----BEGIN PUBLIC KEY-----\n" + spki + b"-----END PUBLIC KEY-----\n"


class _Failed(Exception):
    pass


def _openssl(directory: str, *arguments: str) -> bytes:
    if shutil.which("openssl") is None:
        raise _Failed("openssl is not installed")
    done = subprocess.run(["openssl", *arguments], cwd=directory, capture_output=True,
                          stdin=subprocess.DEVNULL, timeout=OPENSSL_TIMEOUT, check=False)
    if done.returncode != 0:
        raise _Failed(f"openssl {arguments[0]} failed")
    return done.stdout


@functools.lru_cache(maxsize=16)  # certificates only: safe to share between servers
def pkcs12_of(keys: Tuple[str, ...], legacy: bool) -> bytes:
    """A PKCS#12 (empty password, no private keys) with one certificate per key, in order."""
    with tempfile.TemporaryDirectory(prefix="fake-azurestack-") as directory:
        _openssl(directory, "genpkey", "-algorithm", "EC", "-pkeyopt",  # fast, and any
                 "ec_paramgen_curve:P-256", "-out", "signer.key")  # signer will do
        certificates = b""
        for number, key in enumerate(keys):
            with open(os.path.join(directory, f"{number}.pub"), "wb") as f:
                f.write(public_key_pem(key))
            certificates += _openssl(directory, "x509", "-new", "-subj", f"/CN=ssh-key-{number}",
                                     "-key", "signer.key", "-force_pubkey", f"{number}.pub",
                                     "-days", "365")
        with open(os.path.join(directory, "certificates.pem"), "wb") as f:
            f.write(certificates)
        return _openssl(directory, "pkcs12", "-export", "-nokeys", "-in", "certificates.pem",
                        "-passout", "pass:", *(["-legacy"] if legacy else []))


def envelope(pkcs12: bytes, certificate_body: str) -> bytes:
    """DER CMS EnvelopedData of ``pkcs12`` to the agent's certificate (header form)."""
    lines = [certificate_body[i:i + 64] for i in range(0, len(certificate_body), 64)]
    recipient = "\n".join(["-----BEGIN CERTIFICATE-----", *lines, "-----END CERTIFICATE-----",
                           ""]).encode("ascii", "replace")
    with tempfile.TemporaryDirectory(prefix="fake-azurestack-") as directory:
        for name, data in (("pkcs12", pkcs12), ("agent.crt", recipient)):
            with open(os.path.join(directory, name), "wb") as f:
                f.write(data)
        return _openssl(directory, "cms", "-encrypt", "-des3", "-binary", "-keyid",
                        "-outform", "DER", "-in", "pkcs12", "agent.crt")


def certificate_file_xml(sealed: bytes, incarnation: str) -> bytes:
    data = base64.encodebytes(sealed).decode("ascii")  # wrapped lines, as the fabric sends
    return ('<?xml version="1.0" encoding="utf-8"?>\n<CertificateFile xmlns:xsi='
            '"http://www.w3.org/2001/XMLSchema-instance" xsi:noNamespaceSchemaLocation='
            '"certificates10.xsd">\n  <Version>2012-11-30</Version>\n'
            f"  <Incarnation>{incarnation}</Incarnation>\n"
            f"  <Format>Pkcs7BlobWithPfxContents</Format>\n  <Data>{data}</Data>\n"
            "</CertificateFile>\n").encode("ascii")


def routes(instance: Instance) -> List[Route]:
    extra = dict(instance.extra("azurestack"))
    own = {key: extra.pop(key) for key in OWN_KEYS if key in extra}
    subscription = own.get("subscription-id", instance.project_id or
                           "00000000-0000-0000-0000-000000000000")
    if not isinstance(subscription, str) or own.get("pkcs12", "aes") not in ("aes", "legacy"):
        raise InstanceError("platform-data: azurestack: subscription-id must be a string and "
                            "pkcs12 aes or legacy")
    legacy = own.get("pkcs12") == "legacy"
    rsa_keys = tuple(k.key for k in instance.ssh_keys if k.key.startswith("ssh-rsa "))
    as_azure = dataclasses.replace(instance, platform_data={
        **instance.platform_data, "azure": {"certificates": bool(rsa_keys), **extra}})
    vm_name = extra.get("vm-name", instance.hostname)
    incarnation = str(extra.get("incarnation", "1"))

    def identity(request: Request) -> Response:
        if "api-version" not in parse_qs(request.query):
            return text("Bad request: api-version required", 400)
        return json_body({"vmName": vm_name, "subscriptionId": subscription})

    def certificates(request: Request) -> Response:
        if request.headers.get("x-ms-cipher-name") != "DES_EDE3_CBC":
            return text("Forbidden: required header x-ms-cipher-name missing or wrong", 403)
        body = request.headers.get(CERTIFICATE_HEADER)
        if not body:
            return text(f"Forbidden: required header {CERTIFICATE_HEADER} missing", 403)
        try:
            sealed = envelope(pkcs12_of(rsa_keys, legacy), body)
        except (_Failed, subprocess.TimeoutExpired) as err:
            return text(f"Bad request: no envelope for this certificate ({err})", 400)
        return Response(body=certificate_file_xml(sealed, incarnation),
                        content_type=azure.XML)

    found = [Route(IDENTITY, identity, required_headers=azure.IMDS)]
    for route in azure.routes(as_azure):
        if route.path.startswith("/metadata/"):
            continue  # no IMDS compute tree on Azure Stack
        if route.method == "GET" and route.path.startswith("/machine/") \
                and route.path != "/machine/":  # SharedConfig's path, shared with Certificates
            route = dataclasses.replace(route, respond=_by_type(route, certificates))
        found.append(route)
    return found


def _by_type(shared_config: Route, certificates):
    def respond(request: Request) -> Response:
        if parse_qs(request.query).get("type") == ["certificates"]:
            return certificates(request)
        return shared_config.answer(request)
    return respond
