"""One run: pick the provider, fetch what the outputs need, validate it all, then write.

Nothing is written until everything was fetched and validated, so bad metadata leaves every
existing output exactly as it was (every network stack asked for is rendered before any file
is written). Writes happen in Container Linux's order: attributes, SSH keys, hostname, network
units, then the netplan document and NetworkManager profiles, then the user-data file; the
check-in comes last.
"""

from __future__ import annotations

import logging
from typing import Callable, Collection, Dict, List, NamedTuple, Optional, Tuple

from cl_metadata import log as agent_log
from cl_metadata import registry
from cl_metadata.context import Context
from cl_metadata.errors import MetadataError, NoMetadataHere
from cl_metadata.model import Metadata, Needs
from cl_metadata.providers.base import (ATTRIBUTES, CHECK_IN, FEATURES, HOSTNAME,
                                        NETWORK_UNITS, SSH_KEYS, USER_DATA, Provider)

log = logging.getLogger("cl_metadata")

PREFIXES = ("COREOS", "AFTERBURN")


class Job(NamedTuple):
    """What the command line asked for."""

    provider_id: str
    attributes_path: Optional[str] = None
    ssh_users: Tuple[str, ...] = ()
    hostname_path: Optional[str] = None
    network_units_dir: Optional[str] = None
    check_in: bool = False
    prefix: str = "COREOS"
    netplan_dir: Optional[str] = None
    networkmanager_dir: Optional[str] = None
    instance_data_path: Optional[str] = None
    user_data_path: Optional[str] = None
    ssh_keys_per_user: bool = False  # each key only to the user it names (gcp/gce)

    def network_outputs(self) -> Dict[str, str]:
        """Writer module name → directory, for each network stack asked for."""
        dirs = {"networkd": self.network_units_dir, "netplan": self.netplan_dir,
                "networkmanager": self.networkmanager_dir}
        return {writer: directory for writer, directory in dirs.items() if directory is not None}

    def needs(self, features: Collection[str] = FEATURES) -> Needs:
        """The parts to fetch; ``features`` are the platform's: the instance-data document
        holds every part the platform has, and only those are fetched for it."""
        def wanted(asked: bool, feature: str) -> bool:
            return asked or (self.instance_data_path is not None and feature in features)

        return Needs(attributes=wanted(self.attributes_path is not None, ATTRIBUTES),
                     ssh_keys=wanted(bool(self.ssh_users), SSH_KEYS),
                     hostname=wanted(self.hostname_path is not None, HOSTNAME),
                     network=wanted(bool(self.network_outputs()), NETWORK_UNITS),
                     check_in=self.check_in,
                     user_data=wanted(self.user_data_path is not None, USER_DATA))


def run(job: Job, context: Context) -> None:
    entry = registry.get(job.provider_id)
    needs = job.needs(entry.provider.features)
    provider_id = entry.id
    if not needs.any():
        log.warning("%s: no output requested (--attributes, --ssh-keys, --hostname, "
                    "--network-units, --netplan-config, --networkmanager-profiles, "
                    "--instance-data, --user-data, --check-in); nothing to do", provider_id)
        return
    users = []
    if job.ssh_users:  # refuse an unusable user before the platform is even asked
        from cl_metadata.outputs import sshkeys
        users = [sshkeys.lookup_user(name) for name in job.ssh_users]
    from cl_metadata.outputs import fsutil
    # so is an output path that cannot be written (a symlink, no such directory, not writable)
    fsutil.check_outputs(files=(job.attributes_path, job.hostname_path, job.instance_data_path,
                                job.user_data_path),
                         directories=tuple(job.network_outputs().values()))

    agent_log.status(f"reading {provider_id} metadata")
    try:
        with entry.provider(context) as provider:
            metadata = fetch(provider, needs)
            hostname, keys, units = validate(metadata, needs, job)
            routed = None  # user name -> keys, with --ssh-keys-per-user
            if users and job.ssh_keys_per_user:
                from cl_metadata.outputs import sshkeys_per_user
                routed = sshkeys_per_user.route(provider, keys, users)
            user_data = _user_data(provider, metadata, job)  # inflated before any write
            document = None
            if job.instance_data_path is not None:  # built, and so checked, before any write
                document = instance_data(provider, metadata, hostname, keys,
                                         warn=job.attributes_path is None)
            _write(job, provider, metadata, hostname, keys, units, users, routed)
            if document is not None:
                from cl_metadata.outputs import instancedata
                instancedata.write(job.instance_data_path, document)
            if job.user_data_path is not None:
                _write_user_data(job.user_data_path, provider, user_data)
            if needs.check_in:
                _check_in(provider)
    except NoMetadataHere as err:  # nothing written, and no key fragment removed
        err.provider = err.provider or provider_id
        agent_log.notice("%s", err)
        return
    except MetadataError as err:
        if err.provider is None:
            err.provider = provider_id
        raise
    agent_log.status(f"{provider_id} metadata written")


