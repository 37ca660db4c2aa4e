"""The one HTTP client every provider uses: bounded in time, size and place.

Policy: a single ``requests`` session that ignores proxies, ``.netrc`` and cookies; retries
with full-jitter backoff on connection errors, timeouts, 5xx and 429 until the run's deadline
(the last attempt starts just before it, its timeouts clamped to the time left); a byte cap on
decoded bodies; redirects only within the origin; and log lines that never carry a body or a
secret header value.

Errors and log lines name the platform's URL (the one the provider asked for) even when the
``CL_METADATA_ENDPOINT`` override sends the packets elsewhere; the override itself is logged
once per platform origin, at debug level.
"""

from __future__ import annotations

import datetime
import email.utils
import errno
import http.client
import http.cookiejar
import logging
import random as _random
import socket
import threading
import time
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from typing import (Any, Callable, Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple,
                    Union)
from urllib.parse import urljoin, urlsplit, urlunsplit

from cl_metadata.sources.requests_loader import import_requests

requests = import_requests()  # before anything else imports it: no charset detection
import urllib3.exceptions  # noqa: E402 - requests imports urllib3 as above
from requests.adapters import HTTPAdapter
from requests.cookies import RequestsCookieJar
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from cl_metadata import __version__
from cl_metadata.context import ENDPOINT6_ENV, ENDPOINT_ENV
from cl_metadata.sources import endpoints as _endpoints
from cl_metadata.sources.deadline import Deadline
from cl_metadata.errors import FetchError, UsageError

__all__ = ["HttpClient", "Response", "parse_retry_after", "redact_headers"]

log = logging.getLogger("cl_metadata")

USER_AGENT = f"cl-metadata/{__version__}"
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
RETRY_AFTER_STATUSES = frozenset({429, 503})
_CHUNK = 16 * 1024
_DRAIN_LIMIT = 4096  # error bodies up to this size are read (unlogged) so the connection is reused
_DEFAULT_PORTS = {"http": 80, "https": 443}
# A backoff that would run past the deadline is cut so that one last attempt starts this long
# before the end: time for a link-local round trip and the requests that follow a success.
FINAL_ATTEMPT_LEAD = 0.25

# Header names whose values are credentials or platform proofs, never logged; and Azure's
# transport certificate, a throw-away 1 KiB blob that would only bury the line it is on.
_SECRET_HEADER_PREFIXES = ("x-aws-ec2-metadata-token", "metadata-token")
_SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie",
                             "metadata-flavor", "metadata", "x-ms-guest-agent-public-x509-cert"})


class Response(NamedTuple):
    status: int
    headers: Mapping[str, str]  # case-insensitive
    body: bytes


def _frozen(mapping: Optional[Mapping[str, str]]) -> tuple:
    return tuple(sorted((k.lower(), v) for k, v in (mapping or {}).items()))


def redact_headers(headers: Optional[Mapping[str, str]]) -> Dict[str, str]:
    """A copy of ``headers`` safe to log: token, auth and flavor values replaced."""
    redacted = {}
    for name, value in (headers or {}).items():
        lower = name.lower()
        secret = lower in _SECRET_HEADERS or lower.startswith(_SECRET_HEADER_PREFIXES)
        redacted[name] = "<redacted>" if secret else value
    return redacted


def parse_retry_after(value: Optional[str], now: float) -> Optional[float]:
    """Seconds to wait from a ``Retry-After`` value (delay-seconds or HTTP-date).

    A date in the past gives 0; an unparsable value gives None (the caller backs off instead).
    """
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:  # "-0000": RFC 5322 says UTC with unknown local zone
        when = when.replace(tzinfo=datetime.timezone.utc)
    return max(0.0, when.timestamp() - now)


# --- the deadline watchdog -----------------------------------------------------------------
#
# A per-read timeout cannot bound a server that sends one byte just inside it, forever: the
# blocking read in http.client keeps waiting for a full buffer. So each exchange registers its
# socket with a watchdog that shuts it down when the deadline passes; the blocked read then
# sees EOF.

_current = threading.local()


