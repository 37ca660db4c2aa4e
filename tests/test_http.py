"""cl_metadata.sources.http against a scriptable HTTP server on 127.0.0.1 (docs/hardening.md)."""

from __future__ import annotations

import email.utils
import gzip
import logging
import socket
import struct
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Dict, List

import pytest

import cl_metadata
from cl_metadata.sources.deadline import Deadline
from cl_metadata.errors import FetchError, UsageError
from cl_metadata.sources.http import HttpClient, Response, parse_retry_after, redact_headers

# --- the scriptable server ------------------------------------------------------------------


@dataclass
class Seen:
    method: str
    path: str
    headers: Dict[str, str]  # names lower-cased
    body: bytes
    time: float


Action = Callable[[BaseHTTPRequestHandler], None]


def reply(status: int, body: bytes = b"", headers: Dict[str, str] = None) -> Action:
    def action(h: BaseHTTPRequestHandler) -> None:
        h.send_response(status)
        for name, value in (headers or {}).items():
            h.send_header(name, value)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)
    return action


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        # headers and body go out in separate writes: do not let Nagle hold the second back
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, *args) -> None:
        pass

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        state = self.server.state
        state.record(Seen(self.command, self.path,
                          {k.lower(): v for k, v in self.headers.items()}, body,
                          time.monotonic()))
        state.action_for(self.path)(self)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _handle


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def handle_error(self, request, client_address) -> None:
        pass  # the faults below break connections on purpose


class Server:
    """Routes: path (with or without query) -> actions; the last action repeats."""

    def __init__(self) -> None:
        self.seen: List[Seen] = []
        self.routes: Dict[str, List[Action]] = {}
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.httpd = _Server(("127.0.0.1", 0), _Handler)
        self.httpd.state = self
        self.port = self.httpd.server_address[1]
        self.origin = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,),
                                       daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return self.origin + path

    def route(self, path: str, *actions: Action) -> None:
        self.routes[path] = list(actions)

    def record(self, seen: Seen) -> None:
        with self.lock:
            self.seen.append(seen)

    def action_for(self, path: str) -> Action:
        with self.lock:
            actions = self.routes.get(path) or self.routes.get(path.split("?")[0])
            if not actions:
                return reply(404)
            return actions.pop(0) if len(actions) > 1 else actions[0]

    def paths(self) -> List[str]:
        return [s.path for s in self.seen]

    def close(self) -> None:
        self.stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


other_server = server  # a second, independent origin


