"""Render docs/attributes.md, the per-platform attribute reference, from the code itself.

Names come from running every built-in provider against the fake metadata server (config-drive
platforms against a drive directory the fake server writes) for the machine of
tests/fixtures/contract-instance.yaml, joined with the names in the providers' own tables
(``ATTRIBUTE_PATHS``, ``ATTRIBUTE_FILES``, ``META_DATA_FIELDS`` …), so a name the sample machine
happens not to have still appears. Sources come from those same tables; the few names a
provider computes in code (indexed addresses, addresses derived from network descriptions) have
their source in ``COMPUTED`` below, and rendering fails when a provider writes a name that has
no source here — a new attribute cannot reach the code without reaching the reference.

Not on the boot path: run by tests/test_docs.py, which fails when docs/attributes.md is stale.

    .venv/bin/python tests/attributes_doc.py --write     # regenerate docs/attributes.md
"""

from __future__ import annotations

import importlib
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Set, Tuple

TESTS = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(TESTS)
DOC = os.path.join(REPO, "docs/attributes.md")
MACHINE_PATH = os.path.join(TESTS, "fixtures", "contract-instance.yaml")

# A trailing _0, _1 … is a position in a list (the name exists once per entry) except for these
# stems, which name the first NIC / access config only: there is never a _1.
FIXED_INDEX = {"GCP_IP_EXTERNAL_0", "GCP_IP_LOCAL_0", "GCE_IP_EXTERNAL_0", "GCE_IP_LOCAL_0"}

