"""A fake metadata server for tests, demos and QEMU guests: one instance description, every
platform's wire format, loopback or stdin/stdout only.

    with FakeServer("openstack", faults=[parse_fault("/openstack=status:503@1")]) as server:
        ... point the agent at server.url, then assert on server.requests ...
"""

from .faults import Fault, parse_fault
from .instance import Instance, NetworkInterface, SshKey, load_instance
from .server import FakeServer

__all__ = ["FakeServer", "Fault", "Instance", "NetworkInterface", "SshKey", "load_instance",
           "parse_fault"]
