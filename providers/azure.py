"""Microsoft Azure: IMDS for the VM's name, size and SSH keys; the WireServer for the platform
check, the ``AZURE_IPV4_*`` addresses and the Ready report (``azure_wireserver``).

Protocol (docs/protocols.md "azure", docs/attributes.md): IMDS answers only with
``Metadata: true`` and an ``api-version`` (the client already bypasses proxies). Nothing is
404-tolerant. Every part first confirms the platform (the WireServer's ``?comp=versions``);
that request goes out together with the part's other first requests, so it costs no extra
round trip, and nothing is used before it passed.

| source | attribute / output |
|---|---|
| IMDS ``compute/vmSize`` (text) | ``AZURE_VMSIZE`` (empty → ``AZURE_VMSIZE=``) |
| IMDS ``compute/name`` (text) | hostname (empty → none) |
| IMDS ``compute/publicKeys`` (JSON ``[{keyData, path}]``) | SSH keys in order, CR/LF removed |
| goal state → SharedConfig | ``AZURE_IPV4_DYNAMIC``, ``AZURE_IPV4_VIRTUAL`` |
| goal state → ``POST /machine/?comp=health`` | ``--check-in`` (every boot) |

A key's ``path`` is not used: every key goes to the ``--ssh-keys`` users, as upstream. Under
``CL_METADATA_ENDPOINT`` the WireServer is not looked for in DHCP leases: its URLs go to the
override like every other (the goal state's URLs are still checked against ``168.63.129.16``).
"""

from __future__ import annotations

from typing import Dict, List, Optional

from cl_metadata.parsing import formats
from cl_metadata.errors import InvalidMetadata
from cl_metadata.providers import azure_wireserver as fabric
from cl_metadata.parsing.encodings import strict_base64
from cl_metadata.providers.base import (ATTRIBUTES, CHECK_IN, HOSTNAME, SSH_KEYS, USER_DATA,
                                        Provider)

COMPUTE = "http://169.254.169.254/metadata/instance/compute/"
IMDS_HEADERS = {"Metadata": "true"}
VM_SIZE = COMPUTE + "vmSize?api-version=2017-08-01&format=text"
NAME = COMPUTE + "name?api-version=2017-08-01&format=text"
PUBLIC_KEYS = COMPUTE + "publicKeys?api-version=2021-02-01"
# base64 text of the user's bytes; empty = none. (Ignition then tries the CustomData of the
# provisioning DVD, a drive this provider does not read.)
USER_DATA_URL = COMPUTE + "userData?api-version=2021-01-01&format=text"


class AzureProvider(Provider):
    id = "azure"
    description = "Microsoft Azure (IMDS and WireServer)"
    source = "http"
    features = frozenset({ATTRIBUTES, SSH_KEYS, HOSTNAME, CHECK_IN, USER_DATA})
    user_data_source = "GET " + USER_DATA_URL
    user_data_encoding = "base64"

    def attributes(self) -> Dict[str, str]:
        goal_url = self._wireserver() + fabric.GOAL_STATE
        goal_body, vm_size = self._checked([(goal_url, fabric.HEADERS),
                                            (VM_SIZE, IMDS_HEADERS)])
        goal = fabric.parse_goal_state(goal_body, "GET " + goal_url)
        config_url = fabric.fabric_url(goal.shared_config, self._address(), "SharedConfig",
                                       "GET " + goal_url)
        config_shown = fabric.shown("SharedConfig")
        dynamic, virtual = fabric.parse_shared_config(
            self.context.http.get(config_url, headers=fabric.HEADERS, shown_as=config_shown),
            "GET " + config_shown)
        attributes = {"AZURE_VMSIZE": formats.text(vm_size, "GET " + VM_SIZE)}
        if dynamic is not None:
            attributes["AZURE_IPV4_DYNAMIC"] = dynamic
        if virtual is not None:
            attributes["AZURE_IPV4_VIRTUAL"] = virtual
        return attributes

    def hostname(self) -> Optional[str]:
        (name,) = self._checked([(NAME, IMDS_HEADERS)])
        return formats.text(name, "GET " + NAME) or None

    def ssh_keys(self) -> List[str]:
        (body,) = self._checked([(PUBLIC_KEYS, IMDS_HEADERS)])
        return parse_public_keys(body, "GET " + PUBLIC_KEYS)

    def user_data(self) -> Optional[bytes]:
        (body,) = self._checked([(USER_DATA_URL, IMDS_HEADERS)])
        return strict_base64(body, "GET " + USER_DATA_URL) if body.strip() else None

    def check_in(self) -> None:
        goal_url = self._wireserver() + fabric.GOAL_STATE
        (goal_body,) = self._checked([(goal_url, fabric.HEADERS)])
        source = "GET " + goal_url
        report = fabric.health_report(fabric.parse_goal_state(goal_body, source), source)
        self.context.http.request("POST", self._wireserver() + fabric.HEALTH,
                                  headers=fabric.HEALTH_HEADERS, data=report)

    # -- helpers -----------------------------------------------------------------------------
    def _address(self) -> str:
        return self.once("wireserver", self._find_wireserver)

    def _find_wireserver(self) -> str:
        if self.context.endpoint:
            # The override sends every URL, the WireServer's too, to its own origin: a lease
            # could change nothing, so none is looked up (or waited for).
            return fabric.FALLBACK_ADDRESS
        return fabric.address(self.context.deadline)

    def _wireserver(self) -> str:
        return "http://" + self._address()

    def _checked(self, requests) -> List[Optional[bytes]]:
        """The bodies of ``requests`` (url, headers), fetched together with the platform check,
        which must pass before any of them is used."""
        versions_url = self._wireserver() + fabric.VERSIONS
        bodies = self.context.http.get_many(
            [(versions_url, {"headers": fabric.HEADERS})]
            + [(url, {"headers": headers}) for url, headers in requests])
        fabric.check_versions(bodies[0], "GET " + versions_url)
        return bodies[1:]


def parse_public_keys(body: bytes, source: str) -> List[str]:
    """``keyData`` of each entry of IMDS ``publicKeys``, in order; ``[]`` is no keys."""
    document = formats.json_document(body, source)
    if not isinstance(document, list):
        raise InvalidMetadata("expected a JSON list of public keys", source=source)
    keys = []
    for index, entry in enumerate(document):
        where = f"{source} [{index}]"
        if not isinstance(entry, dict):
            raise InvalidMetadata("expected an object with keyData", source=where)
        key = formats.string_field(entry, "keyData", where, required=True)
        keys.append(key.replace("\r", "").replace("\n", ""))  # a key wrapped over lines
    return keys