class _Watchdog:
    """One exchange's own timer (a thread): kept for callers outside this module that arm
    one per exchange. ``HttpClient`` uses the run-wide ``_DeadlineWatchdog`` instead."""

    def __init__(self, seconds: float):
        self._lock = threading.Lock()
        self._sock: Optional[socket.socket] = None
        self.fired = False
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True
        self._timer.start()

    def watch(self, sock: Optional[socket.socket]) -> None:
        with self._lock:
            self._sock = sock
            if self.fired:
                self._shutdown()

    def _fire(self) -> None:
        with self._lock:
            self.fired = True
            self._shutdown()

    def _shutdown(self) -> None:
        _shut(self._sock)

    def stop(self) -> None:
        self._timer.cancel()
        with self._lock:
            self._sock = None


def _shut(sock: Optional[socket.socket]) -> None:
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class _DeadlineWatchdog:
    """One thread per client, started with its first exchange, asleep until the deadline:
    then it shuts down the socket of every exchange still in flight. An exchange costs a set
    insertion, not a thread (a timer thread per request was ~0.3 ms of CPU each)."""

    def __init__(self, deadline: Deadline):
        self._deadline = deadline
        self._lock = threading.Lock()
        self._in_flight: set = set()  # of _Exchange
        self._thread: Optional[threading.Thread] = None
        self._closed = threading.Event()
        self.fired = False

    def exchange(self) -> "_Exchange":
        exchange = _Exchange(self)
        with self._lock:
            if self._thread is None and not self._closed.is_set():
                self._thread = threading.Thread(target=self._wait_for_deadline, daemon=True,
                                                name="cl-metadata-deadline")
                self._thread.start()
            self._in_flight.add(exchange)
        return exchange

    def close(self) -> None:
        self._closed.set()

    def _wait_for_deadline(self) -> None:
        # re-checked after each wake-up: the deadline's clock, not the wait, decides
        while not self._closed.wait(min(self._deadline.remaining(), threading.TIMEOUT_MAX)):
            if self._deadline.expired():
                with self._lock:
                    self.fired = True
                    for exchange in self._in_flight:
                        _shut(exchange.sock)
                return


class _Exchange:
    """One request's registration with the run's watchdog (the interface ``_Watchdog`` has)."""

    __slots__ = ("_watchdog", "sock")

    def __init__(self, watchdog: _DeadlineWatchdog):
        self._watchdog = watchdog
        self.sock: Optional[socket.socket] = None

    @property
    def fired(self) -> bool:
        return self._watchdog.fired

    def watch(self, sock: Optional[socket.socket]) -> None:
        with self._watchdog._lock:
            self.sock = sock
            if self._watchdog.fired:
                _shut(sock)

    def stop(self) -> None:
        with self._watchdog._lock:
            self.sock = None
            self._watchdog._in_flight.discard(self)


class _WatchedConnectionMixin:
    """Hands the socket to the calling thread's watchdog before the response is read."""

    def getresponse(self, *args, **kwargs):
        watchdog = getattr(_current, "watchdog", None)
        if watchdog is not None:
            watchdog.watch(getattr(self, "sock", None))
        return super().getresponse(*args, **kwargs)


class _ZonedHostMixin:
    """A link-local IPv6 host's zone reaches the connect as ``fe80::a9fe:a9fe%eth0``: requests
    hands over RFC 6874's URL form (``%25eth0``), which getaddrinfo would not resolve."""

    def _new_conn(self):
        if "%25" in self._dns_host:
            self._dns_host = self._dns_host.replace("%25", "%", 1)
        return super()._new_conn()


class _HTTPConnection(_WatchedConnectionMixin, _ZonedHostMixin, HTTPConnection):
    pass


class _HTTPSConnection(_WatchedConnectionMixin, HTTPSConnection):
    pass


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


class _Adapter(HTTPAdapter):
    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}


class _RefuseCookies(http.cookiejar.CookiePolicy):
    """Metadata servers need no state; a cookie set by one response is never sent back."""

    netscape = True
    rfc2965 = False
    hide_cookie2 = True

    def set_ok(self, cookie, request):
        return False

    def return_ok(self, cookie, request):
        return False

    def domain_return_ok(self, domain, request):
        return False

    def path_return_ok(self, path, request):
        return False


# --- helpers --------------------------------------------------------------------------------


class _Transient(Exception):
    """A failure worth retrying (connection error, timeout, 5xx, 429)."""

    def __init__(self, cause: str, status: Optional[int] = None,
                 retry_after: Optional[float] = None):
        super().__init__(cause)
        self.cause = cause
        self.status = status
        self.retry_after = retry_after


