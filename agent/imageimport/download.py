"""Downloads for the image importer: HTTPS, one origin, bounded in size and time, resumable.

The policy is the agent's HTTP client's (``cl_metadata.sources.http``), for big files:

- HTTPS only, unless the caller allows plain http (``--allow-http``) explicitly;
- no proxy from the environment, ``.netrc`` or cookies, unless the caller asks for the
  environment's proxy variables (``--env-proxy``); no ``REQUESTS_CA_BUNDLE`` either, a CA
  bundle is given explicitly (``--ca-bundle``);
- redirects followed only within the origin (scheme, host and port) of the URL asked for;
- a byte cap per file, checked against ``Content-Length`` before reading and again while reading;
- one deadline for the whole import: each exchange arms the agent's watchdog, which shuts the
  socket down when the deadline passes, so a server trickling one byte at a time cannot hold
  the import past it;
- ``Accept-Encoding: identity``: the bytes written are the bytes the signature covers.

An interrupted image download leaves its bytes in a partial file; the next run asks for the
rest with a ``Range`` request and appends what a ``206`` answer carries (a ``200`` starts
over). The signature check after the download catches a partial file that does not belong to
the same file on the server.
"""

from __future__ import annotations

import http.client
import os
import re
from contextlib import contextmanager
from typing import Iterator, Optional, Tuple
from urllib.parse import urljoin, urlsplit, urlunsplit

import requests
import urllib3.exceptions
from requests.utils import get_environ_proxies

from cl_metadata.sources.deadline import Deadline
from cl_metadata.sources.http import (REDIRECT_STATUSES, _current, _same_origin, _transport_cause,
                              _Watchdog, bounded_session)
from cl_metadata.imageimport.errors import ImageImportError

CHUNK = 256 * 1024
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