# Names a provider computes in code rather than reading through a table: name (indexed names
# with <n>) → source. Keep in step with the provider modules.
COMPUTED: Mapping[str, Mapping[str, str]] = {
    "akamai": {
        "AKAMAI_INSTANCE_TAGS": "`/v1/instance` `tags[]`, joined with `:`",
        "AKAMAI_PUBLIC_IPV4_<n>": "`/v1/network` `ipv4.public[n]` (prefix kept, `/32`)",
        "AKAMAI_PRIVATE_IPV4_<n>": "`/v1/network` `ipv4.private[n]`",
        "AKAMAI_SHARED_IPV4_<n>": "`/v1/network` `ipv4.shared[n]`",
        "AKAMAI_IPV6_SLAAC": "`/v1/network` `ipv6.slaac`",
        "AKAMAI_IPV6_LINK_LOCAL": "`/v1/network` `ipv6.link_local`",
        "AKAMAI_IPV6_RANGE_<n>": "`/v1/network` `ipv6.ranges[n]`",
        "AKAMAI_IPV6_SHARED_RANGE_<n>": "`/v1/network` `ipv6.shared_ranges[n]`",
    },
    "aws": {"AWS_REGION": "`dynamic/instance-identity/document` (JSON) `region`"},
    "ec2": {"EC2_REGION": "`dynamic/instance-identity/document` (JSON) `region`"},
    "azure": {
        "AZURE_VMSIZE": "IMDS `metadata/instance/compute/vmSize` (text)",
        "AZURE_IPV4_DYNAMIC": "WireServer goal state → SharedConfig: this instance's `address`",
        "AZURE_IPV4_VIRTUAL": "SharedConfig: the instance's `InputEndpoints/Endpoint` "
                              "`loadBalancedPublicAddress`, IP part",
    },
    "hetzner": {
        "HETZNER_PUBLIC_IPV6": "`network-config`: first IPv6 subnet of the first `physical` entry",
        "HETZNER_PRIVATE_IPV4_<n>": "`metadata/private-networks` (YAML list) entry n `ip`",
    },
    "kubevirt": {
        "KUBEVIRT_IPV4": "network description (`network_data.json` or `network-config`): first "
                         "IPv4 of the first interface with static addresses",
        "KUBEVIRT_IPV6": "the same, first IPv6",
    },
    "incus": {
        "INCUS_INSTANCE_ID": "`/1.0/meta-data` `instance-id`",
        "INCUS_HOSTNAME": "`/1.0/meta-data` `local-hostname`",
        "INCUS_INSTANCE_TYPE": "`/1.0` `instance_type` (`container`, `virtual-machine`)",
    },
    "lxd": {
        "LXD_INSTANCE_ID": "`/1.0/meta-data` `instance-id`",
        "LXD_HOSTNAME": "`/1.0/meta-data` `local-hostname`",
        "LXD_INSTANCE_TYPE": "`/1.0` `instance_type` (`container`, `virtual-machine`)",
    },
    "nocloud": {
        "NOCLOUD_INSTANCE_ID": "`meta-data` `instance-id`",
        "NOCLOUD_HOSTNAME": "`user-data` (`#cloud-config`) `hostname`, else `fqdn`, else "
                            "`meta-data` `local-hostname`",
        "NOCLOUD_IPV4": "`network-config`: first IPv4 of the first interface with static addresses",
        "NOCLOUD_IPV6": "`network-config`: first IPv6 of the first interface with static addresses",
    },
    "opennebula": {
        "OPENNEBULA_INSTANCE_ID": "`context.sh` `VMID`",
        "OPENNEBULA_HOSTNAME": "`context.sh` `SET_HOSTNAME`, else `HOSTNAME`",
        "OPENNEBULA_IPV4_<n>": "`context.sh` `ETH<n>_IP` (n: the NIC's number, not a position)",
        "OPENNEBULA_IPV6_<n>": "`context.sh` `ETH<n>_IP6`",
        "OPENNEBULA_IPV4_PUBLIC": "`context.sh` `PUBLIC_IP`, else `IP_PUBLIC`",
    },
    "openstack": {
        "OPENSTACK_INSTANCE_UUID": "`openstack/latest/meta_data.json` `uuid`",
        "OPENSTACK_HOSTNAME": "`openstack/latest/meta_data.json` `hostname`",
    },
    "openstack-metadata": {
        "OPENSTACK_INSTANCE_UUID": "`/openstack/2012-08-10/meta_data.json` `uuid`",
    },
    "packet": {
        "PACKET_IPV4_PUBLIC_<n>": "`network.addresses[]` IPv4 with `public: true`, counted in "
                                  "that bucket",
        "PACKET_IPV4_PRIVATE_<n>": "`network.addresses[]` IPv4 with `public: false`",
        "PACKET_IPV6_PUBLIC_<n>": "`network.addresses[]` IPv6 with `public: true`",
        "PACKET_IPV6_PRIVATE_<n>": "`network.addresses[]` IPv6 with `public: false`",
        "PACKET_IPV4_PUBLIC_GATEWAY_<n>": "the same entry's `gateway`",
        "PACKET_IPV4_PRIVATE_GATEWAY_<n>": "the same entry's `gateway`",
        "PACKET_IPV6_PUBLIC_GATEWAY_<n>": "the same entry's `gateway`",
        "PACKET_IPV6_PRIVATE_GATEWAY_<n>": "the same entry's `gateway`",
    },
    "proxmoxve": {
        "PROXMOXVE_INSTANCE_ID": "`meta-data` `instance-id`",
        "PROXMOXVE_HOSTNAME": "`user-data` (`#cloud-config`) `hostname`",
        "PROXMOXVE_IPV4": "`network-config` v1: first IPv4 of the first interface",
        "PROXMOXVE_IPV6": "`network-config` v1: first IPv6 of the first interface",
    },
    "qemu": {
        "QEMU_INSTANCE_ID": "fw_cfg `opt/org.cl-metadata/meta-data` `instance-id`",
        "QEMU_HOSTNAME": "fw_cfg `local-hostname`",
        "QEMU_<NAME>": "fw_cfg `attributes` mapping, one name per key (`IPV4_LOCAL` → "
                       "`QEMU_IPV4_LOCAL`)",
    },
    "vmware": {
        "VMWARE_INSTANCE_ID": "guestinfo `guestinfo.metadata` `instance-id`",
        "VMWARE_HOSTNAME": "guestinfo `guestinfo.metadata` `local-hostname`",
    },
    "vagrant-virtualbox": {
        "VAGRANT_VIRTUALBOX_HOSTNAME": "the machine's own hostname",
        "VAGRANT_VIRTUALBOX_PRIVATE_IPV4": "the first IPv4 address of `eth1`",
    },
}

