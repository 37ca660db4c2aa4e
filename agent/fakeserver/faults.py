"""Injected misbehaviour, per path: for the first N matching requests, for the first S
seconds, or always.

Spec syntax (command line): ``PATH=KIND[:ARG][@N|@Ss]``, e.g.
``/latest/meta-data/hostname=status:503@2``, ``*=status:503@8s``, ``*=delay:0.5``,
``/openstack/latest/meta_data.json=malformed``. No commas anywhere, so a spec fits in QEMU's
``guestfwd=…-cmd:`` option.

PATH is ``*`` (every request), a prefix ending in ``*``, a path with a query (matched against
``path?query``) or an exact path (query ignored).

Per request, every matching ``delay`` applies (they add up); of the other kinds, the first
matching fault that has uses left applies. Each applied fault uses one of its N uses; once used
up, normal answers resume. Two faults on one path therefore queue: ``/x=status:503@1`` then
``/x=empty@1`` answers 503, then an empty 200, then the real document. ``@Ss`` limits a fault
to requests arriving less than S seconds after the first request the server saw.

The uses left and the time of the first request live in the server's memory, or with
:class:`SharedFaultState` (``--state FILE``) in a file under ``flock``: QEMU's ``guestfwd``
starts one ``--stdio`` server per connection, and they must count together.

| kind | ARG | effect |
|---|---|---|
| status | CODE[:RETRY_AFTER] | that status, a short body, optional ``Retry-After`` |
| delay | seconds (required) | wait, then answer normally (or with another fault) |
| drip | seconds per byte (default 0.05) | the normal answer, body sent one byte per interval |
| truncate | bytes to send (default half) | normal headers, Content-Length larger than what is sent, close |
| reset | — | close without answering (RST via SO_LINGER 0 on TCP) |
| oversize | bytes (default 1 MiB + 1) | 200 with a body of that many bytes |
| redirect | URL (required) | 302 to URL |
| malformed | body text (default garbage) | the normal status with the body replaced |
| empty | — | 200 with an empty body |
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

from ..errors import UsageError

KINDS = ("status", "delay", "drip", "truncate", "reset", "oversize", "redirect", "malformed", "empty")
DEFAULT_DRIP_INTERVAL = 0.05
DEFAULT_OVERSIZE = 1024 * 1024 + 1  # one byte over the agent's 1 MiB response cap
DEFAULT_MALFORMED = b'{"uuid": "\xff\x00 <html>not json'

_SPEC = re.compile(r"^(?P<path>\*|/\S*?)=(?P<kind>" + "|".join(KINDS) + r")"
                   r"(?::(?P<arg>.*?))?(?:@(?:(?P<seconds>\d+(?:\.\d+)?)s|(?P<count>\d+)))?$",
                   re.DOTALL)
STATE_MAX_BYTES = 1 << 20


class FaultError(UsageError):
    """A fault spec or argument is invalid (exit status 2)."""


def _number(kind: str, arg: Any, cast, default=None, minimum=0):
    if arg is None or arg == "":
        if default is None:
            raise FaultError(f"fault {kind}: needs an argument")
        return default
    try:
        value = cast(arg)
    except (TypeError, ValueError):
        what = "an integer" if cast is int else "a number"
        raise FaultError(f"fault {kind}: argument must be {what}") from None
    if value < minimum:
        raise FaultError(f"fault {kind}: argument must be at least {minimum}")
    return value


def _status(arg: Any) -> Tuple[int, Optional[str]]:
    code_text, _, retry_after = str(arg if arg is not None else "").partition(":")
    code = _number("status", code_text, int)
    if not 200 <= code <= 599:
        raise FaultError("fault status: code must be 200-599")
    return code, (retry_after or None)


def _no_arg(kind: str, arg: Any) -> None:
    if arg not in (None, ""):
        raise FaultError(f"fault {kind}: takes no argument")


def _parse_arg(kind: str, arg: Any) -> Any:
    if kind == "status":
        return _status(arg)
    if kind == "delay":
        return _number(kind, arg, float)
    if kind == "drip":
        return _number(kind, arg, float, DEFAULT_DRIP_INTERVAL)
    if kind == "truncate":
        return None if arg in (None, "") else _number(kind, arg, int)
    if kind == "oversize":
        return _number(kind, arg, int, DEFAULT_OVERSIZE)
    if kind == "redirect":
        if not arg:
            raise FaultError("fault redirect: needs a URL")
        return str(arg)
    if kind == "malformed":
        if arg in (None, ""):
            return DEFAULT_MALFORMED
        return arg if isinstance(arg, bytes) else str(arg).encode("utf-8")
    _no_arg(kind, arg)  # reset, empty
    return None


@dataclass(frozen=True)
class Fault:
    path: str
    kind: str
    arg: Union[str, int, float, bytes, None] = None
    count: Optional[int] = None  # None = every matching request
    value: Any = field(init=False, repr=False, compare=False)  # arg, parsed for the kind
    seconds: Optional[float] = None  # only requests this long after the first one (None = any)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise FaultError(f"unknown fault kind {self.kind!r}; known: {', '.join(KINDS)}")
        if not (self.path == "*" or self.path.startswith("/")):
            raise FaultError(f"fault path must be '*' or start with '/': {self.path!r}")
        if self.count is not None and (not isinstance(self.count, int) or self.count < 1):
            raise FaultError("fault count must be a positive integer")
        if self.seconds is not None:
            if self.count is not None:
                raise FaultError("a fault is limited by a count or by seconds, not both")
            if not isinstance(self.seconds, (int, float)) or not self.seconds > 0:
                raise FaultError("fault seconds must be a positive number")
        object.__setattr__(self, "value", _parse_arg(self.kind, self.arg))

    def matches(self, path: str, query: str) -> bool:
        if self.path == "*":
            return True
        if self.path.endswith("*"):
            return path.startswith(self.path[:-1])
        if "?" in self.path:
            return self.path == f"{path}?{query}"
        return self.path == path


def parse_fault(spec: str) -> Fault:
    """Parse ``PATH=KIND[:ARG][@N|@Ss]``."""
    match = _SPEC.match(spec)
    if match is None:
        raise FaultError(f"invalid fault spec {spec!r}: expected PATH=KIND[:ARG][@N] "
                         f"with KIND one of {', '.join(KINDS)}")
    count, seconds = match.group("count"), match.group("seconds")
    return Fault(match.group("path"), match.group("kind"), match.group("arg"),
                 int(count) if count is not None else None,
                 seconds=float(seconds) if seconds is not None else None)


State = Dict[str, Any]  # {"start": time of the first request or None, "used": {key: uses}}


def _empty_state() -> State:
    return {"start": None, "used": {}}


class SharedFaultState:
    """Fault bookkeeping in a JSON file, read and rewritten under ``flock`` per request."""

    def __init__(self, path: Union[str, Path]):
        self.path = Path(path)

    @contextlib.contextmanager
    def locked(self) -> Iterator[State]:
        """The state, exclusively; what the caller changes is written back on exit."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as err:
            raise FaultError(f"{self.path}: cannot open fault state: {err.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            raw = os.read(fd, STATE_MAX_BYTES + 1)
            state = self._parse(raw)
            yield state
            data = json.dumps(state, sort_keys=True).encode("utf-8")
            os.lseek(fd, 0, os.SEEK_SET)
            os.ftruncate(fd, 0)
            os.write(fd, data)
        finally:
            os.close(fd)  # releases the lock

    def _parse(self, raw: bytes) -> State:
        if not raw.strip():
            return _empty_state()
        try:
            state = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            state = None
        if (not isinstance(state, dict) or not isinstance(state.get("used"), dict)
                or not isinstance(state.get("start"), (int, float, type(None)))):
            raise FaultError(f"{self.path}: not a fault state file")
        return state


class FaultPlan:
    """The faults of one server, with the uses each has left (thread-safe; with a
    :class:`SharedFaultState`, also across processes)."""

    def __init__(self, faults: Sequence[Fault] = (), *, state: Optional[SharedFaultState] = None,
                 clock: Callable[[], float] = time.time):
        self._faults = list(faults)
        self._shared = state
        self._memory = _empty_state()
        self._clock = clock
        self._lock = threading.Lock()

    @staticmethod
    def _key(i: int, fault: Fault) -> str:
        return f"{i} {fault.path}={fault.kind}"  # a state file from other faults cannot match

    def _take(self, i: int, fault: Fault, state: State, elapsed: float) -> bool:
        if fault.seconds is not None and elapsed >= fault.seconds:
            return False
        key = self._key(i, fault)
        used = state["used"].get(key, 0)
        if fault.count is not None and used >= fault.count:
            return False
        state["used"][key] = used + 1
        return True

    def _select(self, path: str, query: str, state: State) -> Tuple[float, Optional[Fault]]:
        now = self._clock()
        if state["start"] is None:
            state["start"] = now
        elapsed = now - state["start"]
        delay = 0.0
        chosen: Optional[Fault] = None
        for i, fault in enumerate(self._faults):
            if not fault.matches(path, query):
                continue
            if fault.kind == "delay":
                if self._take(i, fault, state, elapsed):
                    delay += fault.value
            elif chosen is None and self._take(i, fault, state, elapsed):
                chosen = fault
        return delay, chosen

    def select(self, path: str, query: str) -> Tuple[float, Optional[Fault]]:
        """Total delay and the one answering fault (or None) for a request; uses them up."""
        with self._lock:
            if self._shared is None:
                return self._select(path, query, self._memory)
            with self._shared.locked() as state:
                return self._select(path, query, state)

    @property
    def faults(self) -> List[Fault]:
        return list(self._faults)
