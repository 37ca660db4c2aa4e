"""OpenStack metadata service: Nova's EC2-compatible tree plus the OpenStack document.

Protocol (docs/protocols.md "openstack-metadata", docs/attributes.md): plain-text values under
``/latest/meta-data/``, no special headers; every item may be absent (404), e.g. ``public-ipv4``
on a VM without a floating IP, and absence is never an error. An empty value is written as
``NAME=`` as Container Linux did. The instance UUID comes from the OpenStack JSON document.

Interfaces come from ``/openstack/latest/network_data.json`` (links, bonds and VLANs matched by
MAC address, static and DHCP networks, routes, ``dns`` services; see
:mod:`cl_metadata.sources.openstack_drive`), fetched only when a network output is asked for; a service
without it (404) describes no interfaces.
"""

from __future__ import annotations

from typing import Dict, List, Optional

from cl_metadata.parsing import formats

from cl_metadata.sources import openstack_drive
from cl_metadata.providers.base import (ATTRIBUTES, HOSTNAME, NETWORK_UNITS, SSH_KEYS, USER_DATA,
                                        Provider)

BASE = "http://169.254.169.254"
META_DATA = BASE + "/latest/meta-data/"
OPENSTACK_DOCUMENT = BASE + "/openstack/2012-08-10/meta_data.json"
NETWORK_DATA = BASE + "/openstack/latest/network_data.json"
UNIT_PRIORITY = 10

ATTRIBUTE_PATHS = {
    "OPENSTACK_HOSTNAME": "hostname",
    "OPENSTACK_INSTANCE_ID": "instance-id",
    "OPENSTACK_INSTANCE_TYPE": "instance-type",
    "OPENSTACK_IPV4_LOCAL": "local-ipv4",
    "OPENSTACK_IPV4_PUBLIC": "public-ipv4",
}


USER_DATA_URL = BASE + "/openstack/latest/user_data"  # raw; 404 = none


class OpenStackMetadataProvider(Provider):
    id = "openstack-metadata"
    description = "OpenStack metadata service (EC2-compatible tree)"
    source = "http"
    features = frozenset({ATTRIBUTES, SSH_KEYS, HOSTNAME, NETWORK_UNITS, USER_DATA})
    user_data_source = "GET " + USER_DATA_URL
    # The service's addresses, IPv4 (the one URLs name) first. The IPv6 one is link-local:
    # it is tried on every interface with an IPv6 link-local address of its own.
    endpoints = (BASE, "http://[fe80::a9fe:a9fe]")

    def attributes(self) -> Dict[str, str]:
        urls = [META_DATA + path for path in ATTRIBUTE_PATHS.values()]
        bodies = self.context.http.get_many(
            [(url, {"optional": True}) for url in urls + [OPENSTACK_DOCUMENT]])
        attributes = {}
        for name, url, body in zip(ATTRIBUTE_PATHS, urls, bodies):
            value = formats.text(body, "GET " + url)
            if value is not None:
                attributes[name] = value
        uuid = parse_instance_uuid(bodies[-1], "GET " + OPENSTACK_DOCUMENT)
        if uuid is not None:
            attributes["OPENSTACK_INSTANCE_UUID"] = uuid
        return attributes

    def hostname(self) -> Optional[str]:
        url = META_DATA + "hostname"
        return formats.text(self.context.http.get(url, optional=True), "GET " + url) or None

    def ssh_keys(self) -> List[str]:
        index_url = META_DATA + "public-keys"
        listing = formats.text(self.context.http.get(index_url, optional=True), "GET " + index_url)
        key_urls = [f"{index_url}/{index}/openssh-key"
                    for index in formats.ec2_key_index(listing, "GET " + index_url)]
        keys: List[str] = []
        for url, body in zip(key_urls, self.context.http.get_many(
                [(url, {"optional": True}) for url in key_urls])):
            keys.extend(formats.key_lines(formats.text(body, "GET " + url)))
        return keys

    def network(self):
        body = self.context.http.get(NETWORK_DATA, optional=True)
        return openstack_drive.parse_network_data(body, priority=UNIT_PRIORITY,
                                                  source="GET " + NETWORK_DATA)

    def user_data(self) -> Optional[bytes]:
        return self.context.http.get(USER_DATA_URL, optional=True)


def parse_instance_uuid(body: Optional[bytes], source: str) -> Optional[str]:
    """``uuid`` of the OpenStack ``meta_data.json`` document (None when the document is absent)."""
    if body is None:
        return None
    return formats.string_field(formats.json_object(body, source), "uuid", source)
