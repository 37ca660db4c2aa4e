"""How each platform is followed: when the watcher should look at the platform again.

- ``gcp``/``gce``: the metadata server's long poll. ``instance/attributes/`` and
  ``project/attributes/`` are each asked with ``?recursive=true&wait_for_change=true``, the
  ``last_etag`` of the last answer and ``timeout_sec``: the server holds the request until the
  directory's ETag (one for every value under it: the key lists and ``block-project-ssh-keys``
  included) differs from ``last_etag``, or ``timeout_sec`` passes, then answers with the current
  value and its ``ETag`` header. A new ETag wakes the watcher; the same one asks again.
- every other HTTP platform: a fixed interval with ±10 % jitter (so a fleet started together
  does not ask in step). None of these services documents conditional requests
  (``If-None-Match``/``If-Modified-Since``) for its metadata, so each look fetches the keys as a
  one-shot run does and the keeper compares the validated key set with the last one written.

A follower never changes a file: it only says "look now". Each long poll runs in its own thread
with a fresh HTTP client and deadline, so nothing accumulates across polls.
"""

from __future__ import annotations

import logging
import random
import threading
from typing import Callable, Dict, Mapping, Optional
from urllib.parse import quote

from cl_metadata.errors import CLMetadataError, FetchError
from cl_metadata.sources.deadline import Deadline

log = logging.getLogger("cl_metadata")

GCE_BASE = "http://169.254.169.254/computeMetadata/v1/"
GCE_FLAVOR = {"Metadata-Flavor": "Google"}
# the directories holding every value the gcp provider reads for keys
GCE_DIRECTORIES = ("instance/attributes/", "project/attributes/")
GCE_HANG = 60  # timeout_sec: how long the server holds a long poll (Google's guest agent: 60 s)
GCE_SLACK = 10  # the client waits this much longer than the server holds the request
DEFAULT_INTERVAL = 60.0  # seconds between two looks at a platform without a long poll
JITTER = 0.10  # ± this fraction of the interval
RETRY_INITIAL = 1.0  # a failed long poll is asked again after this, doubling ...
RETRY_MAX = 300.0  # ... up to this


def jittered(interval: float, rng: Callable[[], float] = random.random) -> float:
    """``interval`` ± 10 %, uniformly."""
    return interval * (1.0 + JITTER * (2.0 * rng() - 1.0))


def backoff(failures: int, initial: float, cap: float,
            rng: Callable[[], float] = random.random) -> float:
    """Capped exponential backoff with half jitter: never less than half the step."""
    step = min(cap, initial * 2 ** min(max(failures - 1, 0), 32))
    return step * (0.5 + 0.5 * rng())


class Polling:
    """Look again every ``interval`` seconds (jittered); no request of its own."""

    long_poll = False

    def __init__(self, interval: float = DEFAULT_INTERVAL,
                 rng: Callable[[], float] = random.random):
        self.interval = interval
        self._rng = rng

    def describe(self) -> str:
        return f"polling every {self.interval:g} s (±{JITTER:.0%})"

    def prime(self) -> None:
        pass

    def start(self, wake: Callable[[], None]) -> None:
        pass

    def next_delay(self) -> Optional[float]:
        return jittered(self.interval, self._rng)

    def stop(self) -> None:
        pass


class GceLongPoll:
    """Follow GCE's metadata directories with ``wait_for_change`` long polls.

    ``client_factory(deadline, read_timeout)`` makes a fresh ``HttpClient`` for one request;
    ``hang`` is ``timeout_sec``. ``next_delay`` is None: only a change (or a signal) wakes the
    watcher.
    """

    long_poll = True

    def __init__(self, client_factory: Callable[[Deadline, float], object], *,
                 hang: int = GCE_HANG, retry_initial: float = RETRY_INITIAL,
                 retry_max: float = RETRY_MAX, rng: Callable[[], float] = random.random):
        self._client_factory = client_factory
        self.hang = hang
        self._retry_initial = retry_initial
        self._retry_max = retry_max
        self._rng = rng
        self._etags: Dict[str, Optional[str]] = {d: None for d in GCE_DIRECTORIES}
        self._stopped = threading.Event()
        self._threads = []

    def describe(self) -> str:
        return f"GCE long poll (wait_for_change, timeout_sec={self.hang})"

    def prime(self) -> None:
        """Learn each directory's current ETag before the first sync, so a change made between
        that sync's reads and the first long poll is still seen. A failure leaves it unknown:
        the thread then learns it and wakes the watcher once to be safe."""
        for directory in GCE_DIRECTORIES:
            try:
                self._etags[directory] = self._ask(directory, wait=False)
            except CLMetadataError as err:
                log.debug("%s: %s", directory, err)

    def start(self, wake: Callable[[], None]) -> None:
        for directory in GCE_DIRECTORIES:
            thread = threading.Thread(target=self._follow, args=(directory, wake), daemon=True,
                                      name=f"cl-metadata-watch-{directory.split('/')[0]}")
            thread.start()
            self._threads.append(thread)

    def next_delay(self) -> Optional[float]:
        return None

    def stop(self) -> None:
        self._stopped.set()

    @property
    def etags(self) -> Mapping[str, Optional[str]]:
        return dict(self._etags)

    def _follow(self, directory: str, wake: Callable[[], None]) -> None:
        failures = 0
        while not self._stopped.is_set():
            known = self._etags[directory]
            try:
                etag = self._ask(directory, wait=known is not None, last_etag=known)
            except CLMetadataError as err:
                failures += 1
                delay = backoff(failures, self._retry_initial, self._retry_max, self._rng)
                # the first failure of a streak is worth a line; the rest only with -v
                level = logging.WARNING if failures == 1 else logging.DEBUG
                log.log(level, "watch: %s; asking again in %.0f s (keys left as they are)",
                        err, delay)
                self._stopped.wait(delay)
                continue
            if failures:
                log.info("watch: %s%s answers again", GCE_BASE, directory)
            failures = 0
            if etag != known:
                self._etags[directory] = etag
                if not self._stopped.is_set():
                    wake()

    def _ask(self, directory: str, *, wait: bool, last_etag: Optional[str] = None) -> str:
        """The directory's ETag: at once (``wait`` False) or when it is not ``last_etag`` any
        more or ``hang`` seconds have passed."""
        query = "recursive=true"
        shown = GCE_BASE + directory + "?" + query
        if wait:
            query += f"&wait_for_change=true&timeout_sec={self.hang}"
            shown += "&wait_for_change=true"
            if last_etag is not None:
                query += "&last_etag=" + quote(last_etag, safe="")
        hold = self.hang if wait else 0
        client = self._client_factory(Deadline(hold + 2 * GCE_SLACK), hold + GCE_SLACK)
        try:
            response = client.request("GET", GCE_BASE + directory + "?" + query,
                                      headers=GCE_FLAVOR, expect_headers=GCE_FLAVOR,
                                      shown_as=shown)
        finally:
            client.close()
        etag = response.headers.get("ETag") if response is not None else None
        if not etag:
            raise FetchError("answer without an ETag header", source=f"GET {shown}")
        return etag
