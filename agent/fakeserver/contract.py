"""Contract checks for a provider, reusable from a plugin package's own pytest suite.

A platform shipped as a plugin (a distribution with a ``cl_metadata.providers`` entry point)
brings a provider class and, to be tested, a render module: ``PLATFORMS``, ``routes(instance)``
for an HTTP platform or ``drive_files(instance)`` for a config drive, exactly like the modules
of ``cl_metadata.fakeserver.render``. This module runs the real agent process against it and
holds the provider to the rules every built-in platform keeps::

    from cl_metadata.fakeserver import contract
    from examplecloud import render            # the plugin's render module

    def test_examplecloud_keeps_the_contract(tmp_path):
        contract.check_provider("examplecloud", tmp_path, renderer=render)

``check_provider`` runs every check below and raises :class:`ContractBroken` (an
``AssertionError``) naming the first rule broken; each check is also callable on its own:

- :func:`check_attribute_names`: attributes are valid environment names with the platform's
  stem (``EXAMPLECLOUD_…``) under both ``COREOS_`` and ``AFTERBURN_``, the same names under both.
- :func:`check_loopback_only`: nothing outside loopback was contacted or looked up (the agent
  runs with an audit hook that refuses and records any other address).
- :func:`check_requests`: no document was fetched twice in one run, and every request of a run
  with all outputs is needed by some single output; with ``needs`` the exact requests per output.
- :func:`check_no_value_logged`: with ``-v``, nothing on stdout or stderr holds a value of the
  machine (every text field of :data:`MARKED_INSTANCE` carries the marker ``zqx``).
- :func:`check_hostile_documents`: a garbage, oversized or off-host answer for each document
  (a garbage file for each drive file) ends in success or in exactly one ``cl-metadata: error:
  <id>:`` line, with every previously written output unchanged.

The provider is an id the registry knows (built in, or an installed plugin) or a provider class
importable by its module path (registered only inside the agent process the check starts). The
agent process never writes outside ``workdir``: SSH keys go to a stand-in home directory there.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Set, Tuple, Union

from .drive import write_tree
from .faults import DEFAULT_MALFORMED, Fault
from .instance import Instance, NetworkInterface, SshKey
from .render import renderer_for
from .server import FakeServer

MARKER = "zqx"
OUTPUTS = ("attributes", "ssh-keys", "hostname", "network-units")
OFF_HOST = "http://192.0.2.1/elsewhere"  # TEST-NET-1: a redirect target that must not be followed

# A machine whose every text value carries MARKER, so a value in a log line is easy to spot.
MARKED_INSTANCE = Instance(
    instance_id="zqxinstance0001",
    uuid="5eedd00d-feed-4bad-8bad-c0ffee5eed91",
    hostname="zqxhost.zqxdomain.example",
    local_ipv4="10.213.47.91",
    public_ipv4="198.51.100.213",
    ipv6="2001:db8:5eed:d00d::91",
    mac="02:5e:ed:00:00:91",
    region="zqxregion",
    availability_zone="zqxzone",
    project_id="zqxproject",
    instance_type="zqxtype",
    image_id="zqximage",
    user_data="#cloud-config\nhostname: zqxuserdata\n",
    ssh_keys=(SshKey(name="zqxkeyname", key="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAxYgbg7sT/3E"
                                           "jY7mw+pqeP/YuiykylRre135lEkf43f zqxkeycomment"),),
    network_interfaces=(
        NetworkInterface(mac="02:5e:ed:00:00:91", name="eth0", public=True,
                         local_ipv4="10.213.47.91", ipv4_prefix=24, ipv4_gateway="10.213.47.1",
                         public_ipv4="198.51.100.213", ipv6="2001:db8:5eed:d00d::91",
                         ipv6_prefix=64, ipv6_gateway="2001:db8:5eed:d00d::1"),),
    nameservers=("192.0.2.53",),
)

# Run inside the agent process before cl_metadata starts: refuse (and record) any network
# address that is not loopback, give the current user a stand-in home, register a provider
# class given by module path.
_BOOTSTRAP = r"""
import ipaddress, os, pwd, runpy, socket, sys
refused_log = os.environ.pop("CL_METADATA_CONTRACT_REFUSED")
home = os.environ.pop("CL_METADATA_CONTRACT_HOME")
provider = os.environ.pop("CL_METADATA_CONTRACT_PROVIDER", "")

def is_loopback(host):
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    if host in ("localhost", None):
        return True
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        return False

def refuse(host):
    with open(refused_log, "a") as log:
        log.write(f"{host}\n")
    raise PermissionError(f"contract: refused to contact {host}")