class FakeTime:
    """A deadline clock that only the injected sleep moves: no timers in tests."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: List[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def fake():
    return FakeTime()


@pytest.fixture
def make_client(fake):
    """HttpClient with a fake-clock deadline (default 60 s) and a fixed jitter of 1.0."""
    clients = []

    def make(seconds: float = 60.0, *, deadline: Deadline = None, **kwargs) -> HttpClient:
        kwargs.setdefault("sleep", fake.sleep)
        kwargs.setdefault("random", lambda: 1.0)
        client = HttpClient(deadline=deadline or Deadline(seconds, clock=fake.clock), **kwargs)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def call_with_bound(fn, bound: float = 10.0):
    """Run fn in a thread; fail (instead of hanging the suite) if it has not returned."""
    outcome = {}

    def run():
        try:
            outcome["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            outcome["error"] = exc

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(bound)
    assert not t.is_alive(), "the call did not return: not bound by the deadline"
    return outcome


# --- raw fault actions ----------------------------------------------------------------------


def drip_body(h) -> None:
    h.close_connection = True
    h.wfile.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
    while not h.server.state.stop.is_set():
        try:
            h.wfile.write(b"x")
        except OSError:
            return
        time.sleep(0.2)


def drip_headers(h) -> None:
    h.close_connection = True
    h.wfile.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
    while not h.server.state.stop.is_set():
        try:
            h.wfile.write(b"a")
        except OSError:
            return
        time.sleep(0.2)


def hang(h) -> None:
    h.close_connection = True
    h.server.state.stop.wait(3)


def reset_mid_body(h) -> None:
    h.close_connection = True
    h.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
    time.sleep(0.05)
    h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    h.connection.close()  # SO_LINGER 0: the close sends RST


def endless_chunked(h) -> None:
    h.close_connection = True
    h.wfile.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    chunk = b"%x\r\n%s\r\n" % (65536, b"z" * 65536)
    while not h.server.state.stop.is_set():
        try:
            h.wfile.write(chunk)
        except OSError:
            return


def close_delimited(body: bytes) -> Action:
    def action(h) -> None:
        h.close_connection = True
        h.wfile.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + body)
    return action


# --- status mapping -------------------------------------------------------------------------


def test_200_returns_the_body(server, make_client):
    server.route("/latest/meta-data/hostname", reply(200, b"host-1.example"))
    assert make_client().get(server.url("/latest/meta-data/hostname")) == b"host-1.example"
    assert [(s.method, s.path) for s in server.seen] == [("GET", "/latest/meta-data/hostname")]


def test_404_optional_is_absent(server, make_client):
    assert make_client().get(server.url("/keys"), optional=True) is None
    assert server.paths() == ["/keys"]


def test_404_required_fails_without_retry(server, make_client, fake):
    with pytest.raises(FetchError) as err:
        make_client().get(server.url("/hostname"))
    assert err.value.status == 404
    assert err.value.source == f"GET {server.url('/hostname')}"
    assert err.value.cause == "HTTP 404"
    assert server.paths() == ["/hostname"]
    assert fake.sleeps == []


@pytest.mark.parametrize("status", [401, 403, 400])
def test_other_4xx_fail_fast(server, make_client, fake, status):
    server.route("/api/token", reply(status, b"nope"))
    with pytest.raises(FetchError) as err:
        make_client().request("PUT", server.url("/api/token"),
                              headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"})
    assert err.value.status == status
    assert str(err.value) == f"PUT {server.url('/api/token')}: HTTP {status}"
    assert len(server.seen) == 1
    assert fake.sleeps == []


def test_get_needs_exactly_200(server, make_client):
    server.route("/x", reply(204))
    with pytest.raises(FetchError, match="unexpected HTTP 204"):
        make_client().get(server.url("/x"))


def test_post_201_and_204_succeed(server, make_client):
    server.route("/checkin", reply(201, b"created", {"X-Id": "7"}), reply(204))
    client = make_client()
    first = client.request("POST", server.url("/checkin"), data=b"ready",
                           headers={"Content-Type": "text/xml"})
    assert first == Response(201, first.headers, b"created")
    assert first.headers["x-id"] == "7"  # case-insensitive
    second = client.request("POST", server.url("/checkin"), data=b"ready")
    assert (second.status, second.body) == (204, b"")
    assert [(s.method, s.body) for s in server.seen] == [("POST", b"ready")] * 2
    assert server.seen[0].headers["content-type"] == "text/xml"


# --- retries and Retry-After ----------------------------------------------------------------


def test_503_twice_then_200_backs_off_with_jitter(server, make_client, fake):
    server.route("/x", reply(503), reply(503), reply(200, b"ok"))
    jitter = iter([0.5, 0.25])
    client = make_client(random=lambda: next(jitter))
    assert client.get(server.url("/x")) == b"ok"
    assert len(server.seen) == 3
    # full jitter: random() * min(8, 0.5 * 2**k)
    assert fake.sleeps == [0.5 * 0.5, 0.25 * 1.0]


def test_backoff_doubles_up_to_the_maximum(server, make_client, fake):
    server.route("/x", *([reply(500)] * 7), reply(200, b"ok"))
    assert make_client(random=lambda: 1.0).get(server.url("/x")) == b"ok"
    assert fake.sleeps == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]


def test_default_random_jitter_stays_in_bounds(server, make_client, fake):
    import random as stdlib_random
    server.route("/x", *([reply(502)] * 5), reply(200, b"ok"))
    assert make_client(random=stdlib_random.random).get(server.url("/x")) == b"ok"
    assert len(fake.sleeps) == 5
    for k, slept in enumerate(fake.sleeps):
        assert 0.0 <= slept <= min(8.0, 0.5 * 2 ** k)


def test_503_forever_is_retried_until_the_deadline(server, make_client, fake):
    server.route("/x", reply(503, b"busy"))
    with pytest.raises(FetchError) as err:
        make_client(5.0).get(server.url("/x"))
    # sleeps 0.5 + 1 + 2 = 3.5; the next (4 s) would run past the 5 s deadline, so it is cut
    # to start the last attempt 0.25 s before the end; what is left after it is waited out
    assert fake.sleeps == [0.5, 1.0, 2.0, 1.25, 0.25]
    assert fake.now == 5.0
    assert len(server.seen) == 5
    assert err.value.status == 503
    assert str(err.value) == f"GET {server.url('/x')}: HTTP 503 after 5 attempts"


def test_429_retry_after_seconds(server, make_client, fake):
    server.route("/x", reply(429, headers={"Retry-After": "3"}), reply(200, b"ok"))
    assert make_client().get(server.url("/x")) == b"ok"
    assert fake.sleeps == [3.0]


def test_503_retry_after_http_date(server, make_client, fake):
    def later(h):
        reply(503, headers={"Retry-After": email.utils.formatdate(time.time() + 30,
                                                                  usegmt=True)})(h)
    server.route("/x", later, reply(200, b"ok"))
    assert make_client().get(server.url("/x")) == b"ok"
    assert len(fake.sleeps) == 1
    assert 27.0 <= fake.sleeps[0] <= 30.0  # whole-second date, computed on each side


def test_retry_after_past_the_deadline_still_tries_once_more_before_it(server, make_client,
                                                                         fake):
    server.route("/x", reply(503, headers={"Retry-After": "120"}))
    with pytest.raises(FetchError) as err:
        make_client(10.0).get(server.url("/x"))
    assert fake.sleeps == [9.75, 0.25]  # the last attempt at 9.75 s, the end at 10 s
    assert len(server.seen) == 2
    assert err.value.status == 503
    assert err.value.cause == "HTTP 503 after 2 attempts"


def test_retry_after_past_the_deadline_then_success(server, make_client, fake):
    server.route("/x", reply(503, headers={"Retry-After": "120"}), reply(200, b"ok"))
    assert make_client(10.0).get(server.url("/x")) == b"ok"
    assert fake.sleeps == [9.75]


def test_zero_retry_after_falls_back_to_backoff(server, make_client, fake):
    server.route("/x", reply(429, headers={"Retry-After": "0"}), reply(200, b"ok"))
    assert make_client().get(server.url("/x")) == b"ok"
    assert fake.sleeps == [0.5]


def test_retry_after_ignored_on_500(server, make_client, fake):
    server.route("/x", reply(500, headers={"Retry-After": "30"}), reply(200, b"ok"))
    assert make_client().get(server.url("/x")) == b"ok"
    assert fake.sleeps == [0.5]


def test_parse_retry_after():
    now = 1_700_000_000.0
    assert parse_retry_after("3", now) == 3.0
    assert parse_retry_after(" 0 ", now) == 0.0
    assert parse_retry_after(email.utils.formatdate(now + 42, usegmt=True), now) == 42.0
    assert parse_retry_after(email.utils.formatdate(now - 42, usegmt=True), now) == 0.0
    naive = email.utils.formatdate(now + 5).replace("+0000", "-0000")
    assert parse_retry_after(naive, now) == 5.0
    for junk in (None, "", "soon", "-5", "1.5", "Mon, 99 Foo 2024 99:99:99 GMT"):
        assert parse_retry_after(junk, now) is None


def test_exhausted_deadline_sends_nothing(server, make_client, fake):
    client = make_client(1.0)
    fake.now = 2.0
    with pytest.raises(FetchError, match="deadline of 1 s exceeded"):
        client.get(server.url("/x"))
    assert server.seen == []


# --- the deadline: transient failures are retried until it, never given up before it -------


def test_platform_answering_just_before_the_deadline_is_still_reached(server, make_client,
                                                                       fake):
    def down_until_9_6(h):  # 503 until 9.6 s into the 10 s deadline
        reply(200, b"ok")(h) if fake.now >= 9.6 else reply(503)(h)

    server.route("/x", down_until_9_6)
    assert make_client(10.0).get(server.url("/x")) == b"ok"
    # attempts at 0, 0.5, 1.5, 3.5, 7.5; the next backoff (8 s) would overrun the deadline,
    # so it is cut to start one last attempt at 9.75 s instead of giving up at 7.5 s
    assert fake.sleeps == [0.5, 1.0, 2.0, 4.0, 2.25]
    assert len(server.seen) == 6


@pytest.mark.parametrize("seed", range(8))
def test_whatever_the_jitter_the_last_attempt_is_just_before_the_deadline(server, make_client,
                                                                          fake, seed):
    import random as stdlib_random
    started = []

    def down(h):
        started.append(fake.now)
        reply(502)(h)

    server.route("/x", down)
    with pytest.raises(FetchError):
        make_client(20.0, random=stdlib_random.Random(seed).random).get(server.url("/x"))
    assert started[-1] == pytest.approx(19.75)  # the last attempt, 0.25 s before the end
    assert fake.now == pytest.approx(20.0)  # the run ended at the deadline, not before
    gaps = [b - a for a, b in zip(started, started[1:])]
    assert all(0 <= gap <= 8.0 for gap in gaps)


def test_the_last_attempt_timeouts_are_clamped_to_the_time_left(server, make_client, fake):
    server.route("/x", reply(503))
    client = make_client(10.0)  # connect timeout 2 s, read timeout 5 s
    timeouts = []
    send = client._session.request

    def recording(*args, **kwargs):
        timeouts.append((fake.now, kwargs["timeout"]))
        return send(*args, **kwargs)

    client._session.request = recording
    with pytest.raises(FetchError):
        client.get(server.url("/x"))
    assert timeouts == [(0.0, (2.0, 5.0)), (0.5, (2.0, 5.0)), (1.5, (2.0, 5.0)),
                        (3.5, (2.0, 5.0)), (7.5, (2.0, 2.5)), (9.75, (0.25, 0.25))]


def test_a_permanent_failure_still_ends_at_once(server, make_client, fake):
    server.route("/x", reply(503), reply(403))
    with pytest.raises(FetchError) as err:
        make_client(10.0).get(server.url("/x"))
    assert err.value.cause == "HTTP 403"
    assert fake.sleeps == [0.5]  # no waiting out the deadline after a permanent failure


# --- transport faults -----------------------------------------------------------------------


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_connection_refused_is_retried_then_reported(make_client, fake):
    url = f"http://127.0.0.1:{closed_port()}/meta"
    with pytest.raises(FetchError) as err:
        make_client(3.0).get(url)
    # a 2 s sleep would reach the 3 s deadline: cut to start the last attempt at 2.75 s
    assert fake.sleeps == [0.5, 1.0, 1.25, 0.25]
    assert str(err.value) == f"GET {url}: connection refused after 4 attempts"
    assert err.value.status is None


def test_connection_reset_mid_response(server, make_client, fake):
    server.route("/x", reset_mid_body)
    with pytest.raises(FetchError) as err:
        make_client(2.0).get(server.url("/x"))
    assert err.value.cause == "connection reset after 4 attempts"
    assert len(server.seen) == 4


def test_reset_then_success(server, make_client):
    server.route("/x", reset_mid_body, reply(200, b"ok"))
    assert make_client().get(server.url("/x")) == b"ok"
    assert len(server.seen) == 2


def test_silent_server_times_out(server, make_client, fake):
    server.route("/x", hang)
    with pytest.raises(FetchError) as err:
        make_client(1.0, read_timeout=0.2).get(server.url("/x"))
    assert err.value.cause == "timed out after 3 attempts"
    assert fake.sleeps == [0.5, 0.25, 0.25]


def test_slow_drip_body_is_cut_at_the_deadline(server, make_client):
    server.route("/x", drip_body)
    client = make_client(deadline=Deadline(1.0), read_timeout=5.0)
    outcome = call_with_bound(lambda: client.get(server.url("/x")))
    error = outcome.get("error")
    assert isinstance(error, FetchError), outcome
    assert error.cause == "deadline of 1 s exceeded (attempt 1)"
    assert error.source == f"GET {server.url('/x')}"


def test_slow_drip_headers_are_cut_at_the_deadline(server, make_client):
    server.route("/x", drip_headers)
    client = make_client(deadline=Deadline(1.0), read_timeout=5.0)
    outcome = call_with_bound(lambda: client.get(server.url("/x")))
    error = outcome.get("error")
    assert isinstance(error, FetchError), outcome
    assert error.cause == "deadline of 1 s exceeded (attempt 1)"


# --- body cap -------------------------------------------------------------------------------


def test_body_at_the_cap_is_accepted_one_more_byte_is_not(server, make_client):
    server.route("/ok", close_delimited(b"a" * 1000))
    server.route("/big", close_delimited(b"a" * 1001))
    client = make_client(max_body=1000)
    assert client.get(server.url("/ok")) == b"a" * 1000
    with pytest.raises(FetchError) as err:
        client.get(server.url("/big"))
    assert err.value.cause == "response exceeds 1000 bytes"
    assert server.paths() == ["/ok", "/big"]  # not retried


def test_declared_oversized_body_is_refused(server, make_client):
    server.route("/x", reply(200, b"b" * (2 << 20)))
    with pytest.raises(FetchError) as err:
        make_client().get(server.url("/x"))
    assert err.value.cause == "response exceeds 1048576 bytes"
    assert err.value.status == 200
    assert len(server.seen) == 1


def test_endless_chunked_body_stops_at_the_cap(server, make_client):
    server.route("/x", endless_chunked)
    outcome = call_with_bound(lambda: make_client().get(server.url("/x")))
    assert isinstance(outcome.get("error"), FetchError), outcome
    assert outcome["error"].cause == "response exceeds 1048576 bytes"


def test_gzip_bomb_counts_decoded_bytes(server, make_client):
    bomb = gzip.compress(bytes(10 << 20))
    assert len(bomb) < 100_000
    server.route("/x", reply(200, bomb, {"Content-Encoding": "gzip"}))
    with pytest.raises(FetchError) as err:
        make_client().get(server.url("/x"))
    assert err.value.cause == "response exceeds 1048576 bytes"
    assert server.seen[0].headers["accept-encoding"] == "identity"


def test_small_gzip_body_is_decoded(server, make_client):
    server.route("/x", reply(200, gzip.compress(b"hello"), {"Content-Encoding": "gzip"}))
    assert make_client().get(server.url("/x")) == b"hello"


# --- redirects ------------------------------------------------------------------------------


def test_off_origin_redirect_is_refused(server, other_server, make_client):
    server.route("/x", reply(302, headers={"Location": other_server.url("/steal")}))
    with pytest.raises(FetchError) as err:
        make_client().get(server.url("/x"), headers={"X-aws-ec2-metadata-token": "tok"})
    assert err.value.cause == "redirect to another origin refused"
    assert err.value.status == 302
    assert other_server.seen == []
    assert len(server.seen) == 1


@pytest.mark.parametrize("location", ["https://127.0.0.1:{port}/y", "http://localhost:{port}/y",
                                      "http://u:p@127.0.0.1:{port}/y"])
def test_scheme_host_or_userinfo_change_is_off_origin(server, make_client, location):
    server.route("/x", reply(301, headers={"Location": location.format(port=server.port)}))
    with pytest.raises(FetchError, match="redirect to another origin refused"):
        make_client().get(server.url("/x"))
    assert server.paths() == ["/x"]


def test_same_origin_redirect_is_followed(server, make_client):
    server.route("/a", reply(301, headers={"Location": "/b?q=1"}))
    server.route("/b?q=1", reply(200, b"here"))
    token = {"Metadata-Token": "abc"}
    assert make_client().get(server.url("/a"), headers=token) == b"here"
    assert server.paths() == ["/a", "/b?q=1"]
    assert server.seen[1].headers["metadata-token"] == "abc"


def test_redirect_loop_stops_after_two_hops(server, make_client, fake):
    server.route("/loop", reply(302, headers={"Location": "/loop"}))
    with pytest.raises(FetchError) as err:
        make_client().get(server.url("/loop"))
    assert err.value.cause.startswith("too many redirects")
    assert server.paths() == ["/loop"] * 3
    assert fake.sleeps == []


def test_303_turns_post_into_get(server, make_client):
    server.route("/post", reply(303, headers={"Location": "/result"}))
    server.route("/result", reply(200, b"done"))
    resp = make_client().request("POST", server.url("/post"), data=b"payload")
    assert resp.body == b"done"
    assert [(s.method, s.path, s.body) for s in server.seen] == [
        ("POST", "/post", b"payload"), ("GET", "/result", b"")]


@pytest.mark.parametrize("status", [307, 308])
def test_307_308_keep_method_and_body(server, make_client, status):
    server.route("/post", reply(status, headers={"Location": "/again"}))
    server.route("/again", reply(201, b"made"))
    assert make_client().request("PUT", server.url("/post"), data=b"payload").status == 201
    assert [(s.method, s.path, s.body) for s in server.seen] == [
        ("PUT", "/post", b"payload"), ("PUT", "/again", b"payload")]


# --- environment isolation and request shape ------------------------------------------------


def test_proxy_variables_are_ignored(server, other_server, make_client, monkeypatch):
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY",
                 "all_proxy"):
        monkeypatch.setenv(name, other_server.origin)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    server.route("/x", reply(200, b"direct"))
    assert make_client().get(server.url("/x")) == b"direct"
    assert other_server.seen == []
    assert server.paths() == ["/x"]


def test_netrc_is_ignored(server, make_client, monkeypatch, tmp_path):
    netrc = tmp_path / ".netrc"
    netrc.write_text("machine 127.0.0.1 login admin password hunter2\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("NETRC", raising=False)
    server.route("/x", reply(200, b"ok"))
    assert make_client().get(server.url("/x")) == b"ok"
    assert "authorization" not in server.seen[0].headers


def test_cookies_are_never_sent_back(server, make_client):
    server.route("/a", reply(200, b"a", {"Set-Cookie": "session=s3cr3t; Path=/"}))
    server.route("/b", reply(200, b"b"))
    client = make_client()
    assert client.get_many([server.url("/a")]) == [b"a"]
    assert client.get(server.url("/b")) == b"b"
    assert "cookie" not in server.seen[1].headers


def test_user_agent_and_identity_encoding(server, make_client):
    server.route("/x", reply(200, b"ok"))
    make_client().get(server.url("/x"))
    headers = server.seen[0].headers
    assert headers["user-agent"] == f"cl-metadata/{cl_metadata.__version__}"
    assert headers["accept-encoding"] == "identity"


def test_expect_headers(server, make_client):
    server.route("/good", reply(200, b"v", {"Metadata-Flavor": "Google"}))
    server.route("/bad", reply(200, b"v", {"Metadata-Flavor": "Evil"}))
    client = make_client()
    flavor = {"Metadata-Flavor": "Google"}
    assert client.get(server.url("/good"), headers=flavor, expect_headers=flavor) == b"v"
    with pytest.raises(FetchError) as err:
        client.get(server.url("/bad"), headers=flavor, expect_headers=flavor)
    assert err.value.cause == "response header Metadata-Flavor missing or not 'Google'"
    with pytest.raises(FetchError, match="Metadata-Flavor missing"):
        client.get(server.url("/plain"), optional=True, expect_headers=flavor)  # bare 404
    assert server.paths() == ["/good", "/bad", "/plain"]


# --- endpoint override ----------------------------------------------------------------------


def test_endpoint_override_rewrites_origin_only(server, make_client):
    server.route("/latest/meta-data/x", reply(200, b"ok"))
    client = make_client(endpoint=server.origin + "/")
    # 127.0.0.9:1 would refuse: only the override makes this succeed
    assert client.get("http://127.0.0.9:1/latest/meta-data/x?recursive=true&b=2") == b"ok"
    assert server.paths() == ["/latest/meta-data/x?recursive=true&b=2"]


def test_under_the_override_messages_name_the_platform_url(server, make_client, caplog):
    # "the platform" is 127.0.0.9:1, which refuses: only the override makes requests succeed
    platform = "http://127.0.0.9:1"
    server.route("/hop", reply(301, headers={"Location": "/x"}))
    server.route("/x", reply(200, b"ok"))
    server.route("/busy", reply(503))
    with caplog.at_level(logging.DEBUG, logger="cl_metadata"):
        client = make_client(2.0, endpoint=server.origin)
        assert client.get(platform + "/hop") == b"ok"
        errors = []
        for path in ("/missing", "/busy"):
            with pytest.raises(FetchError) as err:
                client.get(platform + path)
            errors.append(str(err.value))
    assert server.paths()[:3] == ["/hop", "/x", "/missing"]
    assert errors == [f"GET {platform}/missing: HTTP 404",
                      f"GET {platform}/busy: HTTP 503 after 4 attempts"]
    messages = [r.getMessage() for r in caplog.records if r.name == "cl_metadata"]
    # the override is said once, at debug level; no other line names where packets went
    assert [m for m in messages if server.origin in m] == [
        f"CL_METADATA_ENDPOINT: sending {platform} requests to {server.origin}"]
    assert all(r.levelno == logging.DEBUG for r in caplog.records if r.name == "cl_metadata")
    assert any(m.startswith(f"GET {platform}/hop -> 301") for m in messages)
    assert any(m.startswith(f"GET {platform}/x -> 200") for m in messages)  # the redirect hop


def test_a_url_the_platform_handed_out_is_shown_as_its_label(server, make_client, caplog):
    # Azure's goal state names URLs whose path carries the container id and the VM's name:
    # neither may reach a log line or an error, whatever happens to the request.
    secret = "/machine/c0ffee-container/vm-name-marker"
    server.route(secret + "/ok", reply(301, headers={"Location": secret + "/next"}))
    server.route(secret + "/next", reply(200, b"ok"))
    server.route(secret + "/busy", reply(503))
    with caplog.at_level(logging.DEBUG, logger="cl_metadata"):
        client = make_client(1.0)
        assert client.get(server.origin + secret + "/ok", shown_as="<SharedConfig>") == b"ok"
        with pytest.raises(FetchError) as err:
            client.get(server.origin + secret + "/busy", shown_as="<Certificates>")
    assert str(err.value).startswith("GET <Certificates>: HTTP 503")
    messages = [r.getMessage() for r in caplog.records if r.name == "cl_metadata"]
    assert any(m.startswith("GET <SharedConfig> -> 301") for m in messages)
    assert any(m.startswith("GET <SharedConfig> (redirect 1) -> 200") for m in messages)
    assert not [m for m in messages if "c0ffee" in m or "marker" in m]


def test_the_override_is_said_once_per_platform_origin(server, make_client, caplog):
    server.route("/x", reply(200, b"ok"))
    with caplog.at_level(logging.DEBUG, logger="cl_metadata"):
        client = make_client(endpoint=server.origin)
        for url in ("http://127.0.0.9/x", "http://127.0.0.9:80/x?a=1", "http://127.0.0.8/x",
                    "http://127.0.0.9/x?b=2"):
            assert client.get(url) == b"ok"
    said = [r.getMessage() for r in caplog.records if "CL_METADATA_ENDPOINT" in r.getMessage()]
    assert said == [f"CL_METADATA_ENDPOINT: sending http://127.0.0.9 requests to {server.origin}",
                    f"CL_METADATA_ENDPOINT: sending http://127.0.0.8 requests to {server.origin}"]


@pytest.mark.parametrize("endpoint", [
    "ftp://127.0.0.1", "127.0.0.1:8080", "http://", "http://127.0.0.1/path",
    "http://127.0.0.1:80/?q=1", "http://127.0.0.1#frag", "http://user:pw@127.0.0.1",
    "http://127.0.0.1:99999", "http://127.0.0.1:port", "http://127.0.0.1:0", "http://127.0.0.1:", "http://a b",
])
def test_invalid_endpoint_override(endpoint, fake):
    with pytest.raises(UsageError, match="CL_METADATA_ENDPOINT") as err:
        HttpClient(deadline=Deadline(1, clock=fake.clock), endpoint=endpoint)
    assert "pw" not in str(err.value)
    assert err.value.exit_code == 2


@pytest.mark.parametrize("endpoint", ["http://127.0.0.1:8080", "https://[::1]:8443/",
                                      "HTTP://Example.test"])
def test_valid_endpoint_override(endpoint, fake):
    HttpClient(deadline=Deadline(1, clock=fake.clock), endpoint=endpoint).close()


# --- get_many -------------------------------------------------------------------------------


class Overlap:
    """Holds each request until two have been in flight at once (or 0.3 s passed); records
    the peak."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.in_flight = 0
        self.peak = 0

    def action(self, h) -> None:
        with self.cond:
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
            self.cond.notify_all()
            self.cond.wait_for(lambda: self.peak >= 2, timeout=0.3)
            self.in_flight -= 1  # before replying: the next sequential request may follow
        reply(200, h.path.encode())(h)


