"""Amazon EC2 instance metadata service (IMDS) with IMDSv2 session tokens.

Protocol (docs/protocols.md "aws", docs/attributes.md, docs/hardening.md): a token
from ``PUT /latest/api/token`` (short TTL) goes with every GET as ``X-aws-ec2-metadata-token``.
Data come from API version ``2021-01-03`` (the first with ``meta-data/ipv6``); every item may be
absent (404); an empty value is written as ``NAME=``; the region is the identity document's
``region``. ``aws`` writes ``AWS_*``; ``ec2`` the same items as ``EC2_*`` (Container Linux).

Token policy (Afterburn instead retries a refused PUT ~42 s, then silently uses IMDSv1):
PUT 403 = IMDS disabled: fail at once. PUT 404/405 = a service without a token endpoint
(IMDSv1-only, e.g. an EC2-compatible emulator): use IMDSv1, with a warning; the answer is
immediate, so no retry loop comes first. Other 4xx: fatal. Transport errors and 5xx: retried by
the client until the deadline, then fatal, never downgraded. A 401 on a GET (expired token):
one new PUT shared by all parts, then the GETs again; a second 401 is fatal. The token stays
in memory and out of every message.
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Dict, List, Optional, Sequence

from cl_metadata.parsing import formats
from cl_metadata.errors import FetchError, InvalidMetadata, MetadataError
from cl_metadata.providers.base import ATTRIBUTES, HOSTNAME, SSH_KEYS, USER_DATA, Provider

log = logging.getLogger("cl_metadata")

TOKEN_URL = "http://169.254.169.254/latest/api/token"  # `latest`: pinned versions 403 the PUT
DATA = "http://169.254.169.254/2021-01-03/"
TTL_HEADER = "X-aws-ec2-metadata-token-ttl-seconds"
TOKEN_HEADER = "X-aws-ec2-metadata-token"
TOKEN_TTL = "300"  # seconds; a run is bounded by a much shorter deadline
IDENTITY_DOCUMENT = "dynamic/instance-identity/document"
USER_DATA_PATH = "user-data"  # raw bytes; 404 = none
_TOKEN = re.compile(r"[\x21-\x7e]{1,4096}")  # visible ASCII: it goes into a header
_UNSET = object()

ATTRIBUTE_PATHS = {  # name without the AWS_/EC2_ stem -> path under DATA
    "INSTANCE_ID": "meta-data/instance-id",
    "INSTANCE_TYPE": "meta-data/instance-type",
    "IPV4_LOCAL": "meta-data/local-ipv4",
    "IPV4_PUBLIC": "meta-data/public-ipv4",
    "IPV6": "meta-data/ipv6",
    "AVAILABILITY_ZONE": "meta-data/placement/availability-zone",
    "AVAILABILITY_ZONE_ID": "meta-data/placement/availability-zone-id",
    "HOSTNAME": "meta-data/hostname",
    "PUBLIC_HOSTNAME": "meta-data/public-hostname",
}


class AwsProvider(Provider):
    id = "aws"
    description = "Amazon EC2 instance metadata service (IMDSv2)"
    source = "http"
    features = frozenset({ATTRIBUTES, SSH_KEYS, HOSTNAME, USER_DATA})
    user_data_source = "GET " + DATA + USER_DATA_PATH
    STEM = "AWS"
    # The service's addresses, IPv4 (the one URLs name) first. The IPv6 one answers only on
    # Nitro instances whose metadata options enable it (HttpProtocolIpv6, off by default).
    endpoints = ("http://169.254.169.254", "http://[fd00:ec2::254]")

    def __init__(self, context):
        super().__init__(context)
        self._token_lock = threading.Lock()
        self._token: object = _UNSET  # then a token, None (IMDSv1) or the PUT's MetadataError

    def attributes(self) -> Dict[str, str]:
        paths = list(ATTRIBUTE_PATHS.values()) + [IDENTITY_DOCUMENT]
        bodies = self._get_all(paths)
        attributes = {}
        for name, path, body in zip(ATTRIBUTE_PATHS, paths, bodies):
            value = formats.text(body, "GET " + DATA + path)
            if value is not None:
                attributes[f"{self.STEM}_{name}"] = value
        region = parse_region(bodies[-1], "GET " + DATA + IDENTITY_DOCUMENT)
        if region is not None:
            attributes[f"{self.STEM}_REGION"] = region
        return attributes

    def hostname(self) -> Optional[str]:
        path = ATTRIBUTE_PATHS["HOSTNAME"]
        return formats.text(self._get_all([path])[0], "GET " + DATA + path) or None

    def ssh_keys(self) -> List[str]:
        # Key 0 is asked beside the index: most instances have exactly one key, which then
        # costs no second round trip (a 404 for it is absent, like any key the index lacks).
        index, first_key = "meta-data/public-keys", "meta-data/public-keys/0/openssh-key"
        listing_body, first_body = self._get_all([index, first_key])
        listing = formats.text(listing_body, "GET " + DATA + index)
        paths = [f"{index}/{i}/openssh-key"
                 for i in formats.ec2_key_index(listing, "GET " + DATA + index)]
        rest = [path for path in paths if path != first_key]
        bodies = dict(zip(rest, self._get_all(rest) if rest else []))
        bodies[first_key] = first_body
        keys: List[str] = []
        for path in paths:
            keys.extend(formats.key_lines(formats.text(bodies[path], "GET " + DATA + path)))
        return keys

    def user_data(self) -> Optional[bytes]:
        return self._get_all([USER_DATA_PATH])[0]

    # -- IMDSv2 ------------------------------------------------------------------------------
    def _get_all(self, paths: Sequence[str]) -> List[Optional[bytes]]:
        """GET ``paths`` concurrently with the token; one token renewal on a 401."""
        def get_with(token: Optional[str]) -> List[Optional[bytes]]:
            headers = {TOKEN_HEADER: token} if token is not None else None
            return self.context.http.get_many(
                [(DATA + path, {"optional": True, "headers": headers}) for path in paths])

        token = self._token_replacing(_UNSET)
        try:
            return get_with(token)
        except FetchError as err:
            if err.status != 401 or token is None:
                raise
        try:
            return get_with(self._token_replacing(token))
        except FetchError as err:
            if err.status != 401:
                raise
            raise FetchError("HTTP 401 again with a fresh IMDSv2 token", source=err.source,
                             status=401) from None

    def _token_replacing(self, stale: object) -> Optional[str]:
        """The run's token, PUT anew if it is still ``stale`` (parts share it; one PUT at a
        time; a failed PUT is kept, so no other part repeats it)."""
        with self._token_lock:
            if isinstance(self._token, MetadataError):
                raise self._token
            if self._token == stale:
                try:
                    self._token = self._put_token()
                except MetadataError as err:
                    self._token = err
                    raise
            return self._token  # type: ignore[return-value]

    def _put_token(self) -> Optional[str]:
        try:
            response = self.context.http.request("PUT", TOKEN_URL, headers={TTL_HEADER: TOKEN_TTL})
        except FetchError as err:
            if err.status == 403:
                raise FetchError("IMDSv2 token refused with HTTP 403: the instance metadata "
                                 "service is disabled for this instance", source=err.source,
                                 status=403) from None
            if err.status not in (404, 405):
                raise
            log.warning("%s: HTTP %d, the service has no IMDSv2 token endpoint; using IMDSv1",
                        err.source, err.status)
            return None
        return parse_token(response.body, "PUT " + TOKEN_URL)


class Ec2Provider(AwsProvider):
    id = "ec2"
    description = "Amazon EC2 (Container Linux names), IMDSv2"
    STEM = "EC2"


def parse_token(body: bytes, source: str) -> str:
    """The session token: one line of visible ASCII (the value is never put in a message)."""
    token = formats.text(body, source) or ""
    if not _TOKEN.fullmatch(token):
        raise InvalidMetadata("the IMDSv2 token is empty or not one line of visible ASCII",
                              source=source)
    return token


def parse_region(body: Optional[bytes], source: str) -> Optional[str]:
    """``region`` of the identity document (None when the document is absent)."""
    if body is None:
        return None
    return formats.string_field(formats.json_object(body, source), "region", source)
