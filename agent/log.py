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

How much goes there (also decided in ``setup``):
- by default on a terminal (or a pipe, a file): notices, warnings and errors only, so a failure
  is exactly one line and a success prints nothing (a notice says a run had nothing to do:
  no platform, or one without a metadata service);
- by default on the journal: info as well, the boot's record of where the metadata came from
  (config drive or metadata service) and what was written, sent or left alone, the milestones
  with their MESSAGE_IDs among them;
- with ``-v``: debug as well, wherever stderr goes: each step and request line (never a body).
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any, Mapping, Optional, TextIO

from cl_metadata import journal

LOGGER_NAME = "cl_metadata"
log = logging.getLogger(LOGGER_NAME)

# syslog's "notice" (5): a normal but significant condition, such as "no platform: nothing to
# do". Between INFO and WARNING, so a terminal shows it and the journal files it at priority 5.
NOTICE = 25
logging.addLevelName(NOTICE, "NOTICE")


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
    """Configure the agent's logger: DEBUG with ``-v``, else INFO on the journal, else NOTICE.

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
    if verbosity > 0:
        log.setLevel(logging.DEBUG)
    else:
        log.setLevel(logging.INFO if to_journal else NOTICE)
    log.propagate = False


def event(kind: str, message: str, **fields: str) -> None:
    """A milestone (``attributes-written``, ``ssh-keys-written``, ``ssh-keys-removed``,
    ``check-in-sent``). ``fields`` name users and paths, never values; the SSH-key milestones
    also carry Afterburn's MESSAGE_IDs and fields (see ``cl_metadata.journal``)."""
    log.info(message, extra={"cl_metadata_event": kind, "cl_metadata_fields": fields},
             stacklevel=2)  # the journal's CODE_FILE/CODE_LINE name the caller


def notice(message: str, *args: object) -> None:
    """A run that succeeds without doing anything worth a warning says why, once."""
    log.log(NOTICE, message, *args, stacklevel=2)


def status(text: str) -> None:
    """Progress for ``systemctl status`` (sd_notify ``STATUS=``); a no-op outside systemd."""
    log.debug("status: %s", text, stacklevel=2)
    # one line: a newline would start another assignment (READY=1, MAINPID=…) in the message
    journal.notify("STATUS=" + " ".join(text.splitlines()))