def test_get_many_overlaps_and_keeps_order(server, make_client):
    overlap = Overlap()
    paths = [f"/item/{i}" for i in range(6)]
    for path in paths:
        server.route(path, overlap.action)
    client = make_client(max_workers=8)
    assert client.get_many([server.url(p) for p in paths]) == [p.encode() for p in paths]
    assert overlap.peak >= 2
    # the executor is reused across calls
    assert client.get_many([(server.url("/item/0"), {})]) == [b"/item/0"]


def test_get_many_with_one_worker_is_sequential(server, make_client):
    overlap = Overlap()
    server.route("/a", overlap.action)
    server.route("/b", overlap.action)
    client = make_client(max_workers=1)
    assert client.get_many([server.url("/a"), server.url("/b")]) == [b"/a", b"/b"]
    assert overlap.peak == 1


def test_get_many_raises_a_failure(server, make_client):
    server.route("/ok", reply(200, b"ok"))
    server.route("/denied", reply(403))
    items = [server.url("/ok"), (server.url("/optional"), {"optional": True}),
             server.url("/missing"), server.url("/denied"), server.url("/ok")]
    with pytest.raises(FetchError) as err:
        make_client().get_many(items)
    assert (err.value.source, err.value.status) in {
        (f"GET {server.url('/missing')}", 404), (f"GET {server.url('/denied')}", 403)}


