"""NetworkManager's own keyfile reader (libnm's ``nm_keyfile_read``, through GObject
introspection) run over the keyfiles named on the command line: each is read, normalized and
verified as NetworkManager would before loading it. Prints one JSON object per file (the
connection's type, interface name, MAC, methods, addresses, routes, DNS) and exits 1 naming
the first file NetworkManager would refuse or warn about.

Run with the system Python (``/usr/bin/python3``): python3-gi and gir1.2-nm-1.0 are Debian
packages, not wheels.
"""

import json
import os
import sys

import gi

gi.require_version("NM", "1.0")
from gi.repository import GLib, NM  # noqa: E402


def read(path):
    warnings = []

    def handler(keyfile, connection, handler_type, data, *user):
        message = data.warn_get()  # (message, severity)
        warnings.append(message[0] if isinstance(message, tuple) else str(message))
        return False  # a warning is as good as a refusal here

    keyfile = GLib.KeyFile()
    keyfile.load_from_file(path, GLib.KeyFileFlags.NONE)
    connection = NM.keyfile_read(keyfile, os.path.dirname(path), NM.KeyfileHandlerFlags.NONE,
                                 handler, None)
    if warnings:
        raise ValueError("; ".join(warnings))
    connection.normalize()  # what NetworkManager does before using a profile; raises if invalid
    connection.verify()
    return connection


def summary(connection):
    settings = connection.get_setting_connection()
    result = {"type": settings.get_connection_type(), "uuid": settings.get_uuid(),
              "interface-name": settings.get_interface_name(),
              "master": settings.get_master(), "slave-type": settings.get_slave_type()}
    wired = connection.get_setting_wired()
    if wired is not None:
        result["mac"] = wired.get_mac_address()
        result["cloned-mac"] = wired.get_cloned_mac_address()
    for name, ip in (("ipv4", connection.get_setting_ip4_config()),
                     ("ipv6", connection.get_setting_ip6_config())):
        if ip is None:
            continue
        result[name] = {
            "method": ip.get_method(),
            "addresses": [f"{a.get_address()}/{a.get_prefix()}"
                          for a in (ip.get_address(i) for i in range(ip.get_num_addresses()))],
            "dns": [ip.get_dns(i) for i in range(ip.get_num_dns())],
            "routes": [f"{r.get_dest()}/{r.get_prefix()},{r.get_next_hop()}"
                       for r in (ip.get_route(i) for i in range(ip.get_num_routes()))]}
    vlan = connection.get_setting_vlan()
    if vlan is not None:
        result["vlan"] = {"id": vlan.get_id(), "parent": vlan.get_parent()}
    bond = connection.get_setting_bond()
    if bond is not None:
        result["bond"] = {bond.get_option(i)[1]: bond.get_option(i)[2]
                          for i in range(bond.get_num_options())}
    bridge = connection.get_setting_bridge()
    if bridge is not None:
        result["bridge"] = {"stp": bridge.get_stp(), "priority": bridge.get_priority(),
                            "forward-delay": bridge.get_forward_delay(),
                            "hello-time": bridge.get_hello_time(),
                            "max-age": bridge.get_max_age(),
                            "ageing-time": bridge.get_ageing_time()}
    return result


def main(paths):
    for path in paths:
        try:
            connection = read(path)
        except (GLib.Error, ValueError) as err:
            print(f"{os.path.basename(path)}: {err}", file=sys.stderr)
            return 1
        print(json.dumps({"file": os.path.basename(path), **summary(connection)}, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
