"""Container Linux Config dynamic data (docs/attributes.md): units ct generated years ago name
${COREOS_…} variables; for every platform ct knows, each name it references must be in the
attributes file with the right value, read the way systemd reads EnvironmentFile=.
"""

import os
import re

import pytest

from cl_metadata.fakeserver.drive import write_tree
from cl_metadata.fakeserver.instance import load_instance
from cl_metadata.fakeserver.render import renderer_for

from conftest import run_agent
from systemd_envfile import load_environment_file

MACHINE = load_instance(os.path.join(os.path.dirname(__file__), "fixtures",
                                     "contract-instance.yaml"))

# ct --platform → {dynamic field: variable}, exactly ct v0.9.0's templating table
CT_TABLE = {
    "azure": {"PRIVATE_IPV4": "COREOS_AZURE_IPV4_DYNAMIC", "PUBLIC_IPV4": "COREOS_AZURE_IPV4_VIRTUAL"},
    "digitalocean": {"HOSTNAME": "COREOS_DIGITALOCEAN_HOSTNAME",
                     "PRIVATE_IPV4": "COREOS_DIGITALOCEAN_IPV4_PRIVATE_0",
                     "PUBLIC_IPV4": "COREOS_DIGITALOCEAN_IPV4_PUBLIC_0",
                     "PRIVATE_IPV6": "COREOS_DIGITALOCEAN_IPV6_PRIVATE_0",
                     "PUBLIC_IPV6": "COREOS_DIGITALOCEAN_IPV6_PUBLIC_0"},
    "ec2": {"HOSTNAME": "COREOS_EC2_HOSTNAME", "PRIVATE_IPV4": "COREOS_EC2_IPV4_LOCAL",
            "PUBLIC_IPV4": "COREOS_EC2_IPV4_PUBLIC"},
    "gce": {"HOSTNAME": "COREOS_GCE_HOSTNAME", "PRIVATE_IPV4": "COREOS_GCE_IP_LOCAL_0",
            "PUBLIC_IPV4": "COREOS_GCE_IP_EXTERNAL_0"},
    "packet": {"HOSTNAME": "COREOS_PACKET_HOSTNAME", "PRIVATE_IPV4": "COREOS_PACKET_IPV4_PRIVATE_0",
               "PUBLIC_IPV4": "COREOS_PACKET_IPV4_PUBLIC_0",
               "PUBLIC_IPV6": "COREOS_PACKET_IPV6_PUBLIC_0"},
    "openstack-metadata": {"HOSTNAME": "COREOS_OPENSTACK_HOSTNAME",
                           "PRIVATE_IPV4": "COREOS_OPENSTACK_IPV4_LOCAL",
                           "PUBLIC_IPV4": "COREOS_OPENSTACK_IPV4_PUBLIC"},
}
FACTS = {"HOSTNAME": MACHINE.hostname, "PRIVATE_IPV4": MACHINE.local_ipv4,
         "PUBLIC_IPV4": MACHINE.public_ipv4, "PUBLIC_IPV6": MACHINE.ipv6,
         "PRIVATE_IPV6": None}  # the machine has no private IPv6: the variable stays unset

# what ct wrote into etcd-member.service's drop-in
ETCD_EXEC = ("/usr/lib/coreos/etcd-wrapper --name=${NAME} "
             "--advertise-client-urls=http://{PRIVATE_IPV4}:2379 "
             "--initial-advertise-peer-urls=http://{PRIVATE_IPV4}:2380")


def expand(command, environment):
    """systemd's ${VAR} substitution in ExecStart= (an unset variable expands to nothing)."""
    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", lambda m: environment.get(m.group(1), ""),
                  command)


@pytest.mark.parametrize("platform", sorted(CT_TABLE))
def test_ct_dynamic_data(platform, fake_server, agent_env, tmp_path):
    server = fake_server(platform, instance=MACHINE)
    agent_env["CL_METADATA_ENDPOINT"] = server.url
    attributes = tmp_path / "coreos"
    result = run_agent("--provider", platform, "--attributes", attributes, env=agent_env)
    assert result.returncode == 0, result.stderr
    environment = load_environment_file(attributes.read_bytes())
    for field, variable in CT_TABLE[platform].items():
        if FACTS[field] is None:
            assert variable not in environment
        else:
            assert environment.get(variable) == FACTS[field], (platform, field, variable)

    if "PRIVATE_IPV4" in CT_TABLE[platform]:
        command = ETCD_EXEC.replace("{PRIVATE_IPV4}",
                                    "${" + CT_TABLE[platform]["PRIVATE_IPV4"] + "}")
        assert expand(command, {**environment, "NAME": "node1"}) == (
            "/usr/lib/coreos/etcd-wrapper --name=node1 "
            f"--advertise-client-urls=http://{MACHINE.local_ipv4}:2379 "
            f"--initial-advertise-peer-urls=http://{MACHINE.local_ipv4}:2380")


def test_ct_vagrant_virtualbox(agent_env, tmp_path):
    """vagrant-virtualbox reads the machine itself: hostname and eth1's address."""
    import socket
    import subprocess
    import sys
    attributes = tmp_path / "coreos"
    # point the provider at the loopback interface instead of eth1 for this run
    code = ("import sys; import cl_metadata.providers.vagrant_virtualbox as v; v.INTERFACE = 'lo'; "
            "from cl_metadata.cli import main; sys.exit(main(sys.argv[1:]))")
    result = subprocess.run([sys.executable, "-c", code, "--provider", "vagrant-virtualbox",
                             "--attributes", str(attributes)], env=agent_env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    environment = load_environment_file(attributes.read_bytes())
    assert environment["COREOS_VAGRANT_VIRTUALBOX_HOSTNAME"] == socket.gethostname()
    assert environment["COREOS_VAGRANT_VIRTUALBOX_PRIVATE_IPV4"] == "127.0.0.1"
