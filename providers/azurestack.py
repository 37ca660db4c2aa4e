"""Azure Stack Hub: Azure's WireServer, the IMDS identity document for the VM's name, and SSH
keys from the goal state's encrypted ``Certificates`` (``_azure_certificates``).

Protocol (docs/protocols.md "azurestack", docs/attributes.md): the WireServer address,
headers, ``?comp=versions`` platform check, goal state and Ready report are azure's
(``azure_wireserver``; the helpers and ``check_in`` are inherited from ``AzureProvider``).
Nothing is 404-tolerant. Every part first confirms the platform, in the same round trip as its
first other request.

| source | output |
|---|---|
| IMDS ``/Microsoft.Compute/identity`` (JSON ``vmName``) | hostname (empty → none) |
| goal state → ``Certificates`` (CMS → PKCS#12) | one ``ssh-rsa`` key per RSA certificate |
| goal state → ``POST /machine/?comp=health`` | ``--check-in`` (every boot) |

No attributes: Afterburn writes none for azurestack, so ``--attributes`` writes an empty file
(after the platform check). A goal state without a ``Certificates`` URL means zero keys.
"""

from __future__ import annotations

import logging
from typing import Dict, List, Optional

from cl_metadata.parsing import formats
from cl_metadata.providers import _azure_certificates as certificates
from cl_metadata.providers import azure_wireserver as fabric
from cl_metadata.providers.azure import AzureProvider
from cl_metadata.providers.base import CHECK_IN, HOSTNAME, SSH_KEYS

log = logging.getLogger("cl_metadata")

IDENTITY = "http://169.254.169.254/Microsoft.Compute/identity?api-version=2019-03-11"
IMDS_HEADERS = {"Metadata": "true"}


class AzureStackProvider(AzureProvider):
    id = "azurestack"
    description = "Azure Stack Hub (WireServer and IMDS identity)"
    source = "http"
    features = frozenset({SSH_KEYS, HOSTNAME, CHECK_IN})

    def attributes(self) -> Dict[str, str]:
        self._checked([])
        return {}

    def hostname(self) -> Optional[str]:
        (body,) = self._checked([(IDENTITY, IMDS_HEADERS)])
        return parse_identity(body, "GET " + IDENTITY)

    def ssh_keys(self) -> List[str]:
        goal_url = self._wireserver() + fabric.GOAL_STATE
        (goal_body,) = self._checked([(goal_url, fabric.HEADERS)])
        goal = fabric.parse_goal_state(goal_body, "GET " + goal_url)
        if goal.certificates is None:
            log.info("azurestack: the goal state names no Certificates URL; no SSH keys")
            return []
        url = fabric.fabric_url(goal.certificates, self._address(), "Certificates",
                                "GET " + goal_url)
        with certificates.Transport(self.context.deadline) as transport:
            shown = fabric.shown("Certificates")
            body = self.context.http.get(url, headers={**fabric.HEADERS, **transport.headers},
                                         shown_as=shown)
            return transport.ssh_keys(body, "GET " + shown)


def parse_identity(body: bytes, source: str) -> Optional[str]:
    """``vmName`` of the identity document; empty → None."""
    document = formats.json_object(body, source)
    return formats.string_field(document, "vmName", source, required=True) or None