def test_get_many_does_not_wait_for_the_rest_after_a_failure(server, make_client):
    released = threading.Event()
    outcome = []

    def held(h):  # answers once the test lets it go, or gives up after 10 s
        outcome.append("released" if released.wait(10) else "timed out")
        reply(200, b"late")(h)

    server.route("/held", held)
    server.route("/denied", reply(403))
    try:
        with pytest.raises(FetchError) as err:
            make_client().get_many([server.url("/held"), server.url("/denied")])
        assert err.value.status == 403
    finally:
        released.set()
    for _ in range(100):
        if outcome:
            break
        time.sleep(0.05)
    # get_many raised while /held was still waiting: a wait-for-all would have timed it out
    assert outcome == ["released"]


def test_get_many_optional_absent_is_none(server, make_client):
    server.route("/a", reply(200, b"a"))
    assert make_client().get_many(
        [(server.url("/gone"), {"optional": True}), server.url("/a")]) == [None, b"a"]
    assert make_client().get_many([]) == []


# --- logging --------------------------------------------------------------------------------


def test_redact_headers():
    headers = {"X-aws-ec2-metadata-token": "t1", "X-aws-ec2-metadata-token-ttl-seconds": "21600",
               "Metadata-Token": "t2", "Metadata-Token-Expiry": "t3",
               "authorization": "Bearer t4", "Metadata-Flavor": "Google", "Metadata": "true",
               "x-ms-guest-agent-public-x509-cert": "MIIDEz...", "Accept": "application/json"}
    assert redact_headers(headers) == {**{k: "<redacted>" for k in headers},
                                       "Accept": "application/json"}
    assert redact_headers(None) == {}


