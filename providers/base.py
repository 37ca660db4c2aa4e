"""What every provider is: a description of one platform's metadata protocol.

A provider turns a :class:`~cl_metadata.context.Context` into metadata. It never writes files,
never retries, never sleeps and never logs bodies: the shared HTTP client, config-drive reader
and writers in ``cl_metadata`` do those things once, for every platform.
"""

from __future__ import annotations

import threading
from typing import ClassVar, Dict, FrozenSet, List, Mapping, Optional, Tuple

from cl_metadata.parsing import formats
from cl_metadata.context import Context
from cl_metadata.model import NetworkInterface, VirtualNetDev

# Feature names match the command-line flags that need them.
ATTRIBUTES = "attributes"
SSH_KEYS = "ssh-keys"
HOSTNAME = "hostname"
NETWORK_UNITS = "network-units"
CHECK_IN = "check-in"
USER_DATA = "user-data"
FEATURES = (ATTRIBUTES, SSH_KEYS, HOSTNAME, NETWORK_UNITS, CHECK_IN, USER_DATA)


class Provider:
    """Base class; every method has a harmless default ("this platform has none").

    Subclasses set ``id`` (the platform id of ``--provider`` and the kernel command line),
    ``description``, ``source`` and ``features``, and override the methods for what the platform has.
    Methods may be called concurrently from different threads; share a fetched document
    through :meth:`once`.
    """

    id: ClassVar[str] = ""
    description: ClassVar[str] = ""
    source: ClassVar[str] = ""  # "http", "config drive", "config drive, else http", "local"
    features: ClassVar[FrozenSet[str]] = frozenset()
    # Attribute names also written without the COREOS_/AFTERBURN_ prefix, for consumers that
    # read them so (ct's cloudstack-configdrive hostname).
    unprefixed_attributes: ClassVar[Tuple[str, ...]] = ()
    # The metadata service's addresses, when it publishes more than one: the IPv4 origin the
    # provider's URLs name first, then its IPv6 origins; the HTTP client uses whichever connects
    # (an IPv6-only machine gets its metadata). Empty: the URLs' own host only.
    endpoints: ClassVar[Tuple[str, ...]] = ()
    # With USER_DATA: where the platform keeps the user-data (a URL or file, named in errors
    # and in the README's table) and its transport encoding ("raw", "base64", …).
    user_data_source: ClassVar[str] = ""
    user_data_encoding: ClassVar[str] = "raw"

    def __init__(self, context: Context):
        self.context = context
        if self.endpoints:
            context.use_endpoints(self.endpoints)
        self._once_lock = threading.Lock()
        self._once_values: Dict[str, object] = {}

    # -- what the platform says ------------------------------------------------------------
    def attributes(self) -> Dict[str, str]:
        """Attribute names without prefix (``OPENSTACK_HOSTNAME``) mapped to their values."""
        return {}

    def ssh_keys(self) -> List[str]:
        """Raw public-key lines as served; validation happens in the writer."""
        return []

    def hostname(self) -> Optional[str]:
        return None

    def network(self) -> Tuple[List[NetworkInterface], List[VirtualNetDev]]:
        return [], []

    def user_data(self) -> Optional[bytes]:
        """The end user's configuration as the user gave it (the platform's own transport
        encoding, such as base64, already undone; a gzip stream is left for the writer), or None
        when the platform holds none. Only called when ``USER_DATA`` is a feature."""
        return None

    def check_in(self) -> None:
        """Tell the platform the machine booted. Only called when ``CHECK_IN`` is a feature."""
        raise NotImplementedError

    # -- lifetime ----------------------------------------------------------------------------
    def close(self) -> None:
        """Release what construction acquired (an unmounted drive, for instance)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- helpers for subclasses --------------------------------------------------------------
    def once(self, key: str, load):
        """``load()`` the first time ``key`` is asked for, from any thread; the value after."""
        with self._once_lock:
            lock = self._once_values.setdefault("lock:" + key, threading.Lock())
        with lock:
            if key not in self._once_values:
                self._once_values[key] = load()
            return self._once_values[key]


class TextTreeProvider(Provider):
    """A platform whose metadata is plain-text items under one base URL (EC2-style): the
    subclass is data — ``base``, ``attribute_paths`` (name → path), ``hostname_path``,
    ``keys_path`` (authorized_keys lines) and the platform's 404 and empty-value rules."""

    source = "http"
    base: ClassVar[str] = ""
    attribute_paths: ClassVar[Mapping[str, str]] = {}
    hostname_path: ClassVar[Optional[str]] = None
    keys_path: ClassVar[Optional[str]] = None
    optional: ClassVar[bool] = True  # a 404 means "not set" (False: a 404 is an error)
    empty_is_absent: ClassVar[bool] = False  # an empty item means "not set"

    def attributes(self) -> Dict[str, str]:
        return formats.text_attributes(self.context.http, self.base, self.attribute_paths,
                                       optional=self.optional,
                                       empty_is_absent=self.empty_is_absent)

    def hostname(self) -> Optional[str]:
        return self._item(self.hostname_path) or None if self.hostname_path else None

    def ssh_keys(self) -> List[str]:
        return formats.key_lines(self._item(self.keys_path)) if self.keys_path else []

    def _item(self, path: str) -> Optional[str]:
        return formats.text_items(self.context.http, self.base, [path], optional=self.optional,
                                  empty_is_absent=self.empty_is_absent)[path]
