"""What every provider is: a description of one platform's metadata protocol.

A provider turns a :class:`~cl_metadata.context.Context` into metadata. It never writes files,
never retries, never sleeps and never logs bodies: the shared HTTP client, config-drive reader
and writers in ``cl_metadata`` do those things once, for every platform.
"""

from __future__ import annotations

import threading
from typing import ClassVar, Dict, FrozenSet, List, Optional, Tuple

from cl_metadata.context import Context
from cl_metadata.model import NetworkInterface, VirtualNetDev

# Feature names match the command-line flags that need them.
ATTRIBUTES = "attributes"
SSH_KEYS = "ssh-keys"
HOSTNAME = "hostname"
NETWORK_UNITS = "network-units"
CHECK_IN = "check-in"
FEATURES = (ATTRIBUTES, SSH_KEYS, HOSTNAME, NETWORK_UNITS, CHECK_IN)


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

    def __init__(self, context: Context):
        self.context = context
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
