"""Per-user SSH keys (opt-in): each key goes only to the local user its platform names.

GCE's key lines are ``user:key``; by default the user is dropped and every key goes to every
``--ssh-keys`` user, as upstream. With ``--ssh-keys-per-user`` (or ``ssh-keys-per-user = yes``
in the settings file) a user's fragment holds exactly the keys whose ``user:`` names that user.
The users are those asked for, already looked up (they exist, with a home they own): no
account is ever created, and a key naming anyone else is left out. A key is never routed to a
uid-0 account, even one asked for: whoever may edit project-wide metadata could otherwise reach
root on every machine of the project, which is what per-user keys exist to prevent. The keys
left out are counted in one notice, never named: a user name is metadata too.

A platform whose keys name no user (every platform but gcp/gce) keeps the default, with one
informational line.
"""

from __future__ import annotations

import logging
from typing import Dict, List, Optional, Sequence, Set, Tuple

from cl_metadata import log as agent_log
from cl_metadata.outputs.sshkeys import SshKey, parse_key

log = logging.getLogger("cl_metadata")


def route(provider, keys: Sequence[SshKey], users) -> Optional[Dict[str, List[SshKey]]]:
    """User name → that user's keys, of the validated ``keys`` (their order kept), for each
    of ``users`` (passwd entries); None when the platform's keys name no user."""
    by_user = getattr(provider, "ssh_keys_by_user", None)
    if by_user is None:
        log.info("%s: the platform's keys name no user; every user asked for gets every key",
                 provider.id)
        return None
    owners: Dict[Tuple[str, str], Set[str]] = {}  # (type, blob) -> the users the platform names
    for user, line in by_user():
        try:
            key = parse_key(line)
        except ValueError:  # the validation of the whole list has warned about it
            continue
        owners.setdefault((key.type, key.blob), set()).add(user)
    allowed = {user.pw_name for user in users if user.pw_uid != 0}
    routed = {user.pw_name: [key for key in keys
                             if user.pw_name in allowed
                             and user.pw_name in owners.get((key.type, key.blob), ())]
              for user in users}
    left_out = sum(1 for key in keys if not owners.get((key.type, key.blob), set()) & allowed)
    if left_out:
        agent_log.notice("%s: %d ssh key%s left out: %s no user asked for, or root "
                         "(per-user keys)", provider.id, left_out,
                         "" if left_out == 1 else "s", "it names" if left_out == 1 else "they name")
    return routed
