"""Logging for a boot agent: one line per step, never a metadata value.

Three calls are the whole interface used by the rest of the agent:
``setup(verbosity)``, ``event(kind, message, **fields)`` for the milestones other tools look for
(stable journal MESSAGE_IDs), and ``status(text)`` for systemd's ``STATUS=`` line.
"""

from __future__ import annotations

import logging
import os
import sys

LOGGER_NAME = "cl_metadata"
log = logging.getLogger(LOGGER_NAME)

# syslog priorities for the "<N>" prefix journald understands on a stream (SyslogLevelPrefix=)
_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3,
             logging.CRITICAL: 2}


class _StderrFormatter(logging.Formatter):
    def __init__(self, journal_prefix: bool):
        super().__init__("%(message)s")
        self.journal_prefix = journal_prefix

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        if self.journal_prefix:
            return f"<{_PRIORITY.get(record.levelno, 6)}>{text}"
        level = "" if record.levelno == logging.INFO else record.levelname.lower() + ": "
        return f"cl-metadata: {level}{text}"


def stderr_is_journal(environ=os.environ, stream=sys.stderr) -> bool:
    """True when stderr is connected to journald (``$JOURNAL_STREAM`` names its device:inode)."""
    value = environ.get("JOURNAL_STREAM", "")
    try:
        device, inode = (int(part) for part in value.split(":"))
        st = os.fstat(stream.fileno())
    except (ValueError, OSError, AttributeError):
        return False
    return (st.st_dev, st.st_ino) == (device, inode)


def setup(verbosity: int = 0) -> None:
    """Configure the agent's logger: INFO by default, DEBUG with ``-v``."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_StderrFormatter(stderr_is_journal()))
    log.handlers[:] = [handler]
    log.setLevel(logging.DEBUG if verbosity > 0 else logging.INFO)
    log.propagate = False


def event(kind: str, message: str, **fields: str) -> None:
    """A milestone (``attributes-written``, ``ssh-keys-written``, ``ssh-keys-removed``,
    ``check-in-sent``). ``fields`` name users and paths, never values."""
    log.info(message, extra={"cl_metadata_event": kind, "cl_metadata_fields": fields})


def status(text: str) -> None:
    """Progress for ``systemctl status`` (sd_notify ``STATUS=``); a no-op outside systemd."""
    log.debug("status: %s", text)
