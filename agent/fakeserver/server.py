"""Serving: loopback TCP from a background thread (tests, demos) or one request over
stdin/stdout (QEMU ``guestfwd=…-cmd:``, see tests/e2e/README.md).

Both modes share one handler: faults first, then the platform's routes; every request is
recorded in memory and, with a log path, appended as one JSON line.
"""

from __future__ import annotations

import http
import json
import os
import socket
import socketserver
import struct
import sys
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

from ..errors import UsageError
from .faults import Fault, FaultPlan, SharedFaultState
from .instance import Instance, load_instance
from .schedule import POLL_INTERVAL, PlatformGone, Schedule
from .render import TEXT, Request, Response, renderer_for

LOOPBACK_BINDS = {"127.0.0.1": socket.AF_INET, "localhost": socket.AF_INET, "::1": socket.AF_INET6}
LOGGED_BODY_BYTES = 64 * 1024
MAX_REQUEST_BODY = 1024 * 1024
IDLE_TIMEOUT = 10.0  # seconds a kept-alive connection may sit idle
CHUNK = 64 * 1024


class BindRefused(UsageError, ValueError):
    """The server may only ever listen on loopback."""


def loopback_address(bind: str) -> Tuple[str, int]:
    """The host and address family for ``bind``; anything but loopback is refused."""
    if bind not in LOOPBACK_BINDS:
        raise BindRefused(f"refusing to bind {bind!r}: the fake metadata server listens only on "
                          f"{', '.join(LOOPBACK_BINDS)}")
    return ("127.0.0.1" if bind == "localhost" else bind), LOOPBACK_BINDS[bind]