def audit(event, args):
    if event in ("socket.connect", "socket.sendto"):
        address = args[1]
        if isinstance(address, tuple) and not is_loopback(address[0]):
            refuse(address[0])
    elif event in ("socket.getaddrinfo", "socket.gethostbyname"):
        if not is_loopback(args[0]):
            refuse(args[0])

sys.addaudithook(audit)
real_getpwnam = pwd.getpwnam
def getpwnam(name):
    entry = real_getpwnam(name)
    if entry.pw_uid != os.geteuid():
        return entry
    return pwd.struct_passwd((*entry[:5], home, entry[6]))
pwd.getpwnam = getpwnam
if provider:
    from cl_metadata import registry
    provider_id, target = provider.split("=", 1)
    registry.BUILTIN[provider_id] = target
sys.argv = ["cl-metadata", *sys.argv[1:]]
runpy.run_module("cl_metadata", run_name="__main__", alter_sys=True)
"""


class ContractBroken(AssertionError):
    """A provider broke a rule of the contract; the message names the rule and the run."""


@dataclass
class Run:
    """One agent run: what it was asked, how it ended, what it wrote and whom it asked."""

    args: List[str]
    returncode: int
    stdout: str
    stderr: str
    outputs: Dict[str, Optional[bytes]]  # "attributes"/"hostname" -> file content (None: absent)
    requests: List[Tuple[str, str]] = field(default_factory=list)  # (method, path?query), in order
    refused: List[str] = field(default_factory=list)  # non-loopback hosts the agent tried

    def attributes(self) -> Dict[str, str]:
        text = (self.outputs.get("attributes") or b"").decode("utf-8")
        return dict(line.split("=", 1) for line in text.splitlines() if line)

    def describe(self) -> str:
        return "cl-metadata " + " ".join(self.args)


@dataclass
class Target:
    """The provider under test and how its platform is served."""

    provider_id: str
    provider: type
    renderer: object
    instance: Instance
    class_path: str = ""  # "module:Class" when the registry does not know the provider

    @property
    def is_http(self) -> bool:
        return self.provider.source == "http" or not hasattr(self.renderer, "drive_files")

    @property
    def features(self) -> frozenset:
        return frozenset(self.provider.features)


def target(provider: Union[str, type], *, renderer: object = None,
           instance: Optional[Instance] = None) -> Target:
    """Resolve ``provider`` (an id or a provider class) and its render module."""
    if isinstance(provider, str):
        from cl_metadata import registry

        cls, class_path = registry.get(provider).provider, ""
    else:
        cls = provider
        class_path = f"{cls.__module__}:{cls.__qualname__}"
    provider_id = cls.id
    return Target(provider_id, cls, renderer if renderer is not None else renderer_for(provider_id),
                  instance if instance is not None else MARKED_INSTANCE, class_path)


def _child_env(workdir: Path, tgt: Target) -> Dict[str, str]:
    env = {key: value for key, value in os.environ.items()
           if not key.startswith("CL_METADATA_") and key not in ("NOTIFY_SOCKET", "JOURNAL_STREAM")
           and not key.lower().endswith("_proxy")}
    cmdline = workdir / "cmdline"
    cmdline.write_text("root=/dev/vda console=ttyS0\n")  # names no platform
    env.update(CL_METADATA_CMDLINE=str(cmdline), CL_METADATA_TIMEOUT="10",
               CL_METADATA_CONTRACT_REFUSED=str(workdir / "refused"),
               CL_METADATA_CONTRACT_HOME=str(workdir / "home"),
               PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    if tgt.class_path:
        env["CL_METADATA_CONTRACT_PROVIDER"] = f"{tgt.provider_id}={tgt.class_path}"
    return env


def run(tgt: Target, workdir: Union[str, Path], *, outputs: Iterable[str] = OUTPUTS,
        prefix: str = "COREOS", faults: Sequence[Fault] = (),
        drive_files: Optional[Mapping[str, bytes]] = None,
        existing: Optional[Mapping[str, bytes]] = None) -> Run:
    """Run the agent once for ``tgt`` with ``outputs`` (those the provider has) and ``-v``.

    ``workdir`` must be a new or empty directory. HTTP platforms are served by a loopback
    :class:`FakeServer` (with ``faults``); drive platforms read ``drive_files`` (default: the
    renderer's files for the instance). ``existing`` pre-writes output files ("attributes",
    "hostname") so a failed run can be seen to leave them alone.
    """
    work = Path(workdir)
    (work / "out").mkdir(parents=True, exist_ok=True)
    (work / "home").mkdir(mode=0o700, exist_ok=True)
    env = _child_env(work, tgt)
    wanted = [name for name in outputs if name in tgt.features]
    args = ["--provider", tgt.provider_id, "--attributes-prefix", prefix, "-v"]
    files = {"attributes": work / "out/attributes", "hostname": work / "out/hostname"}
    for name, content in (existing or {}).items():
        files[name].write_bytes(content)
    if "attributes" in wanted:
        args += ["--attributes", str(files["attributes"])]
    if "hostname" in wanted:
        args += ["--hostname", str(files["hostname"])]
    if "ssh-keys" in wanted:
        import pwd

        args += ["--ssh-keys", pwd.getpwuid(os.geteuid()).pw_name]
    if "network-units" in wanted:
        (work / "out/network").mkdir(exist_ok=True)
        args += ["--network-units", str(work / "out/network")]
    if "check-in" in wanted:
        args += ["--check-in"]
    server = None
    if tgt.is_http:
        server = FakeServer(tgt.provider_id, tgt.instance, faults=faults, renderer=tgt.renderer)
        server.start()
        env["CL_METADATA_ENDPOINT"] = server.url
    else:
        drive = work / "drive"
        write_tree(drive_files if drive_files is not None
                   else tgt.renderer.drive_files(tgt.instance), drive)
        env["CL_METADATA_CONFIG_DRIVE"] = str(drive)
    try:
        done = subprocess.run([sys.executable, "-c", _BOOTSTRAP, *args], env=env,
                              capture_output=True, text=True, timeout=60)
    finally:
        if server is not None:
            server.stop()
    refused_log = work / "refused"
    return Run(args=args, returncode=done.returncode, stdout=done.stdout, stderr=done.stderr,
               outputs={name: path.read_bytes() if path.exists() else None
                        for name, path in files.items()},
               requests=[(r["method"], r["path"] + ("?" + r["query"] if r["query"] else ""))
                         for r in server.requests] if server else [],
               refused=refused_log.read_text().split() if refused_log.exists() else [])


def _fail(run_: Run, rule: str) -> None:
    raise ContractBroken(f"{rule} (in `{run_.describe()}`; exit {run_.returncode}; "
                         f"stderr: {run_.stderr.strip()[-800:]!r})")


def _succeeded(run_: Run) -> None:
    if run_.returncode != 0:
        _fail(run_, "the run failed on a well-formed platform")


def check_attribute_names(tgt: Target, workdir: Path, *, stem: Optional[str] = None) -> List[Run]:
    """Every attribute is ``<PREFIX>_<STEM>_NAME`` (a valid environment name), the same names
    under ``COREOS`` and ``AFTERBURN``; names the provider lists as unprefixed are allowed.
    Returns the runs."""
    if "attributes" not in tgt.features:
        return []
    runs = []
    stem = stem or tgt.provider_id.upper().replace("-", "_")
    names: Dict[str, Set[str]] = {}
    for prefix in ("COREOS", "AFTERBURN"):
        done = run(tgt, workdir / f"names-{prefix}", outputs=("attributes",), prefix=prefix)
        runs.append(done)
        _succeeded(done)
        attributes = done.attributes()
        if not attributes:
            _fail(done, "no attribute was written for a machine that has them")
        pattern = re.compile(rf"{prefix}_{re.escape(stem)}_[A-Z0-9_]*[A-Z0-9]")
        for name in attributes:
            if name in tgt.provider.unprefixed_attributes:
                continue
            if not pattern.fullmatch(name):
                _fail(done, f"attribute {name!r} is not {prefix}_{stem}_<NAME>")
        names[prefix] = {n[len(prefix):] for n in attributes
                         if n not in tgt.provider.unprefixed_attributes}
    if names["COREOS"] != names["AFTERBURN"]:
        raise ContractBroken(f"{tgt.provider_id}: COREOS_ and AFTERBURN_ name different "
                             f"attributes: {sorted(names['COREOS'] ^ names['AFTERBURN'])}")
    return runs


def check_loopback_only(runs: Iterable[Run]) -> None:
    """No run tried to reach (or look up) anything but loopback."""
    for done in runs:
        if done.refused:
            _fail(done, f"the agent tried to reach {sorted(set(done.refused))}, not loopback")


def check_requests(tgt: Target, workdir: Path,
                   needs: Optional[Mapping[str, Set[Tuple[str, str]]]] = None) -> List[Run]:
    """No document is fetched twice in a run (the agent's HTTP client sends one GET per URL and
    options; a provider asking one URL two ways defeats it), every request of the all-outputs run is needed by
    some single output, and with ``needs`` (output -> {(method, path)}) each single-output run
    asks exactly that. Returns the runs (for the other checks)."""
    everything = run(tgt, workdir / "all")
    _succeeded(everything)
    runs = [everything]
    singles: Dict[str, Set[Tuple[str, str]]] = {}
    for output in OUTPUTS:
        if output in tgt.features:
            done = run(tgt, workdir / f"only-{output}", outputs=(output,))
            _succeeded(done)
            runs.append(done)
            singles[output] = set(done.requests)
            if needs is not None and output in needs and singles[output] != set(needs[output]):
                _fail(done, f"{output} asked {sorted(singles[output])}, "
                            f"expected {sorted(needs[output])}")
    for done in runs:
        gets = [path for method, path in done.requests if method == "GET"]
        repeated = sorted({path for path in gets if gets.count(path) > 1})
        if repeated:
            _fail(done, f"fetched more than once in one run: {repeated}")
    unneeded = set(everything.requests) - set().union(*singles.values()) if singles else set()
    if unneeded:
        _fail(everything, f"requests no single output needs: {sorted(unneeded)}")
    return runs


def _values(instance: Instance) -> List[str]:
    """The instance's values that must never be printed (addresses included)."""
    values = [MARKER] if instance is MARKED_INSTANCE else []
    for value in (instance.instance_id, instance.local_ipv4, instance.public_ipv4, instance.ipv6,
                  instance.project_id):
        if value and len(value) >= 6:
            values.append(value)
    return values


