"""First-boot-only keys (``--ssh-keys-once``): a user whose key fragment exists is left alone.

The fragment itself is the record that keys were taken: written on the first boot whose run
succeeded, then never rewritten nor removed, whatever the platform serves later (a user who
deletes it gets the platform's keys again at the next boot). This does not depend on
``ConditionFirstBoot=``, which an image gets only when it ships an empty or "uninitialized"
``/etc/machine-id``, and which never comes back when the first boot could not reach the
platform: a machine would then keep no keys at all.

Only looked at, never opened: ``.ssh`` and ``authorized_keys.d`` are entered without following
a symbolic link (the key writer refuses those anyway, with an error naming them).
"""

from __future__ import annotations

import logging
import os
from typing import List, Sequence

from cl_metadata.outputs import fsutil, sshkeys

log = logging.getLogger("cl_metadata")


def has_fragment(user, fragment: str = sshkeys.DEFAULT_FRAGMENT) -> bool:
    """Whether ``~USER/.ssh/authorized_keys.d/<fragment>`` exists (whatever it is)."""
    fds: List[int] = []
    try:
        fds.append(fsutil.open_dir(user.pw_dir))
        for name in (sshkeys.SSH_DIR, sshkeys.FRAGMENT_DIR):
            fds.append(fsutil.open_dir_nofollow(name, fds[-1]))
        os.stat(fragment, dir_fd=fds[-1], follow_symlinks=False)
        return True
    except OSError:  # missing, or a symlinked directory: the writer decides (and refuses)
        return False
    finally:
        for fd in fds:
            os.close(fd)


def users_without_fragment(names: Sequence[str]) -> List[str]:
    """The users of ``names`` whose keys are still to be taken; raises ``OutputError`` for an
    unusable user, as a run does."""
    wanted = []
    for name in names:
        user = sshkeys.lookup_user(name)
        if has_fragment(user):
            log.info("ssh keys for %s: %s/%s/%s/%s exists; --ssh-keys-once leaves it alone",
                     name, user.pw_dir.rstrip("/"), sshkeys.SSH_DIR, sshkeys.FRAGMENT_DIR,
                     sshkeys.DEFAULT_FRAGMENT)
        else:
            wanted.append(name)
    return wanted