# Where each provider's table values point: (module, table, how to render one value).
# ``stem`` tables are keyed by the name without the platform stem (aws/ec2, gcp/gce, akamai).
TABLES: Mapping[str, List[Tuple[str, str, str]]] = {
    "akamai": [("akamai", "INSTANCE_FIELDS", "`/v1/instance` `{}`|AKAMAI_INSTANCE_")],
    "aliyun": [("aliyun", "ATTRIBUTE_PATHS", "`{}`")],
    "aws": [("aws", "ATTRIBUTE_PATHS", "`{}`|AWS_")],
    "ec2": [("aws", "ATTRIBUTE_PATHS", "`{}`|EC2_")],
    "cloudstack": [("cloudstack_configdrive", "ATTRIBUTE_FILES", "drive `{}`"),
                   ("cloudstack_metadata", "ATTRIBUTE_PATHS", "service `{}`")],
    "cloudstack-configdrive": [("cloudstack_configdrive", "ATTRIBUTE_FILES", "drive `{}`")],
    "cloudstack-metadata": [("cloudstack_metadata", "ATTRIBUTE_PATHS", "`{}`")],
    "digitalocean": [],  # ADDRESS_BLOCKS, rendered by _digitalocean()
    "exoscale": [("exoscale", "ATTRIBUTE_PATHS", "`{}`")],
    "gcp": [("gcp", "ATTRIBUTE_PATHS", "`{}`|GCP_")],
    "gce": [("gcp", "ATTRIBUTE_PATHS", "`{}`|GCE_")],
    "hetzner": [("hetzner", "ROOT_FIELDS", "`metadata` (YAML) `{}`")],
    "ibmcloud": [("ibmcloud", "META_DATA_FIELDS", "`meta-data` `{}`")],
    "ibmcloud-classic": [("ibmcloud_classic", "META_DATA_FIELDS",
                          "`openstack/latest/meta_data.json` `{}`")],
    "nutanix": [("nutanix", "META_DATA_FIELDS", "`openstack/latest/meta_data.json` `{}`")],
    "openstack": [("openstack", "EC2_FIELDS", "`ec2/latest/meta-data.json` `{}`")],
    "openstack-metadata": [("openstack_metadata", "ATTRIBUTE_PATHS", "`latest/meta-data/{}`")],
    "oraclecloud": [("oraclecloud", "ATTRIBUTE_FIELDS", "`{}`")],
    "packet": [("packet", "SCALAR_ATTRIBUTES", "`{}`")],
    "powervs": [("powervs", "META_DATA_FIELDS", "`openstack/latest/meta_data.json` `{}`")],
    "scaleway": [("scaleway", "ATTRIBUTE_FIELDS", "`{}`")],
    "upcloud": [("upcloud", "ATTRIBUTE_PATHS", "`{}`")],
    "vultr": [("vultr", "ATTRIBUTE_PATHS", "`{}`")],
}

# Where the table paths above are rooted: provider id → (module, constant).
BASES: Mapping[str, Tuple[str, str]] = {
    "akamai": ("akamai", "BASE"), "aliyun": ("aliyun", "BASE"), "aws": ("aws", "DATA"),
    "ec2": ("aws", "DATA"), "digitalocean": ("digitalocean", "DOCUMENT"),
    "exoscale": ("exoscale", "META_DATA"), "gcp": ("gcp", "BASE"), "gce": ("gcp", "BASE"),
    "hetzner": ("hetzner", "BASE"), "openstack-metadata": ("openstack_metadata", "BASE"),
    "oraclecloud": ("oraclecloud", "INSTANCE_URL"), "packet": ("packet", "METADATA"),
    "scaleway": ("scaleway", "CONF"), "upcloud": ("upcloud", "BASE"), "vultr": ("vultr", "BASE"),
}

# Container Linux Config (ct) dynamic data: tests/test_ct_dynamic_data.py holds ct's table for
# the platforms it tests against the agent; these are the rest of ct's table.
CT_MORE = {
    "cloudstack-configdrive": {"HOSTNAME": "CLOUDSTACK_LOCAL_HOSTNAME"},  # ct wrote it unprefixed
    "vagrant-virtualbox": {"HOSTNAME": "COREOS_VAGRANT_VIRTUALBOX_HOSTNAME",
                           "PRIVATE_IPV4": "COREOS_VAGRANT_VIRTUALBOX_PRIVATE_IPV4"},
}
CT_FIELDS = ("HOSTNAME", "PRIVATE_IPV4", "PUBLIC_IPV4", "PRIVATE_IPV6", "PUBLIC_IPV6")


def _module(name: str):
    return importlib.import_module("cl_metadata.providers." + name)


def _value_text(value) -> str:
    return ".".join(value) if isinstance(value, tuple) else str(value)


def _digitalocean() -> Dict[str, str]:
    blocks = _module("digitalocean").ADDRESS_BLOCKS
    return {f"{name}_<n>": f"`interfaces.{side}[n].{block}.ip_address`"
            for block, (_, names) in blocks.items() for side, name in names.items()}


