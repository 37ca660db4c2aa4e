"""Oracle Cloud Infrastructure IMDS v2 (docs/protocols.md "oraclecloud").

``GET /opc/v2/instance`` (and ``/opc/v2/instance/``) needs ``Authorization: Bearer Oracle``
(else 403) and answers the instance document in OCI's camelCase; fields the instance does not
have are left out. ``metadata.ssh_authorized_keys`` holds the instance's keys, one per line.

``platform-data: {oraclecloud: {...}}``, each optional: ``availability-domain`` (default
``Uocm:PHX-AD-1``), ``compartment-id`` (default an ``ocid1.compartment…`` id), ``fault-domain``
(default ``FAULT-DOMAIN-1``), ``metadata`` (a mapping merged into the document's ``metadata``,
e.g. nested instance-pool data).
"""

from __future__ import annotations

from typing import List

from ..instance import Instance, InstanceError
from . import Response, Route, json_body, user_data_body

PLATFORMS = ("oraclecloud",)
AUTHORIZATION = {"Authorization": "Bearer Oracle"}
EXTRAS = {"availability-domain": str, "compartment-id": str, "fault-domain": str, "metadata": dict}


def instance_document(instance: Instance) -> dict:
    extra = dict(instance.extra("oraclecloud"))
    for key, value in extra.items():
        if key not in EXTRAS or not isinstance(value, EXTRAS[key]):
            raise InstanceError(f"platform-data oraclecloud: {key} is unknown or of the wrong "
                                f"type; known: {', '.join(EXTRAS)}")
    metadata = {}
    if instance.ssh_keys:
        metadata["ssh_authorized_keys"] = "\n".join(k.key for k in instance.ssh_keys) + "\n"
    if instance.user_data is not None:  # OCI keeps user-data base64-encoded
        metadata["user_data"] = user_data_body(instance, "base64").decode("ascii")
    metadata.update(extra.get("metadata", {}))
    doc = {
        "availabilityDomain": extra.get("availability-domain", "Uocm:PHX-AD-1"),
        "canonicalRegionName": instance.region,
        "compartmentId": extra.get("compartment-id",
                                   "ocid1.compartment.oc1..aaaaaaaafakecompartment"),
        "displayName": instance.hostname.split(".")[0] if instance.hostname else None,
        "faultDomain": extra.get("fault-domain", "FAULT-DOMAIN-1"),
        "hostname": instance.hostname,
        "id": instance.instance_id,
        "image": instance.image_id,
        "region": instance.region,
        "shape": instance.instance_type,
        "state": "Running",
        "metadata": metadata,
    }
    return {key: value for key, value in doc.items() if value is not None}


def routes(instance: Instance) -> List[Route]:
    document = json_body(instance_document(instance))
    found = [Route(path, document, required_headers=AUTHORIZATION)
             for path in ("/opc/v2/instance", "/opc/v2/instance/")]
    if instance.user_data is not None:
        found.append(Route("/opc/v2/instance/metadata/user_data",
                           Response(body=user_data_body(instance, "base64")),
                           required_headers=AUTHORIZATION))
    return found