def test_logs_never_carry_bodies_or_token_values(server, make_client, caplog):
    secret_body = b"SECRET-BODY-MARKER"
    token = "TOKEN-VALUE-123"
    server.route("/data", reply(500, secret_body), reply(200, secret_body))
    server.route("/denied", reply(403, secret_body))
    server.route("/hop", reply(302, secret_body, {"Location": "/data"}))
    client = make_client()
    headers = {"X-aws-ec2-metadata-token": token, "Authorization": token, "Accept": "x/y"}
    errors = []
    with caplog.at_level(logging.DEBUG):
        assert client.get(server.url("/data"), headers=headers) == secret_body
        assert client.get(server.url("/hop"), headers=headers) == secret_body
        for path in ("/denied", "/data"):
            try:
                client.get(server.url(path), headers=headers,
                           expect_headers={"Metadata-Flavor": "Google"})
            except FetchError as exc:
                errors.append(str(exc))
    text = "\n".join(r.getMessage() for r in caplog.records) + "\n".join(errors)
    assert len(errors) == 2
    assert secret_body.decode() not in text
    assert token not in text
    # logging did happen, with the headers redacted rather than left out
    ours = [r.getMessage() for r in caplog.records if r.name == "cl_metadata"]
    assert any(f"GET {server.url('/data')} -> 500" in m for m in ours)
    assert any("retrying in" in m for m in ours)
    assert any("'X-aws-ec2-metadata-token': '<redacted>'" in m and "'Accept': 'x/y'" in m
               for m in ours)



