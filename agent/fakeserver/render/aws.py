"""Amazon EC2 IMDS for the ids ``aws`` and ``ec2`` (docs/protocols.md "aws").

IMDSv2-only by default, as new instances are: ``PUT /latest/api/token`` needs
``X-aws-ec2-metadata-token-ttl-seconds`` (1–21600, else 400; a request carrying
``X-Forwarded-For`` gets 403) and answers a fresh token; every GET without a token this server
issued gets 401, also for items the instance does not have. Data are served under
``/2021-01-03/`` and ``/latest/``; absent instance fields answer 404 (after the token check).

``platform-data: {aws: {...}}`` (read for ``ec2`` too):
``imdsv1`` (bool, default false): also answer GETs without a token ("HttpTokens: optional").
``token-endpoint`` (bool, default true): false serves an IMDSv1-only service (the PUT is 404).
``availability-zone-id`` (default ``use1-az1`` when the instance has an availability zone),
``public-hostname`` (default ``ec2-<public ipv4 with dashes>.compute-1.amazonaws.com``),
``account-id`` (default ``123456789012``).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Callable, Dict, List, Optional

from ..instance import Instance, InstanceError
from . import BINARY, Request, Response, Route, json_body, text, user_data_body

PLATFORMS = ("aws", "ec2")
TOKEN_PATH = "/latest/api/token"
API_VERSIONS = ("2021-01-03", "latest")
TTL_HEADER = "X-aws-ec2-metadata-token-ttl-seconds"
TOKEN_HEADER = "X-aws-ec2-metadata-token"
MAX_TTL = 21600
EXTRAS = {"imdsv1": bool, "token-endpoint": bool, "availability-zone-id": str,
          "public-hostname": str, "account-id": str}


def extras(instance: Instance) -> Dict[str, object]:
    extra = dict(instance.extra("aws"))
    for key, value in extra.items():
        if key not in EXTRAS or not isinstance(value, EXTRAS[key]):
            raise InstanceError(f"platform-data aws: {key} is unknown or not a "
                                f"{EXTRAS.get(key, str).__name__}; known: {', '.join(EXTRAS)}")
    return extra


def meta_data(instance: Instance, extra: Dict[str, object]) -> Dict[str, Optional[str]]:
    """Scalar ``meta-data/`` items; None = the instance has none (404)."""
    public_hostname = extra.get("public-hostname")
    if public_hostname is None and instance.public_ipv4:
        public_hostname = f"ec2-{instance.public_ipv4.replace('.', '-')}.compute-1.amazonaws.com"
    zone_id = extra.get("availability-zone-id", "use1-az1" if instance.availability_zone else None)
    return {
        "instance-id": instance.instance_id,
        "instance-type": instance.instance_type,
        "ami-id": instance.image_id,
        "local-ipv4": instance.local_ipv4,
        "public-ipv4": instance.public_ipv4,
        "ipv6": instance.ipv6,
        "mac": instance.mac,
        "hostname": instance.hostname,
        "local-hostname": instance.hostname,
        "public-hostname": public_hostname,
        "placement/availability-zone": instance.availability_zone,
        "placement/availability-zone-id": zone_id,
        "placement/region": instance.region,
    }


def identity_document(instance: Instance, extra: Dict[str, object]) -> dict:
    doc = {
        "accountId": extra.get("account-id", "123456789012"),
        "architecture": "x86_64",
        "availabilityZone": instance.availability_zone,
        "imageId": instance.image_id,
        "instanceId": instance.instance_id,
        "instanceType": instance.instance_type,
        "privateIp": instance.local_ipv4,
        "region": instance.region,
        "version": "2017-09-30",
    }
    return {key: value for key, value in doc.items() if value is not None}


class Tokens:
    """IMDSv2 tokens that carry their own proof: ``<nonce>.<HMAC(key, nonce)>``.

    Behind QEMU's guestfwd every connection is answered by a new server process, so a token
    must be checkable without remembering it: any process serving the same instance derives the
    same key. Any number stay valid; expiry is simulated with faults.
    """

    def __init__(self, instance: Instance) -> None:
        self._key = hashlib.sha256(b"cl-metadata fake IMDSv2 " +
                                   instance.instance_id.encode()).digest()

    def _proof(self, nonce: str) -> str:
        return hmac.new(self._key, nonce.encode(), hashlib.sha256).hexdigest()

    def put(self, request: Request) -> Response:
        ttl = request.headers.get(TTL_HEADER)
        if request.headers.get("X-Forwarded-For") is not None:
            return text("Forbidden", 403)
        if ttl is None or not ttl.strip().isdigit() or not 1 <= int(ttl) <= MAX_TTL:
            return text("Bad Request", 400)
        nonce = secrets.token_urlsafe(24)
        token = f"{nonce}.{self._proof(nonce)}"
        return Response(body=token.encode(), headers=((TTL_HEADER, ttl.strip()),))

    def valid(self, token: Optional[str]) -> bool:
        nonce, _, proof = (token or "").partition(".")
        return bool(nonce) and hmac.compare_digest(proof, self._proof(nonce))


def guarded(tokens: Tokens, allow_v1: bool, answer: Response) -> Callable[[Request], Response]:
    def respond(request: Request) -> Response:
        token = request.headers.get(TOKEN_HEADER)
        if (token is None and not allow_v1) or (token is not None and not tokens.valid(token)):
            return text("Unauthorized", 401)
        return answer
    return respond


def routes(instance: Instance) -> List[Route]:
    extra = extras(instance)
    has_token_endpoint = extra.get("token-endpoint", True)
    allow_v1 = extra.get("imdsv1", False) or not has_token_endpoint
    tokens = Tokens(instance)
    answers: Dict[str, Response] = {}
    for path, value in meta_data(instance, extra).items():
        answers[f"meta-data/{path}"] = text(value) if value is not None else text("Not Found", 404)
    index = "\n".join(f"{i}={key.name}" for i, key in enumerate(instance.ssh_keys))
    answers["meta-data/public-keys"] = text(index) if instance.ssh_keys else text("Not Found", 404)
    for i, key in enumerate(instance.ssh_keys):
        answers[f"meta-data/public-keys/{i}/openssh-key"] = text(key.key + "\n")
        answers[f"meta-data/public-keys/{i}/"] = text("openssh-key")
    answers["dynamic/instance-identity/document"] = json_body(identity_document(instance, extra))
    if instance.user_data is not None:
        answers["user-data"] = Response(body=user_data_body(instance), content_type=BINARY)

    found = [Route(f"/{version}/{path}", guarded(tokens, allow_v1, answer))
             for version in API_VERSIONS for path, answer in answers.items()]
    if has_token_endpoint:
        found.append(Route(TOKEN_PATH, tokens.put, method="PUT"))
    return found
