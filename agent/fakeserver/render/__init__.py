"""Per-platform renderers of the instance description.

A render module is plain data plus two functions:

``PLATFORMS``
    tuple of the platform ids it serves (kernel command-line ids, e.g. ``("gcp",)``).
``routes(instance) -> list[Route]``
    the HTTP endpoints. A route matches one method and one exact path (the query string is not
    part of the match; a handler sees it). ``required_headers`` maps a header name to the exact
    value it must carry, or to ``None`` when any value will do; a request lacking one gets 403.
    ``respond`` is either a fixed :class:`Response` or a function of the :class:`Request`
    (tokens, check-in bodies, query-dependent answers).
``drive_files(instance) -> dict[str, bytes]`` and ``DRIVE_LABEL`` (optional)
    the files of the platform's config drive, keyed by relative path, and its filesystem label.

Every module of this package whose name does not start with ``_`` is a render module: adding
a platform is adding one file.
"""

from __future__ import annotations

import base64
import importlib
import json
import pkgutil
from dataclasses import dataclass, field
from types import ModuleType
from typing import Callable, Dict, Mapping, Optional, Tuple, Union

from ...errors import UsageError

RENDER_MODULES = tuple(sorted(m.name for m in pkgutil.iter_modules(__path__)
                              if not m.name.startswith("_")))

TEXT = "text/plain; charset=utf-8"
JSON = "application/json"
BINARY = "application/octet-stream"


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: str
    headers: Mapping[str, str]  # case-insensitive (an email.message.Message-like mapping)
    body: bytes


@dataclass(frozen=True)
class Response:
    status: int = 200
    body: bytes = b""
    content_type: str = TEXT
    headers: Tuple[Tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Route:
    path: str
    respond: Union[Response, Callable[[Request], Response]]
    method: str = "GET"
    required_headers: Mapping[str, Optional[str]] = field(default_factory=dict)

    def missing_header(self, headers: Mapping[str, str]) -> Optional[str]:
        """The first required header the request lacks (or carries with a wrong value)."""
        for name, wanted in self.required_headers.items():
            got = headers.get(name)
            if got is None or (wanted is not None and got != wanted):
                return name
        return None

    def answer(self, request: Request) -> Response:
        return self.respond(request) if callable(self.respond) else self.respond


def text(value: str, status: int = 200) -> Response:
    return Response(status=status, body=value.encode("utf-8"), content_type=TEXT)


def json_document(value: object) -> bytes:
    return json.dumps(value, indent=2, sort_keys=True).encode("utf-8")


def json_body(value: object) -> Response:
    return Response(body=json_document(value), content_type=JSON)


def user_data_body(instance, encoding: str = "raw") -> Optional[bytes]:
    """The instance's user-data as a platform serves it (None: it has none): the bytes the
    user gave (``Instance.user_data_bytes``, gzip-compressed when they did), ``raw`` or in
    ``base64`` for platforms that carry only text."""
    data = instance.user_data_bytes()
    if data is None or encoding == "raw":
        return data
    if encoding == "base64":
        return base64.b64encode(data)
    raise ValueError(f"unknown user-data encoding {encoding!r}")


def _load(name: str) -> ModuleType:
    return importlib.import_module(f"{__name__}.{name}")


def platforms() -> Dict[str, ModuleType]:
    """Every platform id the fake server can render, mapped to its render module."""
    table: Dict[str, ModuleType] = {}
    for name in RENDER_MODULES:
        module = _load(name)
        for platform in module.PLATFORMS:
            table[platform] = module
    return table


def renderer_for(platform: str) -> ModuleType:
    table = platforms()
    if platform not in table:
        raise UsageError(f"unknown platform {platform!r}; known: {', '.join(sorted(table))}")
    return table[platform]