def _origin(url: str) -> Optional[Tuple[str, str, int]]:
    """(scheme, host, port) of ``url``; None when it has no usable origin."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if parts.username is not None or parts.password is not None:
        return None  # requests would turn userinfo into an Authorization header
    try:
        port = parts.port or _DEFAULT_PORTS.get(scheme)
    except ValueError:
        return None
    if not parts.hostname or port is None:
        return None
    return (scheme, parts.hostname.lower(), port)


def _same_origin(a: str, b: str) -> bool:
    origin = _origin(a)
    return origin is not None and origin == _origin(b)


def _validate_endpoint(endpoint: str, name: str = ENDPOINT_ENV) -> str:
    """``scheme://host[:port]`` of a valid override (the variable ``name``), else UsageError."""

    def bad(reason: str) -> UsageError:
        example = "http://[::1]:8080" if name == ENDPOINT6_ENV else "http://127.0.0.1:8080"
        return UsageError(f"{name}: {reason}; expected scheme://host[:port], e.g. {example}")

    if any(ch.isspace() or ord(ch) < 0x20 for ch in endpoint):
        raise bad("contains whitespace or control characters")
    parts = urlsplit(endpoint)
    if parts.scheme.lower() not in ("http", "https"):
        raise bad("scheme must be http or https")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise bad("user information is not allowed")
    if not parts.hostname:
        raise bad("no host")
    try:
        port = parts.port
    except ValueError:
        raise bad("invalid port") from None
    if port == 0 or parts.netloc.endswith(":"):
        raise bad("invalid port")
    if parts.path not in ("", "/") or parts.query or parts.fragment or "?" in endpoint \
            or "#" in endpoint:
        raise bad("no path, query or fragment allowed")
    return f"{parts.scheme.lower()}://{parts.netloc}"


def _exception_chain(exc: BaseException):
    """``exc`` and every exception it wraps (args, ``reason``, cause, context), once each."""
    seen = set()
    todo = [exc]
    while todo:
        current = todo.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        nested = [getattr(current, "reason", None), current.__cause__, current.__context__,
                  *getattr(current, "args", ())]
        todo.extend(e for e in nested if isinstance(e, BaseException))


def _transport_cause(exc: BaseException) -> str:
    """A short, value-free cause for a transport failure."""
    if isinstance(exc, requests.ConnectTimeout) and not any(
            isinstance(e, ConnectionRefusedError) for e in _exception_chain(exc)):
        return "connect timed out"
    chain = list(_exception_chain(exc))
    # Specific socket errors first: urllib3 2 makes NewConnectionError a ConnectTimeoutError.
    for e in chain:
        if isinstance(e, ConnectionRefusedError):
            return "connection refused"
        if isinstance(e, (ConnectionResetError, ConnectionAbortedError, BrokenPipeError)):
            return "connection reset"
        if isinstance(e, OSError) and e.errno == errno.ENETUNREACH:
            return "network unreachable"
        if isinstance(e, OSError) and e.errno == errno.EHOSTUNREACH:
            return "host unreachable"
        if isinstance(e, http.client.RemoteDisconnected):
            return "connection closed without a response"
        if isinstance(e, (http.client.IncompleteRead, urllib3.exceptions.IncompleteRead)):
            return "connection closed mid-response"
    for e in chain:
        if isinstance(e, (socket.timeout, TimeoutError, urllib3.exceptions.TimeoutError,
                          requests.Timeout)):
            return "timed out"
    if isinstance(exc, requests.exceptions.ChunkedEncodingError):
        return "connection closed mid-response"
    return f"connection failed ({type(exc).__name__})"


def _drain(resp: requests.Response) -> None:
    """Read a small unwanted body so the keep-alive connection can be reused."""
    try:
        length = int(resp.headers.get("Content-Length", ""))
    except ValueError:
        return
    if 0 < length <= _DRAIN_LIMIT:
        try:
            for _ in resp.iter_content(_DRAIN_LIMIT):
                pass
        except (requests.RequestException, OSError, http.client.HTTPException):
            pass


RequestItem = Union[str, Tuple[str, Dict[str, Any]]]


def bounded_session(*, pool_connections: int, pool_maxsize: int) -> requests.Session:
    """A session that takes nothing from the environment (proxy variables, ``~/.netrc``,
    ``REQUESTS_CA_BUNDLE``), keeps no cookie, asks for identity encoding (the byte cap counts
    what arrives) and whose connections hand their socket to the deadline watchdog."""
    session = requests.Session()
    session.trust_env = False
    session.proxies = {}
    session.cookies = RequestsCookieJar(policy=_RefuseCookies())
    session.headers["User-Agent"] = USER_AGENT
    session.headers["Accept-Encoding"] = "identity"
    adapter = _Adapter(max_retries=0, pool_connections=pool_connections,
                       pool_maxsize=pool_maxsize)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


