"""Checking a detached OpenPGP signature with ``gpgv``, by its status lines, not its exit status.

``gpgv`` runs with a private, empty home directory and only the keyring the user gave, so no
key of the user's own keyrings can vouch for an image. Its ``--status-fd`` output is the
machine-readable verdict; a signature is accepted only when ``gpgv`` exits 0 and the status
lines say: exactly one signature (``NEWSIG``), good (``GOODSIG``) and valid (``VALIDSIG``),
with no bad, expired, revoked or unverifiable one among them. The fingerprint the caller
expects, when given, must be the signing key's or its primary key's (image signing keys sign
with a subkey; a key's published fingerprint is usually the primary key's).

An ASCII-armored keyring (the ``.asc`` a release channel publishes) is de-armored first:
``gpgv`` reads binary keyrings only.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
from typing import List, NamedTuple, Optional

from cl_metadata.imageimport.errors import ImageImportError

SOURCE = "signature"
# Status keywords that make a verification fail whatever else gpgv says.
# Checked in this order: gpgv says ERRSIG too when the key is missing (NO_PUBKEY).
_REFUSING = {"BADSIG": "bad signature: the file is not the one that was signed",
             "NO_PUBKEY": "no key in the keyring made this signature",
             "ERRSIG": "the signature could not be checked",
             "EXPSIG": "the signature has expired",
             "EXPKEYSIG": "the signing key has expired",
             "REVKEYSIG": "the signing key was revoked",
             "NODATA": "the signature file holds no signature",
             "BADARMOR": "the signature file is damaged",
             "FAILURE": "gpgv failed"}
_FINGERPRINT = re.compile(r"[0-9A-F]{40}|[0-9A-F]{64}")
_ARMOR_BEGIN = "-----BEGIN PGP PUBLIC KEY BLOCK-----"
_ARMOR_END = "-----END PGP PUBLIC KEY BLOCK-----"


class Verdict(NamedTuple):
    signing_key: str  # fingerprint of the (sub)key that made the signature
    primary_key: str  # fingerprint of its primary key


def normalize_fingerprint(text: str) -> Optional[str]:
    """``text`` as 40 (or 64) upper-case hex digits, spaces and a ``0x`` dropped; else None."""
    compact = "".join(text.split()).upper()
    if compact.startswith("0X"):
        compact = compact[2:]
    return compact if _FINGERPRINT.fullmatch(compact) else None


def binary_keyring(keyring: str, workdir: str) -> str:
    """A path gpgv can read: ``keyring`` itself, or its de-armored copy in ``workdir``."""
    try:
        with open(keyring, "rb") as f:
            head = f.read(len(_ARMOR_BEGIN) + 64)
            if _ARMOR_BEGIN.encode() not in head:
                return os.path.abspath(keyring)
            f.seek(0)
            text = f.read(16 << 20).decode("ascii", "replace")
    except OSError as err:
        raise ImageImportError(f"cannot read the keyring: {os.strerror(err.errno or 5)}",
                               source=keyring) from None
    lines = [line.strip() for line in text.strip().splitlines()]
    try:
        body_start = lines.index("", 1) + 1 if "" in lines else 1
        end = lines.index(_ARMOR_END)
        body = [line for line in lines[body_start:end] if not line.startswith("=")]
        data = base64.b64decode("".join(body), validate=True)
    except (ValueError, IndexError):
        raise ImageImportError("not a valid ASCII-armored keyring", source=keyring) from None
    path = os.path.join(workdir, "keyring.gpg")
    with open(path, "wb") as f:
        f.write(data)
    return path


def verify(data_path: str, signature_path: str, keyring: str, *, homedir: str,
           expected: Optional[str] = None, timeout: float = 120.0) -> Verdict:
    """The verdict on ``signature_path`` over ``data_path``; raises ImageImportError."""
    gpgv = shutil.which("gpgv")
    if gpgv is None:
        raise ImageImportError("gpgv is not installed (Debian package gpgv)", source=SOURCE)
    cmd = [gpgv, "--homedir", homedir, "--status-fd", "1", "--keyring",
           os.path.abspath(keyring), "--", signature_path, data_path]
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "GNUPGHOME": homedir}
    try:
        result = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True,
                                timeout=max(timeout, 1.0), env=env)
    except subprocess.TimeoutExpired:
        raise ImageImportError("gpgv did not finish in time", source=SOURCE) from None
    verdict = parse_status(result.stdout.decode("utf-8", "replace"), result.returncode)
    if expected is not None and expected not in verdict:
        raise ImageImportError("the signing key is not the one --fingerprint names",
                               source=SOURCE)
    return verdict


def parse_status(status: str, returncode: int) -> Verdict:
    """The verdict gpgv's status lines and exit status give; raises ImageImportError."""
    records: List[List[str]] = [line.split()[1:] for line in status.splitlines()
                                if line.startswith("[GNUPG:] ")]
    keywords = [r[0] for r in records if r]
    for keyword, cause in _REFUSING.items():
        if keyword in keywords:
            raise ImageImportError(cause, source=SOURCE)
    if keywords.count("NEWSIG") != 1:
        raise ImageImportError(f"expected one signature, found {keywords.count('NEWSIG')}",
                               source=SOURCE)
    valid = [r for r in records if r and r[0] == "VALIDSIG"]
    if returncode != 0 or keywords.count("GOODSIG") != 1 or len(valid) != 1:
        raise ImageImportError(f"not verified (gpgv exit status {returncode})", source=SOURCE)
    fields = valid[0]
    # VALIDSIG <fpr> <date> <timestamp> <expire> <version> <reserved> <pkalgo> <hashalgo>
    #          <class> <primary-fpr>
    signing = fields[1].upper() if len(fields) > 1 else ""
    primary = fields[10].upper() if len(fields) > 10 else signing
    if not (_FINGERPRINT.fullmatch(signing) and _FINGERPRINT.fullmatch(primary)):
        raise ImageImportError("gpgv gave no usable fingerprint", source=SOURCE)
    return Verdict(signing, primary)