class Dispatcher:
    """Answers requests for one platform and instance, applies faults, records requests."""

    def __init__(self, platform: str, instance: Optional[Instance] = None, *,
                 faults: Sequence[Fault] = (), log_path: Union[str, Path, None] = None,
                 latency: float = 0.0, sleep: Callable[[float], None] = time.sleep,
                 fault_state: Union[str, Path, None] = None,
                 clock: Callable[[], float] = time.time, renderer: Optional[object] = None,
                 schedule: Optional[Schedule] = None):
        # renderer: a render module from outside this package (a plugin's), else the built-in one
        renderer = renderer if renderer is not None else renderer_for(platform)
        self.platform = platform
        self.instance = instance if instance is not None else load_instance()
        self.routes = {(r.method, r.path): r for r in renderer.routes(self.instance)}
        self._renderer = renderer
        self.generation = 0  # counts set_instance calls: a long poll waits for it to move
        # fault_state: a file shared by servers that must count faults together (--stdio)
        shared = SharedFaultState(fault_state) if fault_state is not None else None
        if shared is not None:
            with shared.locked():  # an unusable state file fails here, not mid-request
                pass
        self.faults = FaultPlan(faults, clock=clock, state=shared)
        self.latency = float(latency)
        if self.latency < 0:
            raise UsageError("latency must not be negative")
        self.sleep = sleep
        self.log_path = Path(log_path) if log_path is not None else None
        self.requests: List[dict] = []
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self.in_flight = 0  # requests being answered right now
        self.max_in_flight = 0  # the most that were ever answered at once (concurrency tests)
        # schedule: files the host touches to change what is served (--switch-file, --outage-file)
        self.schedule = schedule
        self._first_instance, self._switched = self.instance, False
        self._follow_schedule()
        if self.log_path is not None:
            try:
                self.log_path.open("ab").close()
            except OSError as err:
                raise UsageError(f"{self.log_path}: cannot open request log: {err.strerror}") from None

    def set_instance(self, instance: Instance) -> None:
        """Serve ``instance`` from now on, as a platform whose metadata changed while the
        machine runs (keys added in a console); requests held in a long poll see it at once."""
        routes = {(r.method, r.path): r for r in self._renderer.routes(instance)}
        with self._changed:
            self.instance, self.routes = instance, routes
            self.generation += 1
            self._changed.notify_all()

    def wait_for_change(self, generation: int, timeout: float) -> int:
        """Block until ``set_instance`` moved past ``generation`` or ``timeout`` passed;
        returns the generation now served. With a schedule, its files are looked at every
        POLL_INTERVAL meanwhile (raises ``PlatformGone`` when the outage file appears)."""
        if self.schedule is None:
            with self._changed:
                self._changed.wait_for(lambda: self.generation != generation, timeout)
                return self.generation
        end = time.monotonic() + timeout
        while True:
            if self.platform_gone():
                raise PlatformGone()
            self._follow_schedule()
            with self._changed:
                left = end - time.monotonic()
                if self.generation != generation or left <= 0:
                    return self.generation
                self._changed.wait(min(left, POLL_INTERVAL))

    def platform_gone(self) -> bool:
        """The schedule's outage file exists: requests get no answer."""
        return self.schedule is not None and self.schedule.gone()

    def _follow_schedule(self) -> None:
        """Serve the schedule's second instance while its switch file exists, the first one
        otherwise (one ``set_instance`` per change, so a held long poll wakes)."""
        if self.schedule is None or self.schedule.switch_file is None:
            return
        wanted = self.schedule.switched()
        with self._lock:
            if wanted == self._switched:
                return
            self._switched = wanted
        self.set_instance(self.schedule.then_instance if wanted else self._first_instance)

    def route(self, request: Request) -> Response:
        """The answer; a render module with ``hold(request, response, next_answer)`` may keep
        it until the instance changes (GCE's ``wait_for_change`` long poll)."""
        self._follow_schedule()
        generation = self.generation
        response = self._route(request)
        hold = getattr(self._renderer, "hold", None)
        if hold is None:
            return response
        seen = [generation]

        def next_answer(timeout: float) -> Optional[Response]:
            """The answer after the next change, None when ``timeout`` passed first."""
            now = self.wait_for_change(seen[0], timeout)
            if now == seen[0]:
                return None
            seen[0] = now
            return self._route(request)

        return hold(request, response, next_answer)

    def _route(self, request: Request) -> Response:
        route = self.routes.get((request.method, request.path))
        if route is None:
            allowed = sorted(m for m, p in self.routes if p == request.path)
            if allowed:
                return Response(405, b"Method Not Allowed", TEXT, (("Allow", ", ".join(allowed)),))
            return Response(404, b"Not Found", TEXT)
        missing = route.missing_header(request.headers)
        if missing is not None:
            return Response(403, f"Forbidden: required header {missing} missing or wrong".encode(), TEXT)
        return route.answer(request)

    def arrive(self) -> int:
        """Count a request in; returns how many are in flight including this one."""
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            return self.in_flight

    def depart(self) -> None:
        with self._lock:
            self.in_flight -= 1

    def record(self, entry: dict) -> None:
        line = (json.dumps(entry, sort_keys=True) + "\n").encode("utf-8")
        with self._lock:
            self.requests.append(entry)
            if self.log_path is not None:
                # One write per line in append mode: several --stdio processes share the file.
                with self.log_path.open("ab", buffering=0) as log:
                    log.write(line)


def _fault_response(fault: Fault) -> Response:
    if fault.kind == "status":
        code, retry_after = fault.value
        try:
            phrase = http.HTTPStatus(code).phrase
        except ValueError:
            phrase = f"Status {code}"
        headers = (("Retry-After", retry_after),) if retry_after else ()
        return Response(code, b"" if code in (204, 304) else phrase.encode(), TEXT, headers)
    if fault.kind == "redirect":
        return Response(302, b"", TEXT, (("Location", fault.value),))
    if fault.kind == "empty":
        return Response(200, b"", TEXT)
    raise AssertionError(fault.kind)


