"""Where provider ids come from: the built-in table, then the ``cl_metadata.providers``
entry-point group for platforms shipped as separate packages.

Built-ins are imported only when asked for, and entry points are scanned only for an id that is
not built in (or to list everything), so a normal run pays for exactly one provider module.
"""

from __future__ import annotations

import importlib
import logging
from typing import Dict, List, NamedTuple, Optional, Type

from cl_metadata.cmdline import NO_METADATA_IDS, OEM_ALIASES
from cl_metadata.errors import UsageError

log = logging.getLogger("cl_metadata")

ENTRY_POINT_GROUP = "cl_metadata.providers"

_P = "cl_metadata.providers."
BUILTIN: Dict[str, str] = {
    "akamai": _P + "akamai:AkamaiProvider",
    "aliyun": _P + "aliyun:AliyunProvider",
    "aws": _P + "aws:AwsProvider",
    "azure": _P + "azure:AzureProvider",
    "azurestack": _P + "azurestack:AzureStackProvider",
    "cloudstack": _P + "cloudstack:CloudStackProvider",
    "cloudstack-configdrive": _P + "cloudstack_configdrive:CloudStackConfigDriveProvider",
    "cloudstack-metadata": _P + "cloudstack_metadata:CloudStackMetadataProvider",
    "digitalocean": _P + "digitalocean:DigitalOceanProvider",
    "ec2": _P + "aws:Ec2Provider",
    "exoscale": _P + "exoscale:ExoscaleProvider",
    "gce": _P + "gcp:GceProvider",
    "gcp": _P + "gcp:GcpProvider",
    "hetzner": _P + "hetzner:HetznerProvider",
    "ibmcloud": _P + "ibmcloud:IBMCloudProvider",
    "ibmcloud-classic": _P + "ibmcloud_classic:IBMCloudClassicProvider",
    "incus": _P + "lxd:IncusProvider",
    "kubevirt": _P + "kubevirt:KubeVirtProvider",
    "lxd": _P + "lxd:LxdProvider",
    "nocloud": _P + "nocloud:NoCloudProvider",
    "nutanix": _P + "nutanix:NutanixProvider",
    "opennebula": _P + "opennebula:OpenNebulaProvider",
    "openstack": _P + "openstack:OpenStackProvider",
    "openstack-metadata": _P + "openstack_metadata:OpenStackMetadataProvider",
    "oraclecloud": _P + "oraclecloud:OracleCloudProvider",
    "packet": _P + "packet:PacketProvider",
    "powervs": _P + "powervs:PowerVSProvider",
    "proxmoxve": _P + "proxmoxve:ProxmoxVEProvider",
    "qemu": _P + "qemu:QemuProvider",
    "scaleway": _P + "scaleway:ScalewayProvider",
    "upcloud": _P + "upcloud:UpCloudProvider",
    "vagrant-virtualbox": _P + "vagrant_virtualbox:VagrantVirtualBoxProvider",
    "vmware": _P + "vmware:VmwareProvider",
    "vultr": _P + "vultr:VultrProvider",
}


class Entry(NamedTuple):
    id: str
    provider: type
    origin: str  # "built-in" or the distribution that ships the plugin


def _load(target: str):
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def _plugins() -> Dict[str, "object"]:
    """Entry points of the group by name; a plugin may not claim a built-in id."""
    from importlib.metadata import entry_points

    try:
        found = entry_points(group=ENTRY_POINT_GROUP)
    except TypeError:  # Python < 3.10: a dict keyed by group
        found = entry_points().get(ENTRY_POINT_GROUP, ())
    plugins = {}
    for ep in found:
        dist = getattr(getattr(ep, "dist", None), "name", None) or "unknown distribution"
        if ep.name in BUILTIN:
            log.warning("provider plugin %r from %s ignored: the id is built in", ep.name, dist)
            continue
        plugins[ep.name] = (ep, dist)
    return plugins


def _load_plugin(name: str, ep, dist: str) -> Optional[Entry]:
    try:
        provider = ep.load()
    except Exception as err:  # a broken plugin must not take down the run
        log.warning("provider plugin %r from %s failed to load: %s", name, dist,
                    type(err).__name__)
        return None
    if getattr(provider, "id", None) != name:
        log.warning("provider plugin %r from %s ignored: its class declares id %r",
                    name, dist, getattr(provider, "id", None))
        return None
    return Entry(name, provider, dist)


def resolve_id(provider_id: str) -> str:
    """The provider id an id (possibly an old OEM id) stands for; unknown ids unchanged."""
    if provider_id in BUILTIN:
        return provider_id
    return OEM_ALIASES.get(provider_id, provider_id)


def has_no_metadata(provider_id: str) -> bool:
    """True for an id whose platform has no metadata service (``metal``, ``virtualbox``, …):
    a run for it succeeds with a notice and touches nothing."""
    return provider_id not in BUILTIN and provider_id in NO_METADATA_IDS


def get(provider_id: str) -> Entry:
    """The provider for ``provider_id`` (aliases applied); ``UsageError`` when unknown."""
    resolved = resolve_id(provider_id)
    if resolved in BUILTIN:
        return Entry(resolved, _load(BUILTIN[resolved]), "built-in")
    plugin = _plugins().get(resolved)
    entry = _load_plugin(resolved, *plugin) if plugin else None
    if entry is None:
        raise UsageError(f"unknown provider {provider_id!r}; known providers: "
                         + ", ".join(known_ids()) + "; ids without a metadata service: "
                         + ", ".join(sorted(NO_METADATA_IDS)))
    return entry


def known_ids() -> List[str]:
    return sorted(set(BUILTIN) | set(_plugins()))


def all_entries() -> List[Entry]:
    entries = [Entry(pid, _load(target), "built-in") for pid, target in BUILTIN.items()]
    for name, (ep, dist) in _plugins().items():
        entry = _load_plugin(name, ep, dist)
        if entry is not None:
            entries.append(entry)
    return sorted(entries, key=lambda e: e.id)


def provider_class(provider_id: str) -> Type:
    return get(provider_id).provider
