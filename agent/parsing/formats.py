"""Parsing helpers every provider shares: metadata text, JSON documents, EC2-style key indexes,
and plain-text item trees (EC2-style metadata services).

Errors name the source and the field, never the value.
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, List, Mapping, Optional

from cl_metadata.parsing import documents
from cl_metadata.errors import InvalidMetadata


def text(body: Optional[bytes], source: str) -> Optional[str]:
    """A metadata value as text: strict UTF-8, surrounding whitespace removed.

    Upstream kept raw bodies, so a value ending in a newline broke ``EnvironmentFile=``
    consumers; a trailing newline is never part of an address, id or name.
    """
    if body is None:
        return None
    try:
        return body.decode("utf-8").strip()
    except UnicodeDecodeError as err:
        raise InvalidMetadata(f"not valid UTF-8 (byte {err.start})", source=source) from None


def text_items(http, base: str, paths: Iterable[str], *, optional: bool = True,
               empty_is_absent: bool = False) -> Dict[str, Optional[str]]:
    """Plain-text items ``base + path`` of an EC2-style tree, fetched in one concurrent round.

    Each distinct path maps to its text, or None when it is absent: a 404 where ``optional``
    (otherwise the 404 is an error), and an empty value where ``empty_is_absent`` (platforms
    whose protocol says an empty item means "not set").
    """
    unique = list(dict.fromkeys(paths))
    bodies = http.get_many([(base + path, {"optional": optional}) for path in unique])
    items: Dict[str, Optional[str]] = {}
    for path, body in zip(unique, bodies):
        value = text(body, "GET " + base + path)
        items[path] = None if empty_is_absent and not value else value
    return items


def text_attributes(http, base: str, paths: Mapping[str, str], *, optional: bool = True,
                    empty_is_absent: bool = False) -> Dict[str, str]:
    """Attribute name → text for ``{name: path}`` (see :func:`text_items`); absent items are
    left out. Two names may share a path: it is asked once."""
    items = text_items(http, base, paths.values(), optional=optional,
                       empty_is_absent=empty_is_absent)
    return {name: items[path] for name, path in paths.items() if items[path] is not None}


def json_document(body: bytes, source: str) -> Any:
    """``body`` as strict UTF-8 JSON, size and nesting bounded (:mod:`cl_metadata.parsing.documents`)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as err:
        raise InvalidMetadata(f"not valid UTF-8 (byte {err.start})", source=source) from None
    return documents.parse_json(text, source)


def json_object(body: bytes, source: str) -> Dict[str, Any]:
    document = json_document(body, source)
    if not isinstance(document, dict):
        raise InvalidMetadata(f"expected a JSON object, got {_kind(document)}", source=source)
    return document


def string_field(document: Dict[str, Any], field: str, source: str, *,
                 required: bool = False) -> Optional[str]:
    """``document[field]`` as a stripped string; numbers are accepted as their decimal text."""
    value = document.get(field)
    if value is None:
        if required:
            raise InvalidMetadata(f"field {field!r} is missing", source=source)
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise InvalidMetadata(f"field {field!r}: expected a string, got {_kind(value)}",
                              source=source)
    return str(value).strip()


def string_map(document: Dict[str, Any], field: str, source: str) -> Dict[str, str]:
    """``document[field]`` as a mapping of strings to strings (absent → empty)."""
    value = document.get(field)
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise InvalidMetadata(f"field {field!r}: expected an object of strings, got "
                              f"{_kind(value)}", source=source)
    return value


def key_lines(body: Optional[str]) -> List[str]:
    """Non-blank lines of an authorized_keys style body."""
    if not body:
        return []
    return [line.strip() for line in body.splitlines() if line.strip()]


def ec2_key_index(body: Optional[str], source: str) -> List[str]:
    """Indexes from an EC2-style ``public-keys`` listing: lines ``<index>=<name>``."""
    indexes = []
    for number, line in enumerate(key_lines(body), 1):
        parts = line.split("=")
        if len(parts) != 2 or not parts[0].isdigit():
            raise InvalidMetadata(f"line {number} is not '<index>=<name>'", source=source)
        indexes.append(parts[0])
    return indexes


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
            type(None): "null"}.get(type(value), "a number" if isinstance(value, (int, float))
                                     else type(value).__name__)