def table_sources(provider_id: str) -> Dict[str, str]:
    """Name → source from the provider modules' own tables."""
    sources: Dict[str, str] = {}
    if provider_id == "digitalocean":
        sources.update(_digitalocean())
        for field in ("hostname", "region"):
            sources[f"DIGITALOCEAN_{field.upper()}"] = f"`{field}`"
    if provider_id == "kubevirt":
        for layout, fields in _module("kubevirt").META_DATA_FIELDS.items():
            where = {"config-2": "`openstack/latest/meta_data.json`",
                     "cidata": "NoCloud `meta-data`"}[layout]
            for name, field in fields.items():
                text = f"{where} `{field}`"
                sources[name] = sources[name] + "; " + text if name in sources else text
    for module, table, template in TABLES.get(provider_id, ()):
        fmt, _, stem = template.partition("|")
        for key, value in getattr(_module(module), table).items():
            text = fmt.format(_value_text(value))  # a name two sources give lists both
            sources[stem + key] = sources[stem + key] + "; " + text if stem + key in sources else text
    return sources


def normalise(name: str) -> str:
    """``PACKET_IPV4_PUBLIC_0`` → ``PACKET_IPV4_PUBLIC_<n>`` (one row per indexed family)."""
    return name if name in FIXED_INDEX else re.sub(r"_\d+$", "_<n>", name)


