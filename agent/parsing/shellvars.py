"""Shell variable assignments (``KEY='value'`` lines, as OpenNebula writes ``context.sh``) read
as data: nothing is executed and nothing is expanded.

The file is a shell script only by its look: a platform that writes it means it as a list of
values, and a reader that sources it with ``sh`` (cloud-init does) runs whatever a value that
breaks out of its quotes says. This parser accepts exactly the words whose meaning in ``sh`` is
a literal string, and refuses every other word rather than guessing what ``sh`` would make of
it. Accepted, per line:

- blank lines and comments (``#`` first on the line, after optional blanks);
- ``NAME=WORD`` where ``NAME`` is ``[A-Za-z_][A-Za-z0-9_]*`` and ``WORD`` is a run of:

  - single-quoted text ``'…'``, which may span lines and holds anything but ``'`` and NUL —
    ``$(…)``, backticks and ``$VAR`` inside it are literal text, as for ``sh``;
  - ``\\'``, the escaped quote OpenNebula writes for a ``'`` in a value (``'it'\\''s'``);
  - double-quoted text ``"…"`` (what early OpenNebula releases wrote) holding none of
    ``$``, backtick and ``\\``, the characters ``sh`` interprets there;
  - unquoted characters from ``[A-Za-z0-9_.,:/@%+=-]``, which ``sh`` never interprets;

  followed by blanks and the end of the line. An empty word is the empty string.

Refused, with ``InvalidMetadata`` naming the source and the line (never a value): anything
else — an unquoted ``$``, backtick, ``;``, ``|``, ``&``, redirection, parenthesis, glob, ``~``
or blank inside the word, a second word (``sh`` would run it as a command), a line that is not
an assignment (``export``, ``if``, a function), an unterminated quote, a carriage return outside
quotes (CRLF line ends), a NUL byte, bytes that are not UTF-8, a name assigned twice (``sh``
would keep the last; a platform never writes two), and text over ``MAX_BYTES``, checked before
any parsing.
"""

from __future__ import annotations

import re
from typing import Dict, Tuple

from cl_metadata.errors import InvalidMetadata
from cl_metadata.parsing.documents import MAX_DOCUMENT_CHARS

MAX_BYTES = MAX_DOCUMENT_CHARS  # the same cap as every other metadata document (1 MiB)

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")
_BLANKS = re.compile(r"[ \t]*")
# one piece of a word; group 1: single-quoted, 2: double-quoted, 3: plain, 4: the '\'' escape
_PIECE = re.compile(r"'([^']*)'|\"([^\"$`\\]*)\"|([A-Za-z0-9_.,:/@%+=-]+)|(\\')")
_WORD_END = frozenset(" \t\n")
_SUBSTITUTION = frozenset("$`")
_OPERATORS = frozenset(";|&<>()")
_QUOTES = {"'": "single", '"': "double"}


def parse(data: bytes, source: str) -> Dict[str, str]:
    """The assignments of ``data`` (the file named ``source``) as a name → value mapping."""
    if len(data) > MAX_BYTES:
        raise InvalidMetadata(f"exceeds {MAX_BYTES} bytes", source=source)
    nul = data.find(b"\0")
    if nul >= 0:
        raise _error(source, data.count(b"\n", 0, nul) + 1, "a NUL byte")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise _error(source, data.count(b"\n", 0, err.start) + 1, "not valid UTF-8") from None
    values: Dict[str, str] = {}
    first_line: Dict[str, int] = {}
    pos, line = 0, 1
    while pos < len(text):
        pos = _BLANKS.match(text, pos).end()
        if text.startswith("#", pos) or text.startswith("\n", pos) or pos == len(text):
            end = text.find("\n", pos)
            pos, line = (len(text), line) if end < 0 else (end + 1, line + 1)
            continue
        name = _NAME.match(text, pos)
        if name is None:
            raise _error(source, line, "not a NAME='value' assignment or a comment")
        key = name.group()[:-1]
        if key in first_line:
            raise _error(source, line, f"{key} assigned again (first on line {first_line[key]})")
        first_line[key] = line
        values[key], pos, end_line = _word(text, name.end(), line, source)
        pos = _BLANKS.match(text, pos).end()
        if pos < len(text) and text[pos] != "\n":
            raise _error(source, end_line, "a second word (sh would run it as a command)")
        pos, line = pos + 1, end_line + 1
    return values


def _word(text: str, pos: int, line: int, source: str) -> Tuple[str, int, int]:
    """(value, position after the word, line the word ends on) of the word at ``pos``."""
    parts = []
    while pos < len(text) and text[pos] not in _WORD_END:
        piece = _PIECE.match(text, pos)
        if piece is None:
            char = text[pos]
            if char in _QUOTES and text.find(char, pos + 1) < 0:
                raise _error(source, line, f"unterminated {_QUOTES[char]} quote")
            if char == '"':
                raise _error(source, line, "a double-quoted value with $, ` or \\ "
                                           "(sh would expand it)")
            raise _error(source, line, _stray(char))
        single, double, plain, escape = piece.groups()
        value = next(v for v in (single, double, plain) if v is not None) if escape is None else "'"
        parts.append(value)
        line += value.count("\n")
        pos = piece.end()
    return "".join(parts), pos, line


def _stray(char: str) -> str:
    """Why an unquoted ``char`` is refused (the character class, never the text around it)."""
    if char in _SUBSTITUTION:
        return f"an unquoted {char} (sh would substitute it)"
    if char in _OPERATORS:
        return f"an unquoted {char} (a shell operator)"
    if char == "\r":
        return "a carriage return outside quotes (CRLF line ends)"
    if char.isprintable() and char.isascii():
        return f"an unquoted {char} (sh would interpret it)"
    return "an unquoted character sh would interpret or that is not printable"


def _error(source: str, line: int, cause: str) -> InvalidMetadata:
    return InvalidMetadata(f"line {line}: {cause}", source=source)