class HttpClient:
    """Thread-safe: one session and connection pool shared by every caller."""

    def __init__(self, *, deadline: Deadline, endpoint: Optional[str] = None,
                 endpoint6: Optional[str] = None, head_start: float = _endpoints.HEAD_START,
                 connect_timeout: float = 2.0, read_timeout: float = 5.0,
                 max_body: int = 1 << 20, max_workers: int = 8,
                 backoff_initial: float = 0.5, backoff_max: float = 8.0,
                 max_redirects: int = 2, final_attempt_lead: float = FINAL_ATTEMPT_LEAD,
                 sleep: Callable[[float], None] = time.sleep,
                 random: Callable[[], float] = _random.random):
        if max_workers < 1:
            raise ValueError("max_workers must be at least 1")
        self._deadline = deadline
        self._endpoint = _validate_endpoint(endpoint) if endpoint else None
        self._endpoint6 = _validate_endpoint(endpoint6, ENDPOINT6_ENV) if endpoint6 else None
        if self._endpoint6 and not self._endpoint:  # IPv4 would go to the real platform
            raise UsageError(f"{ENDPOINT6_ENV} needs {ENDPOINT_ENV} as well")
        self._head_start = head_start
        self._ipv6_origins: Dict[tuple, Tuple[str, ...]] = {}  # platform origin -> IPv6 ones
        self._routes: Dict[tuple, Future] = {}  # platform origin -> the origin that won
        self._routes_lock = threading.Lock()
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._max_body = max_body
        self._max_workers = max_workers
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._max_redirects = max_redirects
        self._final_attempt_lead = final_attempt_lead
        self._sleep = sleep
        self._random = random
        self._executor: Optional[ThreadPoolExecutor] = None
        self._executor_lock = threading.Lock()
        self._cache: Dict[tuple, Future] = {}
        self._cache_lock = threading.Lock()
        self._overridden_origins: set = set()  # platform origins whose override was logged
        self._override_lock = threading.Lock()
        self._watchdog = _DeadlineWatchdog(deadline)

        self._session = bounded_session(pool_connections=4, pool_maxsize=max_workers)

    # --- public API -------------------------------------------------------------------------

    def get(self, url: str, *, headers: Optional[Mapping[str, str]] = None,
            optional: bool = False, expect_headers: Optional[Mapping[str, str]] = None,
            shown_as: Optional[str] = None) -> Optional[bytes]:
        """The body of a 200 answer; None for a 404 when ``optional``.

        A run reads one snapshot of the platform: the same GET asked twice (two outputs that
        need the same item, possibly from two threads at once) is sent once.
        """
        key = (url, _frozen(headers), optional, _frozen(expect_headers))
        with self._cache_lock:
            pending = self._cache.get(key)
            first = pending is None
            if first:
                pending = self._cache[key] = Future()
        if not first:
            return pending.result()
        try:
            resp = self.request("GET", url, headers=headers, optional=optional,
                                expect_headers=expect_headers, shown_as=shown_as)
        except BaseException as err:
            pending.set_exception(err)
            raise
        body = None if resp is None else resp.body
        pending.set_result(body)
        return body

    def request(self, method: str, url: str, *, headers: Optional[Mapping[str, str]] = None,
                data: Optional[bytes] = None, optional: bool = False,
                expect_headers: Optional[Mapping[str, str]] = None,
                shown_as: Optional[str] = None) -> Optional[Response]:
        """One request with retries; raises FetchError when it cannot succeed in time.

        ``url`` is the platform's; errors name it whatever origin the override sends it to.
        ``shown_as`` replaces the URL in every log line and error, for a URL the platform
        itself handed out (its path may carry instance ids and names: metadata values).
        """
        method = method.upper()
        source = f"{method} {shown_as or url}"
        attempt = 0
        last: Optional[_Transient] = None
        while True:
            try:
                if self._deadline.expired():
                    raise FetchError(self._deadline_cause(), source=source)
                attempt += 1
                return self._attempt(method, url, headers, data, optional, expect_headers,
                                     source, shown_as)
            except _Transient as failure:
                last = failure
                self._pause_before_retry(failure, attempt, source)
            except FetchError as err:
                if err.cause != self._deadline_cause() or attempt == 0:
                    raise
                if last is None:  # the first attempt got no (whole) answer in time
                    raise FetchError(f"{err.cause} (attempt 1)", source=source,
                                     status=err.status) from None
                # say what kept failing, not only that time ran out
                raise FetchError(f"{last.cause}, then the {err.cause} (attempt {attempt})",
                                 source=source, status=last.status) from None

    def get_many(self, requests: Sequence[RequestItem]) -> List[Optional[bytes]]:
        """GET several URLs concurrently; results in input order.

        The first failure ends the wait (the run has failed; requests still in flight are
        not waited for); of the failures known by then, the first in input order is raised.
        """
        items = [(item, {}) if isinstance(item, str) else (item[0], dict(item[1]))
                 for item in requests]
        if not items:
            return []
        executor = self._pool()
        futures = [executor.submit(self.get, url, **kwargs) for url, kwargs in items]
        wait(futures, return_when=FIRST_EXCEPTION)
        for future in futures:
            if future.done() and future.exception() is not None:
                raise future.exception()
        return [f.result() for f in futures]

    def close(self) -> None:
        with self._executor_lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            # after a failure or SIGTERM, requests may still be retrying: do not wait for them
            executor.shutdown(wait=False, cancel_futures=True)
        self._watchdog.close()
        self._session.close()

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- one attempt ------------------------------------------------------------------------

    def _attempt(self, method, url, headers, data, optional, expect_headers,
                 source, shown_as=None) -> Optional[Response]:
        """One try of the platform's ``url``, following same-origin redirects.

        Raises _Transient or FetchError.
        """
        current_method, current_url, current_data = method, self._route(url, source), data
        current_headers = dict(headers or {})
        for hop in range(self._max_redirects + 1):
            shown_url = (self._platform_form(current_url, url) if shown_as is None
                         else shown_as if hop == 0 else f"{shown_as} (redirect {hop})")
            resp = self._send(current_method, current_url, current_headers, current_data,
                              source, shown_url=shown_url)
            status = resp.status
            if status not in REDIRECT_STATUSES:
                return self._interpret(resp, current_method, optional, expect_headers, source)
            target = urljoin(current_url, resp.headers.get("Location", ""))
            if not resp.headers.get("Location"):
                raise FetchError(f"HTTP {status} redirect without Location", source=source,
                                 status=status)
            if not _same_origin(target, current_url):
                raise FetchError("redirect to another origin refused", source=source,
                                 status=status)
            if hop == self._max_redirects:
                raise FetchError(f"too many redirects (more than {self._max_redirects})",
                                 source=source, status=status)
            current_url = urlunsplit(urlsplit(target)._replace(fragment=""))
            if status == 303 or (status in (301, 302) and current_method == "POST"):
                if current_method != "HEAD":
                    current_method = "GET"
                current_data = None
                current_headers = {k: v for k, v in current_headers.items()
                                   if k.lower() not in ("content-type", "content-length")}
        raise AssertionError("unreachable")

    def _send(self, method, url, headers, data, source, shown_url) -> Response:
        """One exchange under the deadline watchdog; the body is read only on success.

        Its connect and read timeouts never reach past the deadline. ``shown_url`` is ``url``
        as the platform knows it: the one the log line names.
        """
        started = time.monotonic()
        remaining = self._deadline.remaining()
        if remaining <= 0:  # e.g. between redirect hops
            raise FetchError(self._deadline_cause(), source=source)
        watchdog = self._watchdog.exchange()
        _current.watchdog = watchdog
        outcome, body = "no response", b""
        try:
            try:
                resp = self._session.request(
                    method, url, headers=headers, data=data, allow_redirects=False,
                    stream=True, timeout=(min(self._connect_timeout, remaining),
                                          min(self._read_timeout, remaining)))
            except ValueError as exc:  # requests' InvalidURL, InvalidHeader, MissingSchema...
                raise FetchError(f"invalid request ({type(exc).__name__})",
                                 source=source) from None
            outcome = str(resp.status_code)
            try:
                if self._wants_body(resp.status_code, method):
                    body = self._read_body(resp, source)
                else:
                    _drain(resp)
            finally:
                watchdog.stop()  # before close() may hand the connection back to the pool
                resp.close()
            if watchdog.fired:  # EOF caused by our own shutdown can look like a whole body
                raise FetchError(self._deadline_cause(), source=source)
            return Response(resp.status_code, resp.headers, body)
        except (requests.RequestException, OSError, http.client.HTTPException) as exc:
            failure = self._failure(exc, watchdog, source)
            outcome = failure.cause
            raise failure from None
        except (FetchError, _Transient) as failure:
            outcome = failure.cause
            raise
        finally:
            watchdog.stop()
            _current.watchdog = None
            extra = f", request headers {redact_headers(headers)}" if headers else ""
            log.debug("%s %s -> %s, %d bytes, %.3f s%s", method, shown_url, outcome, len(body),
                      time.monotonic() - started, extra)

    def _failure(self, exc: BaseException, watchdog: _Exchange,
                 source: str) -> Union[FetchError, _Transient]:
        """The error to raise for a transport exception."""
        watchdog.stop()
        if watchdog.fired or self._deadline.expired():
            return FetchError(self._deadline_cause(), source=source)
        if isinstance(exc, requests.exceptions.ContentDecodingError):
            return FetchError("undecodable Content-Encoding", source=source)
        return _Transient(_transport_cause(exc))

    @staticmethod
    def _wants_body(status: int, method: str) -> bool:
        return status == 200 if method == "GET" else 200 <= status < 300

    def _read_body(self, resp: requests.Response, source: str) -> bytes:
        too_big = f"response exceeds {self._max_body} bytes"
        encoding = resp.headers.get("Content-Encoding", "identity").strip().lower()
        try:
            declared = int(resp.headers.get("Content-Length", ""))
        except ValueError:
            declared = None
        if declared is not None and declared > self._max_body and encoding == "identity":
            raise FetchError(too_big, source=source, status=resp.status_code)
        chunks, total = [], 0
        for chunk in resp.iter_content(_CHUNK):  # decoded bytes, whatever was sent
            total += len(chunk)
            if total > self._max_body:
                raise FetchError(too_big, source=source, status=resp.status_code)
            chunks.append(chunk)
            if self._deadline.expired():
                raise FetchError(self._deadline_cause(), source=source,
                                 status=resp.status_code)
        return b"".join(chunks)

    def _interpret(self, resp: Response, method: str, optional: bool,
                   expect_headers: Optional[Mapping[str, str]],
                   source: str) -> Optional[Response]:
        status = resp.status
        if status == 404 and optional:
            self._check_headers(resp, expect_headers, source)
            return None
        if self._wants_body(status, method):
            self._check_headers(resp, expect_headers, source)
            return resp
        if status == 429 or 500 <= status <= 599:
            retry_after = None
            if status in RETRY_AFTER_STATUSES:
                retry_after = parse_retry_after(resp.headers.get("Retry-After"), time.time())
            raise _Transient(f"HTTP {status}", status, retry_after)
        cause = f"unexpected HTTP {status}" if 200 <= status < 300 else f"HTTP {status}"
        raise FetchError(cause, source=source, status=status)

    @staticmethod
    def _check_headers(resp: Response, expect_headers: Optional[Mapping[str, str]],
                       source: str) -> None:
        for name, value in (expect_headers or {}).items():
            if resp.headers.get(name) != value:
                raise FetchError(f"response header {name} missing or not {value!r}",
                                 source=source, status=resp.status)

    # --- retries ----------------------------------------------------------------------------

    def _pause_before_retry(self, failure: _Transient, attempt: int, source: str) -> None:
        """Sleep before the next attempt, or raise FetchError once no attempt is left.

        Transient failures are retried until the deadline. A backoff or ``Retry-After`` that
        would run past it is cut short so that one last attempt starts ``final_attempt_lead``
        seconds before the end (``_send`` clamps its timeouts to the time left); giving up
        earlier would fail boots whose platform answers late but in time. When that last
        attempt has failed too, the few tenths of a second left are waited out, so a run that
        cannot reach its platform ends at its deadline rather than just before it.
        """
        remaining = self._deadline.remaining()
        gave_up = f"{failure.cause} after {attempt} attempt{'s' if attempt > 1 else ''}"
        latest_start = remaining - self._final_attempt_lead  # of the last attempt, from now
        if latest_start <= 0:
            self._sleep(remaining)
            raise FetchError(gave_up, source=source, status=failure.status)
        if failure.retry_after:  # a zero or past Retry-After backs off: no hot loop
            delay = failure.retry_after
        else:
            ceiling = min(self._backoff_max, self._backoff_initial * 2 ** min(attempt - 1, 32))
            delay = self._random() * ceiling
        last = delay >= latest_start
        if last:
            delay = latest_start
        log.debug("%s: %s; retrying in %.2f s (attempt %d%s)", source, failure.cause, delay,
                  attempt + 1, ", the last before the deadline" if last else "")
        self._sleep(delay)

    # --- small parts ------------------------------------------------------------------------

    def _rewrite(self, url: str) -> str:
        """Where the platform's ``url`` is sent: the override's origin, path and query kept."""
        if not self._endpoint:
            return url
        parts = urlsplit(url)
        platform_origin = f"{parts.scheme}://{parts.netloc}"
        key = _origin(url) or platform_origin  # http://h and http://h:80 are one origin
        with self._override_lock:
            first = key not in self._overridden_origins
            self._overridden_origins.add(key)
        if first:  # said once, so that every other line can name the platform's URL
            log.debug("%s: sending %s requests to %s", ENDPOINT_ENV, platform_origin,
                      self._endpoint)
        override = urlsplit(self._endpoint)
        return urlunsplit(parts._replace(scheme=override.scheme, netloc=override.netloc))

    def _platform_form(self, sent_url: str, platform_url: str) -> str:
        """``sent_url`` (a same-origin redirect hop included) with the platform's origin."""
        if not self._endpoint and not self._ipv6_origins:
            return sent_url
        platform = urlsplit(platform_url)
        return urlunsplit(urlsplit(sent_url)._replace(scheme=platform.scheme,
                                                      netloc=platform.netloc))

    # --- IPv4 or IPv6 -----------------------------------------------------------------------

    def add_ipv6_endpoint(self, origin: str, ipv6_origin: str) -> None:
        """The platform's ``origin`` (the IPv4 one its URLs name) is served at ``ipv6_origin``
        too: the run's first request to it races the addresses for a connection
        (:mod:`cl_metadata.sources.endpoints`) and the winner carries the rest of the run.

        Under ``CL_METADATA_ENDPOINT`` alone nothing changes: one endpoint, no IPv6 attempt.
        With ``CL_METADATA_ENDPOINT6`` as well, the two overrides race instead.
        """
        key = _origin(origin)
        if key is None:
            raise ValueError("not an origin")
        with self._routes_lock:
            known = self._ipv6_origins.get(key, ())
            if ipv6_origin not in known:
                self._ipv6_origins[key] = known + (ipv6_origin,)

    def _route(self, url: str, source: str) -> str:
        """Where the platform's ``url`` is sent: the override's origin or the platform address
        that won the race, path and query kept. Raises _Transient when no address connected."""
        key = _origin(url)
        if key is None or key not in self._ipv6_origins or (self._endpoint
                                                            and not self._endpoint6):
            return self._rewrite(url)
        with self._routes_lock:
            pending = self._routes.get(key)
            first = pending is None
            if first:
                pending = self._routes[key] = Future()
        if not first:  # one race per platform origin; concurrent requests share its outcome
            sent = pending.result()
        else:
            try:
                sent = self._race(url)
            except BaseException as err:
                with self._routes_lock:
                    del self._routes[key]  # the retry of each request races again
                pending.set_exception(err)
                raise
            pending.set_result(sent)
        parts, chosen = urlsplit(url), urlsplit(sent)
        return urlunsplit(parts._replace(scheme=chosen.scheme, netloc=chosen.netloc))

    def _race(self, url: str) -> str:
        """The origin every request to ``url``'s platform origin goes to from now on."""
        parts = urlsplit(url)
        platform = f"{parts.scheme}://{parts.netloc}"
        ipv6 = self._ipv6_origins[_origin(url)]
        if self._endpoint6:  # the overrides stand in for the platform's two addresses
            field = [_endpoints.Candidate(platform, self._endpoint),
                     _endpoints.Candidate(ipv6[0], self._endpoint6)]
        else:
            field = _endpoints.candidates(platform, ipv6)
        if len(field) == 1:  # a link-local IPv6 address and no interface to reach it by
            return field[0].sent
        timeout = min(self._connect_timeout, max(0.0, self._deadline.remaining()))
        started = time.monotonic()
        result = _endpoints.race([c.sent for c in field], timeout=timeout,
                                 head_start=self._head_start)
        if result.winner is None:
            causes = ", ".join(f"{c.shown}: {cause or 'not tried'}"
                               for c, cause in zip(field, result.causes))
            raise _Transient(f"no connection ({causes})")
        winner = field[result.winner]
        if result.winner == 0:
            log.debug("%s: connected over IPv4 in %.3f s", platform,
                      time.monotonic() - started)
        else:  # worth a line in the boot's record: the machine has no IPv4 path to it
            log.info("%s: no IPv4 connection (%s); using %s", platform,
                     result.causes[0] or "slower than IPv6", winner.shown)
        if winner.sent != winner.shown:
            log.debug("%s: sending %s requests to %s",
                      ENDPOINT_ENV if result.winner == 0 else ENDPOINT6_ENV, winner.shown,
                      winner.sent)
        return winner.sent

    def _deadline_cause(self) -> str:
        return f"deadline of {self._deadline.total:g} s exceeded"

    def _pool(self) -> ThreadPoolExecutor:
        # max_workers threads at most; the executor starts them only as work needs them,
        # so n < max_workers requests use n threads.
        with self._executor_lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(self._max_workers,
                                                    thread_name_prefix="cl-metadata-http")
            return self._executor


