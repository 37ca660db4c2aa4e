"""The watcher's schedule: look, wait, look again; back off on failures; answer signals.

- a look that fails (platform unreachable, HTTP error, invalid document, an output that could
  not be written) changes nothing and is tried again after a capped exponential backoff
  (``retry_initial`` doubling to ``retry_max``, half-jittered); a follower's wake-up (a GCE
  change) or SIGHUP still looks at once.
- SIGHUP (``request_reload``): the caller's ``reload`` re-reads the settings, then a look at
  once that writes every output again.
- SIGTERM: the signal handler raises; nothing half-written is left (the writers are atomic).
- sd_notify: ``READY=1`` after the first successful look, ``WATCHDOG=1`` on each turn and at
  least every ``keepalive`` seconds while waiting, ``STATUS=`` lines saying what it does.

The main thread sleeps on a pipe (``Waker``): follower threads and signal handlers write a byte
to it, so a wait ends at once without a lock a signal handler could deadlock on.
"""

from __future__ import annotations

import logging
import os
import random
import select
import time
from typing import Callable, Optional, Tuple

from cl_metadata import journal
from cl_metadata import log as agent_log
from cl_metadata.watch.keeper import Keeper, Plan, SyncFailed
from cl_metadata.watch.sources import backoff

log = logging.getLogger("cl_metadata")

RETRY_INITIAL = 5.0  # seconds before the first retry of a failed look ...
RETRY_MAX = 300.0  # ... doubling up to this
KEEPALIVE = 20.0  # WATCHDOG=1 at least this often (the unit's WatchdogSec= is well above)


class Waker:
    """A self-pipe: ``wake()`` from any thread or a signal handler ends ``wait()`` at once."""

    def __init__(self):
        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)
        os.set_blocking(self._write, False)

    def wake(self) -> None:
        try:
            os.write(self._write, b"!")
        except (BlockingIOError, OSError):
            pass  # the pipe is full (a wake-up is pending anyway) or closed

    def wait(self, timeout: Optional[float]) -> bool:
        """True when woken, False when ``timeout`` passed."""
        ready, _, _ = select.select([self._read], [], [], timeout)
        if not ready:
            return False
        try:
            while os.read(self._read, 512):
                pass
        except BlockingIOError:
            pass
        return True

    def close(self) -> None:
        for fd in (self._read, self._write):
            try:
                os.close(fd)
            except OSError:
                pass


class Watcher:
    """Runs ``keeper`` on ``follower``'s schedule until ``request_stop`` (or a signal handler
    raising). ``reload()`` returns the new ``(plan, follower)``, or raises ``CLMetadataError``
    (the old ones are kept)."""

    def __init__(self, keeper: Keeper, follower, *,
                 reload: Optional[Callable[[], Tuple[Plan, object]]] = None,
                 retry_initial: float = RETRY_INITIAL, retry_max: float = RETRY_MAX,
                 keepalive: float = KEEPALIVE, rng: Callable[[], float] = random.random,
                 notify: Callable[[str], bool] = journal.notify):
        self.keeper = keeper
        self.follower = follower
        self._reload = reload
        self._retry_initial = retry_initial
        self._retry_max = retry_max
        self._keepalive = keepalive
        self._rng = rng
        self._notify = notify
        self._waker = Waker()
        self._stop_requested = False
        self._reload_requested = False
        self.ready = False
        self.looks = 0  # looks at the platform, successful or not

    def request_reload(self) -> None:
        """SIGHUP: re-read the settings and look at once (safe in a signal handler)."""
        self._reload_requested = True
        self._waker.wake()

    def request_stop(self) -> None:
        self._stop_requested = True
        self._waker.wake()

    def run(self, max_looks: Optional[int] = None) -> int:
        provider = self.keeper.plan.provider_id
        self._status(f"{provider}: first look")
        self.follower.prime()
        self.follower.start(self._waker.wake)
        failures = 0
        try:
            while not self._stop_requested:
                self._notify("WATCHDOG=1")
                if self._reload_requested:
                    self._apply_reload()
                try:
                    self.looks += 1
                    self.keeper.sync()
                except SyncFailed as err:
                    failures += 1
                    delay: Optional[float] = backoff(failures, self._retry_initial,
                                                     self._retry_max, self._rng)
                    log.warning("watch: %s; keys left as they are; next look in %.0f s",
                                err, delay)
                    self._status(f"{self.keeper.plan.provider_id}: last look failed "
                                 f"({failures} in a row); next in {delay:.0f} s")
                else:
                    if failures:
                        log.info("watch: %s answers again", self.keeper.plan.provider_id)
                    failures = 0
                    if not self.ready:
                        self.ready = True
                        self._notify("READY=1")
                    delay = self.follower.next_delay()
                    self._status(f"{self.keeper.plan.provider_id}: in step "
                                 f"({self.follower.describe()})")
                if max_looks is not None and self.looks >= max_looks:
                    break
                self._wait(delay)
        finally:
            self.follower.stop()
        return 0

    def _wait(self, delay: Optional[float]) -> None:
        """Until ``delay`` passed (None: until woken), woken, or asked to stop; WATCHDOG=1
        every ``keepalive`` seconds meanwhile."""
        end = None if delay is None else time.monotonic() + delay
        while not (self._stop_requested or self._reload_requested):
            left = self._keepalive if end is None else min(self._keepalive,
                                                          end - time.monotonic())
            if left <= 0 or self._waker.wait(left):
                return
            self._notify("WATCHDOG=1")

    def _apply_reload(self) -> None:
        self._reload_requested = False
        log.info("watch: SIGHUP: reloading the settings and looking now")
        self.keeper.forget()
        if self._reload is None:
            return
        try:
            plan, follower = self._reload()
        except Exception as err:  # noqa: BLE001 - a bad settings file must not stop the watch
            log.error("watch: reload failed, keeping the previous settings: %s", err)
            return
        if plan.provider_id != self.keeper.plan.provider_id:
            self.follower.stop()
            self.follower = follower
            self.follower.prime()
            self.follower.start(self._waker.wake)
        self.keeper.replan(plan)

    def _status(self, text: str) -> None:
        agent_log.status(text)
