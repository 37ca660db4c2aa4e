"""Parsing an untrusted JSON or YAML document, with its size and shape bounded before the parser
can be made to work hard.

Python's ``json`` module and PyYAML's composer recurse once per nesting level, so a body of
100,000 ``[`` ends in a ``RecursionError`` traceback (deeper recursion in C could crash the
process), and a YAML "billion laughs" (aliases of aliases) expands to more nodes than memory
holds once anything walks it. Every reader of metadata documents therefore comes here:

- size: a document over ``MAX_DOCUMENT_CHARS`` is refused unread. The HTTP client and the config
  drive reader already stop at 1 MiB of bytes; this covers text that arrives another way
  (decoded from base64, or a key comment).
- JSON nesting: one linear scan counts ``[``/``{`` depth outside strings and refuses more than
  ``MAX_DEPTH`` levels before ``json.loads`` sees the text.
- YAML nesting: the scanner stops at the opening token of a flow collection (``[[[``) or block
  indentation level beyond ``MAX_DEPTH``, and the composer counts the collections it opens
  (flow and block combined, ``- - -`` too) and stops there before its recursion gets any
  deeper. The depth an alias adds (a chain of ``<<: *previous`` merges) counts too.
- YAML aliases: each alias counts as the size of the node it repeats; a document whose expansion
  exceeds ``MAX_YAML_NODES`` is refused as soon as one node crosses it, and an alias inside the
  node it names (a cycle, which would make any walk endless) is refused.
- JSON's non-standard ``NaN``/``Infinity`` constants and numbers too long for ``int`` are refused.

``MAX_DEPTH`` is 64: metadata documents are shallow (OpenStack ``network_data.json``, netplan
network config and Packet's metadata nest under 10 levels), and 64 keeps the parsers far below
Python's recursion limit of 1,000. Errors are ``InvalidMetadata`` naming the source and the
cause (position, limit), never document text.
"""

from __future__ import annotations

import functools
import json
import re
from typing import TYPE_CHECKING, Any, Dict, Optional, Type

from cl_metadata.errors import InvalidMetadata

if TYPE_CHECKING:
    import yaml

MAX_DEPTH = 64
MAX_DOCUMENT_CHARS = 1 << 20
# Aliases may not make a document bigger than one the size cap allows without them (a node
# takes at least a character or two: ``[a,a,a]``).
MAX_YAML_NODES = MAX_DOCUMENT_CHARS

# A JSON string (an unterminated one runs to the end, so no text is scanned twice) or a bracket.
_JSON_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?|[\[\]{}]', re.DOTALL)
_OPENERS = frozenset("[{")
_CLOSERS = frozenset("]}")
_TOO_DEEP = "nested too deeply"


def parse_json(text: str, source: str) -> Any:
    """``text`` as JSON; raises ``InvalidMetadata`` (source, cause) for anything else."""
    _check_size(text, source)
    if _json_depth_exceeds(text, MAX_DEPTH):
        raise InvalidMetadata(f"invalid JSON: {_TOO_DEEP}", source=source)
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as err:
        cause = f"invalid JSON: {err.msg} at line {err.lineno} column {err.colno}"
    except _NonStandard as err:
        cause = f"invalid JSON: {err}"
    except ValueError:  # int() refusing a number of more than 4,300 digits
        cause = "invalid JSON: a number is too long"
    except RecursionError:  # cannot happen within MAX_DEPTH; never a traceback regardless
        cause = f"invalid JSON: {_TOO_DEEP}"
    raise InvalidMetadata(cause, source=source)


def parse_yaml(text: str, source: str, loader: Optional[Type["yaml.SafeLoader"]] = None) -> Any:
    """``text`` as one YAML document read by ``loader`` (``yaml.SafeLoader`` by default, or a
    subclass of it) within the bounds above; raises ``InvalidMetadata`` (source, cause)."""
    import yaml  # here, not at the top: JSON-only platforms never pay for PyYAML at boot

    loader = yaml.SafeLoader if loader is None else loader
    _check_size(text, source)
    try:
        return yaml.load(text, Loader=_bounded(loader))  # noqa: S506 - a SafeLoader subclass
    except _Refused as err:
        cause = f"invalid YAML: {err}"
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        cause = "invalid YAML" + (f" at line {mark.line + 1} column {mark.column + 1}"
                                  if mark is not None else "")
    except (ValueError, TypeError, AttributeError, OverflowError):
        # an explicit tag whose text does not convert (``!!int`` of 5,000 digits, a bad
        # ``!!timestamp``); the exception's message would quote the value
        cause = "invalid YAML: a tagged value cannot be converted"
    except RecursionError:  # cannot happen within MAX_DEPTH; never a traceback regardless
        cause = f"invalid YAML: {_TOO_DEEP}"
    raise InvalidMetadata(cause, source=source)