def _filler(size: int) -> Iterator[bytes]:
    block = b"x" * CHUNK
    while size > 0:
        yield block[:size]
        size -= CHUNK


class MetadataHandler(BaseHTTPRequestHandler):
    """One connection (TCP) or one request (stdio); ``self.server.dispatcher`` answers."""

    protocol_version = "HTTP/1.1"
    server_version = "cl-metadata-fake-server"
    timeout = IDLE_TIMEOUT
    # headers and body go out in two writes: without TCP_NODELAY every answer on a reused
    # connection waits ~40 ms for a delayed ACK (found by bench/)
    disable_nagle_algorithm = True
    one_request = False  # stdio: answer once, always with Connection: close

    def log_message(self, format, *args):  # noqa: A002 - BaseHTTPRequestHandler's signature
        pass  # never to stderr: in --stdio mode stderr is the guest's connection

    def version_string(self):
        return self.server_version

    def send_response(self, code, message=None):
        self._status = code
        super().send_response(code, message)

    def end_headers(self):
        self._record()  # status is known now; record before anything reaches the client
        super().end_headers()

    def handle(self):
        self.close_connection = True
        self.handle_one_request()
        while not self.one_request and not self.close_connection:
            self.handle_one_request()

    def handle_one_request(self):
        self._status: Optional[int] = None
        self._fault: Optional[str] = None
        self.command, self.path, self.headers, self._body = "", "", None, b""
        self._arrived, self._recorded, self._in_flight = time.time(), False, None
        try:
            self.raw_requestline = self.rfile.readline(65537)
        except OSError:  # includes timeouts and resets while idle
            self.close_connection = True
            return
        if not self.raw_requestline:
            self.close_connection = True
            return
        self._arrived = time.time()
        self._in_flight = self.server.dispatcher.arrive()
        try:
            if len(self.raw_requestline) > 65536:
                self.requestline, self.request_version = "", "HTTP/1.0"
                self.send_error(414)
            elif self.parse_request():
                if self.one_request:
                    self.close_connection = True
                body = self._read_body()
                if body is not None:
                    self._body = body
                    self._answer()
        except (ConnectionError, socket.timeout):
            self.close_connection = True
        except Exception:
            # A renderer bug: answer 500 if nothing was sent yet, and show it (TCP mode only:
            # in --stdio mode stderr is the guest's connection).
            self.close_connection = True
            if not self.one_request:
                traceback.print_exc()
            if self._status is None:
                self.send_error(500)
        finally:
            self._record()
            self.server.dispatcher.depart()

    def _record(self) -> None:
        """Record the request once, before the answer leaves: a client that has seen any byte
        of it (or the reset) can rely on the record being there."""
        if self._recorded:
            return
        self._recorded = True
        path, _, query = (self.path or "").partition("?")
        headers: Dict[str, str] = {}
        for name, value in (self.headers.items() if self.headers is not None else ()):
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        self.server.dispatcher.record({
            "time": round(self._arrived, 6),
            "in_flight": self._in_flight,
            "method": self.command or "",
            "path": path,
            "query": query,
            "status": self._status,
            "headers": headers,
            "body": self._body[:LOGGED_BODY_BYTES].decode("utf-8", "replace"),
            "fault": self._fault,
        })

    def _read_body(self) -> Optional[bytes]:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            return self._read_chunked()
        length = self.headers.get("Content-Length")
        if length is None:
            return b""
        if not length.strip().isdigit():
            self.send_error(400, "bad Content-Length")
            return None
        if int(length) > MAX_REQUEST_BODY:
            self.send_error(413)
            return None
        return self.rfile.read(int(length))

    def _read_chunked(self) -> Optional[bytes]:
        body = b""
        while True:
            size_line = self.rfile.readline(1024).split(b";")[0].strip()
            try:
                size = int(size_line, 16)
            except ValueError:
                self.send_error(400, "bad chunk size")
                return None
            if size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return body
            if len(body) + size > MAX_REQUEST_BODY:
                self.send_error(413)
                return None
            body += self.rfile.read(size)
            self.rfile.readline(1024)  # CRLF after the chunk

    def _answer(self) -> None:
        dispatcher = self.server.dispatcher
        path, _, query = self.path.partition("?")
        request = Request(self.command, path, query, self.headers, self._body)
        if dispatcher.platform_gone():  # the schedule's outage: no answer, not even a fault's
            self._fault = "outage"
            self._reset()
            return
        delay, fault = dispatcher.faults.select(path, query)
        wait = dispatcher.latency + delay
        if wait > 0:
            dispatcher.sleep(wait)
        kind = fault.kind if fault is not None else None
        self._fault = kind
        if kind == "reset":
            self._reset()
            return
        if kind in ("status", "redirect", "empty"):
            self._send(_fault_response(fault))
        elif kind == "oversize":
            self._send(Response(200, b"", "application/octet-stream"),
                       chunks=_filler(fault.value), length=fault.value)
        else:
            try:
                response = dispatcher.route(request)
            except PlatformGone:  # the outage began while a long poll was held
                self._fault = "outage"
                self._reset()
                return
            if kind == "malformed":
                response = Response(response.status, fault.value, response.content_type, response.headers)
            if kind == "drip":
                self._send(response, drip=fault.value)
            elif kind == "truncate":
                body = response.body
                sent = len(body) // 2 if fault.value is None else min(fault.value, len(body))
                declared = len(body) if sent < len(body) else sent + 1
                self.close_connection = True
                self._send(response, chunks=[body[:sent]], length=declared)
            else:
                self._send(response)

    def _send(self, response: Response, *, chunks: Optional[Iterable[bytes]] = None,
              length: Optional[int] = None, drip: Optional[float] = None) -> None:
        body = response.body
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        for name, value in response.headers:
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if drip is not None:
            for i in range(len(body)):
                self.server.dispatcher.sleep(drip)
                self.wfile.write(body[i:i + 1])
                self.wfile.flush()
            return
        for chunk in (chunks if chunks is not None else [body]):
            self.wfile.write(chunk)
        self.wfile.flush()

    def _reset(self) -> None:
        """Drop the connection without a byte of answer; on TCP, abort it (RST)."""
        self.close_connection = True
        self._record()
        sock = self.connection
        if isinstance(sock, socket.socket):
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
            # detach + os.close: socket.close() would wait for rfile/wfile to be released, and
            # the server's shutdown(SHUT_WR) afterwards would send a FIN instead of the RST.
            os.close(sock.detach())


