"""How systemd v252 reads an ``EnvironmentFile=``: a Python port for tests (no systemd PID 1 here).

``parse_env_file`` follows the state machine of ``parse_env_file_internal`` in systemd's
``src/basic/env-file.c`` (v252), written from its description, byte by byte:

* input is a C string: it ends at the first NUL byte;
* WHITESPACE is `` \\t\\n\\r``, NEWLINE ``\\n\\r``, COMMENTS ``#;`` (only at the start of a key);
* unquoted values skip leading whitespace, lose trailing whitespace, are not comment-terminated,
  and a backslash takes the next byte literally (backslash-newline is eaten);
* single quotes: everything literal up to the next ``'``;
* double quotes: a backslash before one of SHELL_NEED_ESCAPE (``"\\`$``) yields that byte, before
  ``\\n`` yields nothing (continuation), before anything else is kept together with the byte;
* quoted parts concatenate (``K="a"'b'`` is ``ab``), but once an unquoted part starts, quotes
  are literal (``K="a"b'c'`` is ``ab'c'``);
* a comment ending in a backslash continues onto the next line (v252; changed in v254);
* a key without ``=`` is dropped; ``K=`` gives the empty string.

``load_environment_file`` adds what ``EnvironmentFile=`` does with the pairs: UTF-8 is checked
(invalid key or value fails the whole file, as in ``check_utf8ness_and_warn``), a later
assignment replaces an earlier one, and assignments with an invalid variable name are dropped
(``strv_env_clean_with_callback``).
"""

from __future__ import annotations

import re
from typing import Dict, List, Optional, Tuple

WHITESPACE = b" \t\n\r"
NEWLINE = b"\n\r"
COMMENTS = b"#;"
SHELL_NEED_ESCAPE = b"\"\\`$"

(PRE_KEY, KEY, PRE_VALUE, VALUE, VALUE_ESCAPE, SINGLE_QUOTE_VALUE, DOUBLE_QUOTE_VALUE,
 DOUBLE_QUOTE_VALUE_ESCAPE, COMMENT, COMMENT_ESCAPE) = range(10)

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def parse_env_file(data: bytes) -> List[Tuple[bytes, Optional[bytes]]]:
    """(key, value) pairs in file order; value ``None`` where systemd passes a NULL value."""
    nul = data.find(b"\0")
    if nul >= 0:
        data = data[:nul]

    pairs: List[Tuple[bytes, Optional[bytes]]] = []
    state = PRE_KEY
    key = bytearray()
    value: Optional[bytearray] = None
    last_key_whitespace: Optional[int] = None
    last_value_whitespace: Optional[int] = None

    def append(byte: int) -> None:
        nonlocal value
        if value is None:
            value = bytearray()
        value.append(byte)

    def push(chomp_value: bool) -> None:
        nonlocal key, value
        k = bytes(key if last_key_whitespace is None else key[:last_key_whitespace])
        v = None if value is None else bytes(value)
        if v is not None and chomp_value and last_value_whitespace is not None:
            v = v[:last_value_whitespace]
        pairs.append((k, v))
        key = bytearray()
        value = None

    for c in data:
        if state == PRE_KEY:
            if c in COMMENTS:
                state = COMMENT
            elif c not in WHITESPACE:
                state = KEY
                last_key_whitespace = None
                key.append(c)
        elif state == KEY:
            if c in NEWLINE:
                state = PRE_KEY
                key = bytearray()
            elif c == ord("="):
                state = PRE_VALUE
                last_value_whitespace = None
            else:
                if c not in WHITESPACE:
                    last_key_whitespace = None
                elif last_key_whitespace is None:
                    last_key_whitespace = len(key)
                key.append(c)
        elif state == PRE_VALUE:
            if c in NEWLINE:
                state = PRE_KEY
                push(chomp_value=False)
            elif c == ord("'"):
                state = SINGLE_QUOTE_VALUE
            elif c == ord('"'):
                state = DOUBLE_QUOTE_VALUE
            elif c == ord("\\"):
                state = VALUE_ESCAPE
            elif c not in WHITESPACE:
                state = VALUE
                append(c)
        elif state == VALUE:
            if c in NEWLINE:
                state = PRE_KEY
                push(chomp_value=True)
            elif c == ord("\\"):
                state = VALUE_ESCAPE
                last_value_whitespace = None
            else:
                if c not in WHITESPACE:
                    last_value_whitespace = None
                elif last_value_whitespace is None:
                    last_value_whitespace = 0 if value is None else len(value)
                append(c)
        elif state == VALUE_ESCAPE:
            state = VALUE
            if c not in NEWLINE:
                append(c)
        elif state == SINGLE_QUOTE_VALUE:
            if c == ord("'"):
                state = PRE_VALUE
            else:
                append(c)
        elif state == DOUBLE_QUOTE_VALUE:
            if c == ord('"'):
                state = PRE_VALUE
            elif c == ord("\\"):
                state = DOUBLE_QUOTE_VALUE_ESCAPE
            else:
                append(c)
        elif state == DOUBLE_QUOTE_VALUE_ESCAPE:
            state = DOUBLE_QUOTE_VALUE
            if c in SHELL_NEED_ESCAPE:
                append(c)
            elif c != ord("\n"):
                append(ord("\\"))
                append(c)
        elif state == COMMENT:
            if c == ord("\\"):
                state = COMMENT_ESCAPE
            elif c in NEWLINE:
                state = PRE_KEY
        elif state == COMMENT_ESCAPE:
            state = COMMENT

    if state in (PRE_VALUE, VALUE, VALUE_ESCAPE, SINGLE_QUOTE_VALUE, DOUBLE_QUOTE_VALUE,
                 DOUBLE_QUOTE_VALUE_ESCAPE):
        push(chomp_value=state == VALUE)
    return pairs


def load_environment_file(data: bytes) -> Dict[str, str]:
    """The variables a unit gets from ``EnvironmentFile=`` with this content."""
    env: Dict[str, str] = {}
    for raw_key, raw_value in parse_env_file(data):
        try:
            key = raw_key.decode("utf-8")
            value = "" if raw_value is None else raw_value.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError("invalid UTF-8: systemd refuses the whole file") from None
        if _ENV_NAME.fullmatch(key):
            env[key] = value
    return env