def emitted_names() -> Dict[str, Set[str]]:
    """Run every built-in provider for the contract machine; its attribute names."""
    sys.path.insert(0, TESTS)
    from conftest import make_context  # noqa: E402  (tests/ is not a package)

    from cl_metadata.sources import dhcp

    from cl_metadata import registry
    from cl_metadata.fakeserver.drive import write_tree
    from cl_metadata.fakeserver.instance import load_instance
    from cl_metadata.fakeserver.render import renderer_for
    from cl_metadata.fakeserver.server import FakeServer, UnixFakeServer

    machine = load_instance(MACHINE_PATH)
    names: Dict[str, Set[str]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        # cloudstack-metadata finds its server in a DHCP lease; the endpoint override then sends
        # its requests to the fake server on 127.0.0.1
        leases = Path(tmp, "run/systemd/netif/leases")
        leases.mkdir(parents=True)
        (leases / "2").write_text("ADDRESS=10.20.30.40\nSERVER_ADDRESS=10.20.0.1\n")
        saved_root, dhcp.ROOT = dhcp.ROOT, tmp
        try:
            for provider_id in sorted(registry.BUILTIN):
                cls = registry.get(provider_id).provider
                if ATTRIBUTES_FEATURE not in cls.features:
                    names[provider_id] = set()
                elif cls.source == "http":
                    with FakeServer(provider_id, machine) as server:
                        provider = cls(make_context(server, timeout=10))
                        names[provider_id] = set(provider.attributes())
                elif cls.source == "local socket":  # the LXD/Incus guest API
                    with UnixFakeServer(provider_id, machine,
                                        socket_path=Path(tmp, provider_id + ".sock")) as server:
                        context = make_context(
                            environ={"CL_METADATA_LXD_SOCKET": server.socket_path})
                        names[provider_id] = set(cls(context).attributes())
                        context.close()
                elif cls.source.startswith("local"):
                    names[provider_id] = set()  # reads the machine itself: COMPUTED has them
                else:
                    drive = Path(tmp, "drive-" + provider_id)
                    write_tree(renderer_for(provider_id).drive_files(machine), drive)
                    context = make_context(environ={"CL_METADATA_CONFIG_DRIVE": str(drive)})
                    with cls(context) as provider:
                        names[provider_id] = set(provider.attributes())
        finally:
            dhcp.ROOT = saved_root
    return names


ATTRIBUTES_FEATURE = "attributes"


def rows(provider_id: str, emitted: Set[str]) -> List[Tuple[str, str]]:
    """(name without prefix, source) for every name the provider can write, sorted."""
    sources = {**table_sources(provider_id), **COMPUTED.get(provider_id, {})}
    missing = sorted({normalise(n) for n in emitted} - set(sources))
    if provider_id == "qemu":  # free-form QEMU_<NAME> from the fw_cfg attributes mapping
        missing = [n for n in missing if n in ("QEMU_INSTANCE_ID", "QEMU_HOSTNAME")]
    if missing:
        raise SystemExit(f"{provider_id}: no source known for {', '.join(missing)}: add it to "
                         f"the provider's table or to COMPUTED in {__file__}")
    return sorted(sources.items())


def ct_table() -> Dict[str, Dict[str, str]]:
    sys.path.insert(0, TESTS)
    from test_ct_dynamic_data import CT_TABLE

    return {**CT_TABLE, **CT_MORE}


def render(emitted: Optional[Mapping[str, Set[str]]] = None) -> str:
    from cl_metadata.outputs import flavors
    from cl_metadata import registry
    emitted = emitted_names() if emitted is None else emitted
    out: List[str] = []
    add = out.append
    add("# Attribute reference")
    add("")
    add("<!-- Generated by tests/attributes_doc.py from the providers' code; do not edit by hand.")
    add("     Regenerate: .venv/bin/python tests/attributes_doc.py --write -->")
    add("")
    add("Every platform id, every attribute name it can write and where the value comes from. "
        "Put the names in")
    add("`EnvironmentFile=` consumers: `/run/metadata/coreos` (`cl-metadata.service`, prefix "
        "`COREOS_`, the")
    add("default) or `/run/metadata/afterburn` (`afterburn.service`, `--attributes-prefix "
        "AFTERBURN`).")
    add("")
    add("- A name is written only when the platform has the item: a missing item (an HTTP 404, "
        "a field not in")
    add("  the document, a file not on the drive) leaves the line out; an item given as empty "
        "is written `NAME=`.")
    add("- `<n>` is a position, counted from 0: one name per entry of that list "
        "(`COREOS_PACKET_IPV4_PUBLIC_0`,")
    add("  `…_1`). Names ending in a literal `_0` have no `_1`.")
    add("- Values are trimmed; a value that cannot be written safely (control characters, over "
        "4 KiB) is left")
    add("  out with a warning naming the attribute.")
    add("- Flavors (`--attributes-flavor`) rename whole platforms: "
        + "; ".join(f"`{name}` reads "
                    + (", ".join(f"`{a}` as `{b}`" for a, b in sorted(f.ids.items()))
                       or "every id as itself")
                    + f" with prefix `{f.prefix}_`"
                    for name, f in flavors.FLAVORS.items()) + ".")
    add("")
    add("| id | source | attribute names |")
    add("|---|---|---|")
    for provider_id in sorted(registry.BUILTIN):
        cls = registry.get(provider_id).provider
        count = len(rows(provider_id, emitted[provider_id]))
        link = f"[{count}](#{provider_id})" if count else "none"
        add(f"| `{provider_id}` | {cls.description} ({cls.source}) | {link} |")
    add("")
    for provider_id in sorted(registry.BUILTIN):
        cls = registry.get(provider_id).provider
        add(f"## {provider_id}")
        add("")
        add(f"{cls.description}; source: {cls.source}; features: "
            + ", ".join(f"`{f}`" for f in sorted(cls.features)) + ".")
        if provider_id in BASES:
            module, constant = BASES[provider_id]
            add(f"Paths and fields are those of `{getattr(_module(module), constant)}`.")
        if provider_id in ("cloudstack", "cloudstack-metadata"):
            add("Service paths are under `http://<DHCP server identifier>/latest/meta-data/`."
                if provider_id == "cloudstack" else
                "Paths are under `http://<DHCP server identifier>/latest/meta-data/`.")
        add("")
        table = rows(provider_id, emitted[provider_id])
        if not table:
            add("No attributes.")
            add("")
            continue
        add("| `COREOS_` name | `AFTERBURN_` name | source |")
        add("|---|---|---|")
        for name, source in table:
            add(f"| `COREOS_{name}` | `AFTERBURN_{name}` | {source} |")
        add("")
        for name in cls.unprefixed_attributes:
            add(f"Also written without prefix: `{name}` (the name ct's dynamic data uses).")
            add("")
    add("## ct dynamic data")
    add("")
    add("Container Linux Config (`ct`) replaced `{FIELD}` in `etcd` and `flannel` sections with "
        "these variables;")
    add("each is written by the platform id of the same name. An empty cell: ct had no "
        "variable for it.")
    add("")
    add("| ct `--platform` | " + " | ".join(f"`{{{f}}}`" for f in CT_FIELDS) + " |")
    add("|---|" + "---|" * len(CT_FIELDS))
    for platform, fields in sorted(ct_table().items()):
        cells = [f"`{fields[f]}`" if f in fields else "" for f in CT_FIELDS]
        add(f"| `{platform}` | " + " | ".join(cells) + " |")
    add("")
    add("`custom` (reserved, never written by the agent; for a fetcher of your own): "
        "`COREOS_CUSTOM_HOSTNAME`,")
    add("`COREOS_CUSTOM_PRIVATE_IPV4`, `COREOS_CUSTOM_PUBLIC_IPV4`, `COREOS_CUSTOM_PRIVATE_IPV6`, "
        "`COREOS_CUSTOM_PUBLIC_IPV6`.")
    return "\n".join(out) + "\n"


def main(argv: List[str]) -> int:
    text = render()
    if argv[1:] == ["--write"]:
        os.makedirs(os.path.dirname(DOC), exist_ok=True)
        with open(DOC, "w", encoding="utf-8") as f:
            f.write(text)
        return 0
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
