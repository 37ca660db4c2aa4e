"""Import ``requests`` without its character-set detection library.

The agent reads only raw bytes from ``requests`` (``iter_content``) and decodes them by its own
rules, so chardet or charset_normalizer, which ``import requests`` loads up front (about 6 ms
and 2.5 MiB for charset_normalizer, more for chardet), would be paid for nothing on every boot.

requests 2.32 and later treat the detector as optional: when neither can be imported they work
on and only warn. Older releases insist on one: requests 2.28 (Debian 12's python3-requests)
fails to import without either, so there the cheaper charset_normalizer is kept and chardet
alone is left out. The detectors are made unimportable only while ``requests`` itself is
imported, through the interpreter's documented ``sys.modules[name] = None`` mechanism; nothing
of the library is patched, and the process may import them normally afterwards.
"""

from __future__ import annotations

import sys
import warnings
from types import ModuleType
from typing import Sequence

DETECTORS = ("chardet", "charset_normalizer")
# Tried in order: none (requests >= 2.32), then charset_normalizer only (older requests).
_LEAVE_OUT = (DETECTORS, ("chardet",))


def import_requests() -> ModuleType:
    """The ``requests`` module, imported with as little character detection as it accepts."""
    if "requests" in sys.modules:
        return sys.modules["requests"]
    for left_out in _LEAVE_OUT:
        try:
            return _import_without(left_out)
        except Exception:  # noqa: BLE001 - an older requests refusing to start without one
            _forget("requests")
    import requests  # as it comes: whatever it fails on now is the real error

    return requests


def _import_without(names: Sequence[str]) -> ModuleType:
    blocked = [name for name in names if name not in sys.modules]
    for name in blocked:
        sys.modules[name] = None  # type: ignore[assignment]  # "import name" raises ImportError
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            import requests
    finally:
        for name in blocked:
            if sys.modules.get(name, ...) is None:
                del sys.modules[name]
    for warning in caught:  # requests' own complaint about the missing detector is expected
        if warning.category.__name__ != "RequestsDependencyWarning":
            warnings.warn_explicit(warning.message, warning.category, warning.filename,
                                   warning.lineno)
    return requests


def _forget(package: str) -> None:
    """Drop a half-imported package so that the next attempt imports it afresh."""
    for name in [n for n in sys.modules if n == package or n.startswith(package + ".")]:
        del sys.modules[name]
