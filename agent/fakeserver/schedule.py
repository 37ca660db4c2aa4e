"""A platform that changes while the guest runs, told by the host through files.

QEMU's ``guestfwd`` starts one ``--stdio`` server per connection, so nothing the host does to a
running server process reaches the next one; a file every process looks at does. The host
decides when (touch or remove a file), so a test knows exactly what was served before and after.

- ``switch_file`` with ``then_instance``: while the file exists, ``then_instance`` is served
  instead of the server's instance (keys added or revoked in a cloud console); removed again,
  the server's own instance is back.
- ``outage_file``: while the file exists the platform is gone: every request is dropped without
  a byte of answer, as a metadata service that went away mid-connection would.

Each request looks at the files when it arrives; a request held in a long poll (GCE's
``wait_for_change``) looks again every ``POLL_INTERVAL`` seconds, so it is answered when the
switch file appears and dropped when the outage file does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ..errors import UsageError
from .instance import Instance

POLL_INTERVAL = 0.2  # seconds between two looks at the files while a long poll is held


class PlatformGone(Exception):
    """The outage file exists: the request gets no answer, its connection is dropped."""


@dataclass(frozen=True)
class Schedule:
    switch_file: Optional[Path] = None
    then_instance: Optional[Instance] = None
    outage_file: Optional[Path] = None

    def __post_init__(self) -> None:
        if (self.switch_file is None) != (self.then_instance is None):
            raise UsageError("a switch file and the instance it switches to go together "
                             "(--switch-file with --then-instance)")

    def switched(self) -> bool:
        """True while the switch file exists: serve ``then_instance``."""
        return self.switch_file is not None and self.switch_file.exists()

    def gone(self) -> bool:
        """True while the outage file exists: answer nothing."""
        return self.outage_file is not None and self.outage_file.exists()