# --- HTTP over a local unix socket ----------------------------------------------------------
#
# Some platforms serve their guest API on a unix socket instead of an address (LXD's and
# Incus's /dev/lxd/sock, /dev/incus/sock). The same client, and so the same policy, reads
# them: only the connections differ. Every URL the session is given, whatever its host, goes
# to the one socket, so such a client cannot reach the network at all.


class _UnixSocketConnection(_WatchedConnectionMixin, HTTPConnection):
    """An HTTP/1.1 connection to ``socket_path`` (set by a subclass per socket)."""

    socket_path = ""

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)  # the connect timeout, clamped to the deadline
            sock.connect(self.socket_path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


class _UnixSocketAdapter(HTTPAdapter):
    """A requests adapter whose connections all go to one unix socket (the URL's host and port
    only name the pool). The pool and connection classes are urllib3's own, with a
    ``ConnectionCls`` that connects to the socket."""

    def __init__(self, socket_path: str, **kwargs):
        self._socket_path = socket_path
        super().__init__(**kwargs)

    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        connection = type("_SocketConnection", (_UnixSocketConnection,),
                          {"socket_path": self._socket_path})
        pool = type("_SocketPool", (HTTPConnectionPool,), {"ConnectionCls": connection})
        self.poolmanager.pool_classes_by_scheme = {"http": pool}


class _NoTLSAdapter(HTTPAdapter):
    """A local socket has no TLS: an https URL is a programming error, never a connection."""

    def send(self, request, *args, **kwargs):
        raise requests.exceptions.InvalidURL("https over a unix socket")


class UnixSocketHttpClient(HttpClient):
    """``HttpClient`` over the unix socket ``socket_path``: the same deadline, retries with
    backoff, body cap, deadline watchdog and same-origin redirects; URLs are ``http://`` with
    any host (the platform's own name, e.g. ``http://lxd/1.0``), and errors and log lines name
    the path and the socket (``GET /1.0/meta-data on /dev/lxd/sock``).

    A socket that is not there or refuses connections (its daemon restarting) is retried
    until the deadline like an unreachable address; one the run may not open fails at once.
    """

    def __init__(self, socket_path: str, *, deadline: Deadline, **options):
        if options.get("endpoint") or options.get("endpoint6"):
            raise ValueError("a unix socket client takes no endpoint override")
        super().__init__(deadline=deadline, **options)
        self.socket_path = socket_path
        self._session.mount("http://", _UnixSocketAdapter(
            socket_path, max_retries=0, pool_connections=1,
            pool_maxsize=options.get("max_workers", 8)))
        self._session.mount("https://", _NoTLSAdapter())

    def request(self, method: str, url: str, *, shown_as: Optional[str] = None,
                **kwargs) -> Optional[Response]:
        if shown_as is None:
            parts = urlsplit(url)
            path = parts.path + (f"?{parts.query}" if parts.query else "")
            shown_as = f"{path or '/'} on {self.socket_path}"
        return super().request(method, url, shown_as=shown_as, **kwargs)

    def _failure(self, exc: BaseException, watchdog: _Exchange,
                 source: str) -> Union[FetchError, _Transient]:
        failure = super()._failure(exc, watchdog, source)
        if isinstance(failure, _Transient):
            for e in _exception_chain(exc):
                if isinstance(e, PermissionError):  # retrying cannot change the file's mode
                    return FetchError("permission denied", source=source)
                if isinstance(e, FileNotFoundError):  # e.g. the VM agent restarting
                    return _Transient("no such socket")
        return failure