def _check_size(text: str, source: str) -> None:
    if len(text) > MAX_DOCUMENT_CHARS:
        raise InvalidMetadata(f"document exceeds {MAX_DOCUMENT_CHARS} characters", source=source)


def _json_depth_exceeds(text: str, limit: int) -> bool:
    """Whether ``[``/``{`` nest deeper than ``limit`` outside strings (linear, stops early)."""
    depth = 0
    for match in _JSON_TOKEN.finditer(text):
        token = match.group()
        if token in _OPENERS:
            depth += 1
            if depth > limit:
                return True
        elif token in _CLOSERS:  # an unbalanced closer is the parser's error to report
            depth -= 1
    return False


class _NonStandard(ValueError):
    pass


def _reject_constant(name: str) -> object:
    raise _NonStandard(f"non-standard JSON constant {name}")


class _Refused(Exception):
    """A bound was exceeded while composing; the message is the cause (no document text)."""


class _Bounds:
    """Mixed in before a PyYAML loader: bounds nesting while scanning and composing, and alias
    expansion while composing.

    The scanner refuses a flow collection or a block indentation level beyond ``MAX_DEPTH``
    as it reads the opening token: a line of 100,000 ``[`` is not read past the 65th. The
    composer then bounds the nesting of flow and block collections combined. For every node
    composed so far it keeps (size, height) with aliases expanded: size counts nodes, height
    nested collections. An alias contributes the figures of the node it names, which is
    complete by then unless the alias sits inside it (a cycle).
    """

    def fetch_flow_collection_start(self, token_class):
        if self.flow_level >= MAX_DEPTH:
            raise _Refused(_TOO_DEEP)
        super().fetch_flow_collection_start(token_class)

    def add_indent(self, column):
        if self.indent < column and len(self.indents) >= MAX_DEPTH:
            raise _Refused(_TOO_DEEP)
        return super().add_indent(column)

    def compose_document(self):
        self._open_collections = 0
        self._figures: Dict[int, tuple] = {}  # id(node) → (size, height); nodes outlive the call
        return super().compose_document()

    def compose_node(self, parent, index):
        import yaml  # loaded already: only parse_yaml makes these loaders

        if self.check_event(yaml.AliasEvent):
            node = super().compose_node(parent, index)
            if id(node) not in self._figures:
                raise _Refused("an alias refers to a node that contains it")
            return node
        collection = self.check_event(yaml.SequenceStartEvent, yaml.MappingStartEvent)
        if collection:
            self._open_collections += 1
            if self._open_collections > MAX_DEPTH:
                raise _Refused(_TOO_DEEP)
        node = super().compose_node(parent, index)
        if collection:
            self._open_collections -= 1
            children = (node.value if isinstance(node, yaml.SequenceNode)
                        else [part for pair in node.value for part in pair])
            figures = [self._figures[id(child)] for child in children]
            size = 1 + sum(size for size, _ in figures)
            height = 1 + max((height for _, height in figures), default=0)
            if height > MAX_DEPTH:
                raise _Refused(_TOO_DEEP)
            if size > MAX_YAML_NODES:
                raise _Refused(f"aliases expand it to more than {MAX_YAML_NODES} nodes")
            self._figures[id(node)] = (size, height)
        else:
            self._figures[id(node)] = (1, 0)
        return node


@functools.lru_cache(maxsize=None)
def _bounded(loader: Type["yaml.SafeLoader"]) -> Type["yaml.SafeLoader"]:
    import yaml

    if not issubclass(loader, yaml.SafeLoader):
        raise TypeError("only SafeLoader subclasses may read metadata")
    return type("Bounded" + loader.__name__, (_Bounds, loader), {})