class StdioHandler(MetadataHandler):
    """Serves exactly one request read from ``rfile`` (stdin) and answered on ``wfile``."""

    one_request = True

    def __init__(self, dispatcher: Dispatcher, rfile, wfile):
        self.rfile, self.wfile = rfile, wfile
        super().__init__(None, ("stdio", 0), SimpleNamespace(dispatcher=dispatcher))

    def setup(self):
        self.connection = None

    def finish(self):
        try:
            self.wfile.flush()
        except OSError:
            pass


def serve_stdio(dispatcher: Dispatcher, rfile=None, wfile=None) -> None:
    """Answer one request from stdin on stdout (binary streams by default)."""
    StdioHandler(dispatcher, rfile if rfile is not None else sys.stdin.buffer,
                 wfile if wfile is not None else sys.stdout.buffer)


class _LoopbackHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's listen backlog of 5 drops the SYNs of a burst (several agents booting at
    # once, each with a dozen connections): a dropped SYN is retried only after 1 s, so tests
    # and benchmarks would measure that stall instead of the agent.
    request_queue_size = 128
    block_on_close = False  # stop() must not wait out a handler sleeping in a delay fault

    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], (ConnectionError, socket.timeout)):
            super().handle_error(request, client_address)  # a client hanging up is normal here