def check_no_value_logged(tgt: Target, runs: Iterable[Run]) -> None:
    """Nothing any run printed holds a value of the machine (the marker, its ids, addresses)."""
    for done in runs:
        for value in _values(tgt.instance):
            if value in done.stdout or value in done.stderr:
                _fail(done, f"a metadata value reached the log ({value!r})")


def _one_line_error_or_success(tgt: Target, done: Run, before: Mapping[str, bytes],
                               what: str) -> None:
    if done.returncode == 0:
        return
    errors = [line for line in done.stderr.splitlines() if line.startswith("cl-metadata: error:")]
    lines = done.stderr.strip().splitlines()
    if done.returncode != 1 or len(errors) != 1 or lines[-1] != errors[0] \
            or not errors[0].startswith(f"cl-metadata: error: {tgt.provider_id}: ") \
            or "Traceback" in done.stderr:
        _fail(done, f"{what}: not one `cl-metadata: error: {tgt.provider_id}: …` line, exit 1")
    for name, content in before.items():
        if done.outputs.get(name) != content:
            _fail(done, f"{what}: the failed run changed the existing {name} file")


def check_hostile_documents(tgt: Target, workdir: Path, paths: Iterable[str] = ()) -> List[Run]:
    """Garbage, oversized and redirected answers (HTTP: for each of ``paths`` and everything;
    drives: garbage in place of each file) end in success or one error line, and a failure
    leaves the outputs that were there untouched. Returns the runs."""
    before = {"attributes": b"PREVIOUS=1\n", "hostname": b"previous\n"}
    runs = []
    if tgt.is_http:
        cases = [(f"{path} garbage", Fault(path, "malformed")) for path in sorted(set(paths))]
        cases += [(f"{path} oversized", Fault(path, "oversize")) for path in sorted(set(paths))]
        cases += [("redirect off-host", Fault("*", "redirect", OFF_HOST)),
                  ("garbage everywhere", Fault("*", "malformed"))]
        for number, (what, fault) in enumerate(cases):
            done = run(tgt, workdir / f"hostile-{number}", faults=[fault], existing=before)
            _one_line_error_or_success(tgt, done, before, what)
            runs.append(done)
    else:
        files = dict(tgt.renderer.drive_files(tgt.instance))
        for number, name in enumerate(sorted(files)):
            hostile = dict(files, **{name: DEFAULT_MALFORMED})
            done = run(tgt, workdir / f"hostile-{number}", drive_files=hostile, existing=before)
            _one_line_error_or_success(tgt, done, before, f"garbage {name}")
            runs.append(done)
    return runs


def check_provider(provider: Union[str, type], workdir: Union[str, Path], *,
                   renderer: object = None, instance: Optional[Instance] = None,
                   stem: Optional[str] = None,
                   needs: Optional[Mapping[str, Set[Tuple[str, str]]]] = None) -> None:
    """Every check of this module for ``provider`` served by ``renderer`` (default: the
    built-in render module of its id) from ``instance`` (default :data:`MARKED_INSTANCE`).
    ``stem``: the attribute stem when it is not the id upper-cased (``CLOUDSTACK``)."""
    tgt = target(provider, renderer=renderer, instance=instance)
    work = Path(workdir)
    runs = check_attribute_names(tgt, work, stem=stem)
    runs += check_requests(tgt, work, needs)
    paths = {path for done in runs for method, path in done.requests if method == "GET"}
    runs += check_hostile_documents(tgt, work, paths)
    check_loopback_only(runs)
    check_no_value_logged(tgt, runs)
