"""CloudStack, as Ignition and Flatcar name it: the config drive when the VM has one, else the
metadata service of the virtual router, found through the DHCP lease.

The two sources are those of ``cloudstack-configdrive`` and ``cloudstack-metadata`` (their
modules describe each protocol; docs/protocols.md "cloudstack"), and each gives its own
``CLOUDSTACK_*`` names (docs/attributes.md):

- Config drive: label ``config-2`` (else ``CONFIG-2``), or CloudStack's own mount at
  ``/media/ConfigDrive``; text files under ``cloudstack/metadata/`` (availability zone, cloud
  identifier, instance id, local hostname, service offering, VM id, public keys), interfaces
  from ``openstack/latest/network_data.json``, user-data ``cloudstack/userdata/user_data.txt``.
- Metadata service: ``http://<DHCP server identifier>/latest/meta-data/`` items (those above
  plus the public hostname, both IPv4 addresses and Go's ``CLOUDSTACK_HOSTNAME``), keys from
  ``public-keys``, user-data ``/latest/user-data``; no interfaces.

The drive is looked for once, without waiting for udev (as ``openstack``; ``--local-only``
waits as for every drive), read at construction and unmounted at once. No drive means the
metadata service; a drive that cannot be used (it will not mount, a file escapes it, or it is
a ``config-2`` drive without ``cloudstack/metadata/``) means the metadata service with a
warning. A drive that is read but holds a bad file is an error, never a fallback: the drive is
the platform's answer.

``CLOUDSTACK_LOCAL_HOSTNAME`` is also written without prefix, whichever source gave it: ct's
dynamic data references that name, and Flatcar's ``cloudstack`` id selected the config drive's
provider, which writes it.
"""

from __future__ import annotations

import logging
from typing import Dict, List, Optional

from cl_metadata.errors import ConfigDriveError, ConfigDriveNotFound
from cl_metadata.providers import cloudstack_configdrive as configdrive
from cl_metadata.providers.base import ATTRIBUTES, NETWORK_UNITS, SSH_KEYS, USER_DATA, Provider
from cl_metadata.providers.cloudstack_configdrive import CloudStackConfigDriveProvider
from cl_metadata.providers.cloudstack_metadata import CloudStackMetadataProvider

log = logging.getLogger("cl_metadata")


class _DriveFound(CloudStackConfigDriveProvider):
    """``cloudstack-configdrive``'s reading of a drive that is there now: no wait for udev,
    since the metadata service is the answer when there is none."""

    drive_wait = 0.0


class CloudStackProvider(Provider):
    id = "cloudstack"
    description = "CloudStack config drive, else the metadata service (server from the DHCP lease)"
    source = "config drive, else http"
    features = frozenset({ATTRIBUTES, SSH_KEYS, NETWORK_UNITS, USER_DATA})
    user_data_source = (configdrive.USER_DATA_FILE + " on the config drive, else "
                        + CloudStackMetadataProvider.user_data_source)
    unprefixed_attributes = ("CLOUDSTACK_LOCAL_HOSTNAME",)

    def __init__(self, context):
        super().__init__(context)
        self.part: Provider
        try:
            self.part = _DriveFound(context)
        except ConfigDriveNotFound:
            log.info("cloudstack: no config drive; using the metadata service")
            self.part = CloudStackMetadataProvider(context)
        except ConfigDriveError as err:
            log.warning("cloudstack: config drive unusable (%s); using the metadata service", err)
            self.part = CloudStackMetadataProvider(context)

    def attributes(self) -> Dict[str, str]:
        return self.part.attributes()

    def ssh_keys(self) -> List[str]:
        return self.part.ssh_keys()

    def network(self):
        return self.part.network()

    def user_data(self) -> Optional[bytes]:
        return self.part.user_data()