class FakeServer:
    """A loopback HTTP server for one platform; use as a context manager in tests.

    ``renderer`` serves a platform this package has no render module for (a plugin's own module
    with ``routes(instance)``); without it the platform id picks a built-in one.
    """

    def __init__(self, platform: str, instance: Optional[Instance] = None, *,
                 faults: Sequence[Fault] = (), log_path: Union[str, Path, None] = None,
                 bind: str = "127.0.0.1", port: int = 0, latency: float = 0.0,
                 sleep: Callable[[float], None] = time.sleep,
                 fault_state: Union[str, Path, None] = None,
                 clock: Callable[[], float] = time.time, renderer: Optional[object] = None,
                 schedule: Optional[Schedule] = None):
        self.host, self._family = loopback_address(bind)
        self.port = port
        self.dispatcher = Dispatcher(platform, instance, faults=faults, log_path=log_path,
                                     latency=latency, sleep=sleep, fault_state=fault_state,
                                     clock=clock, renderer=renderer, schedule=schedule)
        self._httpd: Optional[_LoopbackHTTPServer] = None
        self._thread: Optional[threading.Thread] = None

    def start(self) -> "FakeServer":
        if self._httpd is not None:
            return self
        server_class = type("_Server", (_LoopbackHTTPServer,), {"address_family": self._family})
        httpd = server_class((self.host, self.port), MetadataHandler)
        httpd.dispatcher = self.dispatcher
        self._httpd, self.port = httpd, httpd.server_address[1]
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"fake-metadata-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is None:
            return
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join()
        self._httpd = self._thread = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def max_in_flight(self) -> int:
        """The most requests this server was answering at one time."""
        return self.dispatcher.max_in_flight

    @property
    def requests(self) -> List[dict]:
        with self.dispatcher._lock:
            return list(self.dispatcher.requests)

    def __enter__(self) -> "FakeServer":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()


# --- the guest API on a unix socket (LXD, Incus) ---------------------------------------------


class UnixSocketRefused(UsageError, ValueError):
    """The server creates its socket only at a new path outside the machine's device tree."""


class _UnixSocketHandler(MetadataHandler):
    disable_nagle_algorithm = False  # TCP_NODELAY is a TCP option; a unix socket has none


class _UnixSocketServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    request_queue_size = 128
    block_on_close = False

    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], (ConnectionError, socket.timeout)):
            super().handle_error(request, client_address)


def unix_socket_path(path: Union[str, Path]) -> str:
    """``path`` as an absolute path the server may create its socket at: never under
    ``/dev`` (where the real guest API lives), never over an existing file."""
    absolute = os.path.abspath(os.fspath(path))
    if absolute == "/dev" or absolute.startswith("/dev/"):
        raise UnixSocketRefused(f"refusing to create a socket under /dev ({absolute}): the fake "
                                "server serves only at a path of its own")
    if os.path.lexists(absolute):
        raise UnixSocketRefused(f"{absolute}: already exists; the fake server creates its "
                                "socket at a new path")
    return absolute


class UnixFakeServer(FakeServer):
    """The same server on a unix socket at ``socket_path`` (a new path, removed on stop):
    the LXD and Incus guest API. Faults, the request log and ``requests`` work as over TCP."""

    def __init__(self, platform: str, instance: Optional[Instance] = None, *,
                 socket_path: Union[str, Path], **options):
        self.socket_path = unix_socket_path(socket_path)
        super().__init__(platform, instance, **options)

    def start(self) -> "UnixFakeServer":
        if self._httpd is not None:
            return self
        httpd = _UnixSocketServer(self.socket_path, _UnixSocketHandler)
        httpd.dispatcher = self.dispatcher
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fake-metadata-unix", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        running = self._httpd is not None
        super().stop()
        if running:
            try:
                os.unlink(self.socket_path)
            except FileNotFoundError:
                pass

    @property
    def url(self) -> str:
        return f"unix:{self.socket_path}"