def fetch(provider: Provider, needs: Needs) -> Metadata:
    """Ask the provider for the parts ``needs`` names, concurrently when there are several."""
    calls: Dict[str, Callable[[], object]] = {}
    if needs.attributes:
        calls["attributes"] = provider.attributes
    if needs.ssh_keys:
        calls["ssh_keys"] = provider.ssh_keys
    if needs.hostname:
        calls["hostname"] = provider.hostname
    if needs.network and NETWORK_UNITS in provider.features:
        calls["network"] = provider.network
    if needs.user_data and USER_DATA in provider.features:
        calls["user_data"] = provider.user_data
    log.debug("%s: fetching %s", provider.id, ", ".join(calls).replace("_", " ") or "nothing")
    results = _call_all(calls)
    interfaces, netdevs = results.get("network", ((), ()))
    return Metadata(attributes=results.get("attributes", {}),
                    ssh_keys=tuple(results.get("ssh_keys", ())),
                    hostname=results.get("hostname"),
                    interfaces=tuple(interfaces), netdevs=tuple(netdevs),
                    can_check_in=CHECK_IN in provider.features,
                    user_data=results.get("user_data"))


def _call_all(calls: Dict[str, Callable[[], object]]) -> Dict[str, object]:
    """Every call's result, by name; the first call to fail ends the wait and raises.

    A part fails only for good (a permanent error, or the deadline: the client retries
    transient failures until then), and the run needs every part, so a part that already
    failed is not left waiting behind another that is still retrying.
    """
    if len(calls) <= 1:
        return {name: call() for name, call in calls.items()}
    # only runs with several parts need threads
    from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait

    pool = ThreadPoolExecutor(max_workers=len(calls))
    try:
        futures = {name: pool.submit(call) for name, call in calls.items()}
        done, _ = wait(futures.values(), return_when=FIRST_EXCEPTION)
        for future in futures.values():  # of the failures known by now, the first asked for
            if future in done and future.exception() is not None:
                raise future.exception()
        return {name: future.result() for name, future in futures.items()}
    finally:
        pool.shutdown(wait=False)  # on an error the others need not be waited for


def validate(metadata: Metadata, needs: Needs, job: Job):
    """The host name normalised, the valid SSH keys (warnings logged for the others) and, for
    each network writer ``job`` asks for, its files; raises ``InvalidMetadata``."""
    hostname = None
    if metadata.hostname:
        from cl_metadata.outputs import hostname as hostnames
        hostname = hostnames.normalize(metadata.hostname)
    keys: List = []
    if needs.ssh_keys:
        from cl_metadata.outputs import sshkeys
        keys, warnings = sshkeys.validate_keys(metadata.ssh_keys)
        for warning in warnings:
            log.warning("%s", warning)
    units: Dict[str, Dict[str, bytes]] = {}  # writer → file name → content
    if needs.network and (metadata.interfaces or metadata.netdevs):
        import importlib

        for writer in job.network_outputs():  # every stack rendered before any is written
            module = importlib.import_module(f"cl_metadata.network.{writer}")
            units[writer] = module.render(metadata.interfaces, metadata.netdevs)
    return hostname, keys, units


def instance_data(provider: Provider, metadata: Metadata, hostname, keys, *,
                  warn: bool = True) -> dict:
    """The instance-data document of what ``fetch`` and ``validate`` gave (every part
    fetched); raises ``InvalidMetadata`` for a network description no writer would accept."""
    from cl_metadata.outputs import instancedata

    user_data = None  # the platform has no user-data at all
    if USER_DATA in provider.features:
        user_data = bool(metadata.user_data)  # empty counts as none, as for --user-data
    return instancedata.document(provider, metadata, hostname, keys, user_data=user_data,
                                 warn=warn)


def _write(job: Job, provider: Provider, metadata: Metadata, hostname, keys, units,
           users, routed=None) -> None:
    if job.attributes_path is not None:
        from cl_metadata.outputs import envfile
        envfile.write(job.attributes_path, metadata.attributes, job.prefix,
                      unprefixed=provider.unprefixed_attributes)
    if users:
        from cl_metadata.outputs import sshkeys
        for user in users:
            sshkeys.write_fragment(user, keys if routed is None else routed[user.pw_name])
    if job.hostname_path is not None:
        if hostname is None:
            log.info("%s: the platform gives no hostname; %s not written", provider.id,
                     job.hostname_path)
        else:
            from cl_metadata.outputs import hostname as hostnames
            hostnames.write(job.hostname_path, hostname)
    for writer, directory in job.network_outputs().items():
        if units.get(writer):
            import importlib

            importlib.import_module(f"cl_metadata.network.{writer}").write_files(directory,
                                                                          units[writer])
        else:
            log.info("%s: the platform describes no network interfaces; nothing written to %s",
                     provider.id, directory)


def _user_data(provider: Provider, metadata: Metadata, job: Job) -> Optional[bytes]:
    """The user-data file's content (gzip inflated), None when there is none to write."""
    if job.user_data_path is None or USER_DATA not in provider.features:
        return None
    from cl_metadata.outputs import userdata

    return userdata.prepare(metadata.user_data, provider.user_data_source or provider.id)


def _write_user_data(path: str, provider: Provider, data: Optional[bytes]) -> None:
    from cl_metadata.outputs import userdata

    if USER_DATA not in provider.features:  # no such thing here: whatever is there is not ours
        log.info("%s: this platform has no user-data; nothing written to %s", provider.id, path)
    elif data is None:  # the platform holds none: a file from an earlier boot goes
        userdata.remove_stale(path, provider.id)
    else:
        userdata.write(path, data)


def _check_in(provider: Provider) -> None:
    if CHECK_IN not in provider.features:
        log.info("%s: the platform has no boot check-in; nothing to do", provider.id)
        return
    agent_log.status(f"checking in with {provider.id}")
    provider.check_in()
    agent_log.event("check-in-sent", f"{provider.id}: check-in sent", provider=provider.id)
