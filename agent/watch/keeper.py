"""One look at the platform: fetch the keys (and attributes), validate them, rewrite only what
changed.

The keeper remembers what it last wrote for each user (the validated keys, in order) and the
attributes. A look whose answer is the same writes nothing. A look that fails — the platform
unreachable, an HTTP error, a document that does not parse — raises before anything is
written: keys are only ever removed because a successful, valid answer no longer lists them.
The first look after start (and after ``forget``, on SIGHUP) writes every fragment, so a
fragment edited locally is put back then.

Added and removed keys are logged by type and SHA256 fingerprint, never the key or comment.
"""

from __future__ import annotations

import logging
from typing import Callable, Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple

from cl_metadata import log as agent_log
from cl_metadata import pipeline, registry
from cl_metadata.context import Context
from cl_metadata.errors import MetadataError, OutputError
from cl_metadata.outputs import fingerprints, sshkeys
from cl_metadata.outputs.sshkeys import SshKey
from cl_metadata.sources.deadline import Deadline

log = logging.getLogger("cl_metadata")


class Plan(NamedTuple):
    """What to keep in step: the platform, the users (``pwd`` entries) and, optionally, the
    attributes file with its prefix."""

    provider_id: str
    users: Tuple = ()
    attributes_path: Optional[str] = None
    prefix: str = "COREOS"


class SyncFailed(Exception):
    """A look that changed nothing because the platform or an output failed; ``str`` is the
    one-line cause (never a value)."""


def describe_key(key: SshKey) -> str:
    return f"{key.type} {fingerprints.fingerprint(key)}"


class Keeper:
    """``context_factory(deadline)`` gives the Context of one look (tests: a fast-retrying
    client); by default a fresh one with ``environ`` and the kernel command line."""

    def __init__(self, plan: Plan, *, timeout: float, environ: Mapping[str, str],
                 kernel: Optional[Mapping[str, str]] = None,
                 context_factory: Optional[Callable[[Deadline], Context]] = None):
        self.plan = plan
        self.timeout = timeout
        self._environ = environ
        self._kernel = kernel
        self._context_factory = context_factory
        self._written: Dict[str, Tuple[SshKey, ...]] = {}  # user name -> keys last written
        self._attributes: Optional[Dict[str, str]] = None
        self._warnings: Tuple[str, ...] = ()
        self.writes = 0  # files written or removed, since start (tests, the bench)

    def forget(self) -> None:
        """The next look writes every output again (SIGHUP)."""
        self._written.clear()
        self._attributes = None
        self._warnings = ()

    def replan(self, plan: Plan) -> None:
        if plan.provider_id != self.plan.provider_id:
            self.forget()
        self.plan = plan

    def sync(self) -> int:
        """One look; returns how many outputs changed. Raises ``SyncFailed``."""
        entry = registry.get(self.plan.provider_id)
        job = pipeline.Job(provider_id=entry.id, attributes_path=self.plan.attributes_path,
                           ssh_users=tuple(u.pw_name for u in self.plan.users),
                           prefix=self.plan.prefix)
        needs = job.needs(entry.provider.features)
        deadline = Deadline(self.timeout)
        context = (self._context_factory(deadline) if self._context_factory is not None
                   else Context(deadline=deadline, environ=self._environ,
                                kernel_cmdline=self._kernel))
        try:
            with entry.provider(context) as provider:
                metadata = pipeline.fetch(provider, needs)
                unprefixed = tuple(provider.unprefixed_attributes)
        except MetadataError as err:
            if err.provider is None:
                err.provider = entry.id
            raise SyncFailed(str(err)) from None
        finally:
            context.close()
        keys: List[SshKey] = []
        if needs.ssh_keys:
            keys, warnings = sshkeys.validate_keys(metadata.ssh_keys)
            if tuple(warnings) != self._warnings:  # said once, not on every look
                for warning in warnings:
                    log.warning("%s", warning)
                self._warnings = tuple(warnings)
        return self._write(keys, metadata.attributes if needs.attributes else None, unprefixed)

    def _write(self, keys: Sequence[SshKey], attributes: Optional[Mapping[str, str]],
               unprefixed: Tuple[str, ...]) -> int:
        changed, failures = 0, []
        if attributes is not None and dict(attributes) != self._attributes:
            from cl_metadata.outputs import envfile
            try:
                envfile.write(self.plan.attributes_path, attributes, self.plan.prefix,
                              unprefixed=unprefixed)
                self._attributes = dict(attributes)
                changed += 1
            except OutputError as err:
                failures.append(str(err))
        wanted = tuple(keys)
        for user in self.plan.users:
            before = self._written.get(user.pw_name)
            if before == wanted:
                continue
            try:
                sshkeys.write_fragment(user, wanted)
            except OutputError as err:  # tried again at the next look
                failures.append(str(err))
                continue
            if before is not None:
                _log_changes(user.pw_name, before, wanted)
            self._written[user.pw_name] = wanted
            changed += 1
        self.writes += changed
        if failures:
            raise SyncFailed("; ".join(failures))
        return changed


def _log_changes(user: str, before: Sequence[SshKey], after: Sequence[SshKey]) -> None:
    old = {(k.type, k.blob): k for k in before}
    new = {(k.type, k.blob): k for k in after}
    for identity, key in new.items():
        if identity not in old:
            agent_log.notice("ssh key added for %s: %s", user, describe_key(key))
    for identity, key in old.items():
        if identity not in new:
            agent_log.notice("ssh key removed for %s: %s", user, describe_key(key))
