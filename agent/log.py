"""Logging for a boot agent: one line per step, never a metadata value.

Three calls are the whole interface used by the rest of the agent:
``setup(verbosity)``, ``event(kind, message, **fields)`` for the milestones other tools look for
(stable journal MESSAGE_IDs), and ``status(text)`` for systemd's ``STATUS=`` line.

Where lines go (decided once, in ``setup``):
- stderr is the journal (``$JOURNAL_STREAM``), systemd-python is importable and journald's
  socket exists → native entries with PRIORITY, MESSAGE_ID and CL_METADATA_* fields
  (``cl_metadata.journal``);
- stderr is the journal otherwise → ``<N>message`` lines (journald reads the prefix);
- otherwise → ``cl-metadata: [level: ]message`` lines for a person at a terminal.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any, Mapping, Optional, TextIO

from cl_metadata import journal

LOGGER_NAME = "cl_metadata"
log = logging.getLogger(LOGGER_NAME)


class _StderrFormatter(logging.Formatter):
    def __init__(self, journal_prefix: bool):
        super().__init__("%(message)s")
        self.journal_prefix = journal_prefix

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        if self.journal_prefix:
            return f"<{journal.syslog_priority(record.levelno)}>{text}"
        level = "" if record.levelno == logging.INFO else record.levelname.lower() + ": "
        return f"cl-metadata: {level}{text}"


def stderr_is_journal(environ: Mapping[str, str] = os.environ, stream: Any = None) -> bool:
    """True when stderr is connected to journald (``$JOURNAL_STREAM`` names its device:inode)."""
    return journal.stderr_is_journal(environ, sys.stderr if stream is None else stream)


def setup(verbosity: int = 0, *, stream: Optional[TextIO] = None,
          environ: Optional[Mapping[str, str]] = None) -> None:
    """Configure the agent's logger: INFO by default, DEBUG with ``-v``.

    ``stream`` and ``environ`` default to ``sys.stderr`` and ``os.environ`` (tests pass their own).
    """
    stream = sys.stderr if stream is None else stream
    environ = os.environ if environ is None else environ
    to_journal = journal.stderr_is_journal(environ, stream)
    stream_handler = logging.StreamHandler(stream)
    stream_handler.setFormatter(_StderrFormatter(to_journal))
    handler: logging.Handler = stream_handler
    if to_journal:  # only now is systemd-python worth importing
        native = journal.native_journal()
        if native is not None:
            handler = journal.JournalHandler(native, fallback=stream_handler)
    log.handlers[:] = [handler]
    log.setLevel(logging.DEBUG if verbosity > 0 else logging.INFO)
    log.propagate = False


def event(kind: str, message: str, **fields: str) -> None:
    """A milestone (``attributes-written``, ``ssh-keys-written``, ``ssh-keys-removed``,
    ``check-in-sent``). ``fields`` name users and paths, never values."""
    log.info(message, extra={"cl_metadata_event": kind, "cl_metadata_fields": fields},
             stacklevel=2)  # the journal's CODE_FILE/CODE_LINE name the caller


def status(text: str) -> None:
    """Progress for ``systemctl status`` (sd_notify ``STATUS=``); a no-op outside systemd."""
    log.debug("status: %s", text, stacklevel=2)
    # one line: a newline would start another assignment (READY=1, MAINPID=…) in the message
    journal.notify("STATUS=" + " ".join(text.splitlines()))