def test_the_same_get_is_sent_once_per_run(server, make_client):
    server.route("/item", reply(200, b"v"))
    server.route("/gone", reply(404))
    client = make_client()
    assert client.get_many([server.url("/item"), server.url("/item")]) == [b"v", b"v"]
    assert client.get(server.url("/item")) == b"v"
    assert client.get(server.url("/gone"), optional=True) is None
    assert client.get(server.url("/gone"), optional=True) is None
    # a different header set is a different request (e.g. a refreshed token)
    assert client.get(server.url("/item"), headers={"X-Token": "2"}) == b"v"
    assert server.paths() == ["/item", "/gone", "/item"]
    with pytest.raises(FetchError):
        client.get(server.url("/gone"))  # required this time: its own request, its own error


# --- the deadline watchdog costs no thread per request --------------------------------------


def test_many_requests_start_no_thread_per_request(server, make_client, monkeypatch):
    # The deadline is watched by one thread per run, not a timer thread per exchange: threads
    # started by anyone but the test server (it starts one per connection) are counted.
    server.route("/item", reply(200, b"v"))
    started = []
    real_start = threading.Thread.start

    def counting_start(thread):
        if threading.current_thread() is not server.thread:
            started.append(thread.name)
        return real_start(thread)

    monkeypatch.setattr(threading.Thread, "start", counting_start)
    client = make_client(max_workers=4)
    for i in range(50):
        assert client.get(server.url(f"/item?n={i}")) == b"v"
    assert client.get_many([server.url(f"/item?m={i}") for i in range(50)]) == [b"v"] * 50
    assert len(server.seen) == 100
    # one watchdog and at most max_workers pool threads, whatever the number of requests
    assert len(started) <= 1 + 4, started


# --- the fake server takes a burst of connections -------------------------------------------


def test_the_fake_server_listens_with_a_backlog_for_a_fleet(fake_server):
    # With socketserver's default backlog of 5, a burst of concurrent connects (several
    # agents, a dozen connections each) overflows the accept queue, and each dropped SYN
    # waits 1 s for its retry: client concurrency figures would measure that instead.
    import shutil
    import subprocess

    if shutil.which("ss") is None:
        pytest.skip("no ss(8) to read the listen backlog")
    server = fake_server("ec2")
    out = subprocess.run(["ss", "-ltnH", f"sport = :{server.port}"], capture_output=True,
                         text=True, check=True).stdout.split()
    # State Recv-Q Send-Q Local Peer: for a listening socket Send-Q is its backlog
    assert out[0] == "LISTEN", out
    assert int(out[2]) >= 64