class Downloader:
    """One session for every file of one import."""

    def __init__(self, *, deadline: Deadline, allow_http: bool = False,
                 ca_bundle: Optional[str] = None, env_proxy: bool = False,
                 connect_timeout: float = 10.0, read_timeout: float = 30.0,
                 max_redirects: int = 3):
        self._deadline = deadline
        self._allow_http = allow_http
        self._verify = ca_bundle if ca_bundle else True
        self._env_proxy = env_proxy
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._max_redirects = max_redirects
        self._session = bounded_session(pool_connections=2, pool_maxsize=2)

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> Downloader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def check_url(self, url: str) -> None:
        """Refuses a URL the policy would never fetch (raised as ImageImportError)."""
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme == "http" and not self._allow_http:
            raise ImageImportError("plain http refused (https, or --allow-http)", source=url)
        if scheme not in ("http", "https"):
            raise ImageImportError("only https (or http with --allow-http) URLs", source=url)
        if not parts.hostname or parts.username is not None or parts.password is not None:
            raise ImageImportError("a URL needs a host and no user information", source=url)

    # --- whole files ------------------------------------------------------------------------

    def fetch(self, url: str, *, limit: int) -> bytes:
        """The body of ``url`` (a 200 answer), at most ``limit`` bytes."""
        source = f"GET {url}"
        chunks, total = [], 0
        with self._exchange(url, {}, source) as resp:
            if resp.status_code != 200:
                raise ImageImportError(f"HTTP {resp.status_code}", source=source)
            declared = self._declared_length(resp, source, limit)
            for chunk in self._body(resp, source):
                total += len(chunk)
                if total > limit:
                    raise ImageImportError(f"larger than {limit} bytes", source=source)
                chunks.append(chunk)
            self._check_complete(total, declared, source)
        return b"".join(chunks)

    def fetch_resumable(self, url: str, fd: int, *, limit: int) -> Tuple[int, bool]:
        """Completes the file ``fd`` holds the start of; (its final size, whether resumed).

        A failure of the transport (reset, close mid-body, deadline) raises an error marked
        ``resumable``: the bytes received so far stay in ``fd`` for the next run.
        """
        source = f"GET {url}"
        have = os.fstat(fd).st_size
        progress = {"size": have, "total": None}
        try:
            return self._resume(url, fd, have, limit, source, progress)
        except ImageImportError as err:
            if err.resumable:  # the transport failed (the body is read inside the exchange)
                err.cause = (f"{err.cause} after {progress['size']} of "
                             f"{progress['total'] or '?'} bytes; run again to resume")
            raise

    def _resume(self, url: str, fd: int, have: int, limit: int, source: str,
                progress: dict) -> Tuple[int, bool]:
        headers = {"Range": f"bytes={have}-"} if have else {}
        with self._exchange(url, headers, source) as resp:
            status = resp.status_code
            resumed = False
            if status == 206 and have:
                start, total = self._content_range(resp, source)
                if start != have:
                    raise ImageImportError(f"HTTP 206 for bytes from {start}, not {have}",
                                           source=source)
                resumed = True
            elif status == 416 and have:
                raise ImageImportError("HTTP 416: the partial download does not fit the file "
                                       "on the server", source=source)
            elif status == 200:
                have, total = 0, None
            else:
                raise ImageImportError(f"HTTP {status}", source=source)
            declared = self._declared_length(resp, source, limit - have)
            if total is None and declared is not None:
                total = have + declared
            if total is not None and total > limit:
                raise ImageImportError(f"larger than {limit} bytes", source=source)
            os.ftruncate(fd, have)
            os.lseek(fd, have, os.SEEK_SET)
            progress.update(size=have, total=total)
            for chunk in self._body(resp, source):
                if progress["size"] + len(chunk) > limit:
                    raise ImageImportError(f"larger than {limit} bytes", source=source)
                _write_all(fd, chunk)
                progress["size"] += len(chunk)
            if total is not None and progress["size"] != total:
                raise ImageImportError("connection closed mid-response", source=source,
                                       resumable=True)
        return progress["size"], resumed

    # --- one exchange -----------------------------------------------------------------------

    @contextmanager
    def _exchange(self, url: str, headers: dict, source: str) -> Iterator[requests.Response]:
        """The final (non-redirect) answer to GET ``url``, streaming, under the watchdog."""
        current = url
        for hop in range(self._max_redirects + 1):
            self.check_url(current)
            with self._send(current, headers, source) as resp:
                if resp.status_code not in REDIRECT_STATUSES:
                    yield resp
                    return
                location = resp.headers.get("Location")
            if not location:
                raise ImageImportError(f"HTTP {resp.status_code} redirect without Location",
                                       source=source)
            target = urlunsplit(urlsplit(urljoin(current, location))._replace(fragment=""))
            if not _same_origin(target, url):
                raise ImageImportError("redirect to another origin refused", source=source)
            if hop == self._max_redirects:
                raise ImageImportError(f"more than {self._max_redirects} redirects",
                                       source=source)
            current = target
        raise AssertionError("unreachable")

    @contextmanager
    def _send(self, url: str, headers: dict, source: str) -> Iterator[requests.Response]:
        remaining = self._deadline.remaining()
        if remaining <= 0:
            raise self._deadline_error(source)
        watchdog = _Watchdog(remaining)
        _current.watchdog = watchdog
        resp = None
        try:
            try:
                resp = self._session.get(
                    url, headers=headers, allow_redirects=False, stream=True,
                    verify=self._verify, proxies=self._proxies(url),
                    timeout=(min(self._connect_timeout, remaining),
                             min(self._read_timeout, remaining)))
                yield resp
            except (requests.RequestException, urllib3.exceptions.HTTPError, OSError,
                    http.client.HTTPException) as exc:
                if watchdog.fired or self._deadline.expired():
                    raise self._deadline_error(source) from None
                if isinstance(exc, requests.exceptions.SSLError):
                    raise ImageImportError("TLS verification failed", source=source) from None
                if isinstance(exc, ValueError):  # InvalidURL, InvalidHeader ...
                    raise ImageImportError(f"invalid request ({type(exc).__name__})",
                                           source=source) from None
                raise ImageImportError(_transport_cause(exc), source=source,
                                       resumable=True) from None
            if watchdog.fired:  # EOF caused by our own shutdown can look like a whole body
                raise self._deadline_error(source)
        finally:
            watchdog.stop()
            _current.watchdog = None
            if resp is not None:
                resp.close()

    def _body(self, resp: requests.Response, source: str) -> Iterator[bytes]:
        encoding = resp.headers.get("Content-Encoding", "identity").strip().lower()
        if encoding != "identity":
            raise ImageImportError("unexpected Content-Encoding", source=source)
        for chunk in resp.raw.stream(CHUNK, decode_content=False):
            if self._deadline.expired():
                raise self._deadline_error(source)
            yield chunk

    def _proxies(self, url: str) -> dict:
        return get_environ_proxies(url) if self._env_proxy else {}

    @staticmethod
    def _declared_length(resp: requests.Response, source: str, limit: int) -> Optional[int]:
        try:
            declared = int(resp.headers.get("Content-Length", ""))
        except ValueError:
            return None
        if declared > limit:
            raise ImageImportError(f"larger than {limit} bytes (Content-Length)", source=source)
        return declared

    @staticmethod
    def _content_range(resp: requests.Response, source: str) -> Tuple[int, Optional[int]]:
        match = _CONTENT_RANGE.fullmatch(resp.headers.get("Content-Range", "").strip())
        if match is None:
            raise ImageImportError("HTTP 206 without a valid Content-Range", source=source)
        total = None if match.group(3) == "*" else int(match.group(3))
        return int(match.group(1)), total

    @staticmethod
    def _check_complete(got: int, expected: Optional[int], source: str) -> None:
        if expected is not None and got != expected:
            raise ImageImportError(f"connection closed mid-response after {got} of {expected} "
                                   "bytes", source=source)

    def _deadline_error(self, source: str) -> ImageImportError:
        return ImageImportError(f"deadline of {self._deadline.total:g} s exceeded",
                                source=source, resumable=True)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
