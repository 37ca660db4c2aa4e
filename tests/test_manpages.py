"""The manual pages in man/ and the bash completion agree with the commands they describe.

Each page's OPTIONS (and COMMANDS) tags are compared with the option strings the command's
argparse parser defines, both ways, so a flag added, renamed or dropped in the code fails here
until the page follows. Exit statuses are compared with errors.py and with --help, the
ENVIRONMENT section with the overrides the code reads, and the pages must render without
warnings.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
from pathlib import Path
from typing import Dict, List, Set

import pytest

import cl_metadata
from cl_metadata import cli, errors, query
from cl_metadata.fakeserver import cli as fake_server_cli
from cl_metadata.imageimport import cli as import_image_cli

REPO = Path(__file__).resolve().parents[1]
MAN = REPO / "man"
PAGES = {"cl-metadata": cli.build_parser, "cl-metadata-fake-server": fake_server_cli.build_parser,
         "cl-metadata-import-image": import_image_cli.build_parser}
OPTION = re.compile(r"(?<![\w-])(--?[A-Za-z][\w-]*)")


def page(name: str) -> str:
    return (MAN / f"{name}.1").read_text()


def plain(roff: str) -> str:
    """roff source as text: font escapes and macro names gone, ``\\-`` a hyphen."""
    text = re.sub(r"\\f[BIRP]", "", roff).replace("\\-", "-").replace("\\&", "")
    return re.sub(r"^\.[A-Z]{1,2}\b ?", "", text, flags=re.M).replace('"', "")


def sections(roff: str) -> Dict[str, str]:
    parts = re.split(r"^\.SH (.+)$", roff, flags=re.M)
    return {title.strip('"'): body for title, body in zip(parts[1::2], parts[2::2])}


def tags(section: str) -> List[str]:
    """The tag line of every ``.TP`` item of a section, as text."""
    lines = section.splitlines()
    return [plain(lines[i + 1]) for i, line in enumerate(lines[:-1]) if line == ".TP"]


def tagged_options(section: str) -> Set[str]:
    return {opt for tag in tags(section) for opt in OPTION.findall(tag)}


def parser_options(parser: argparse.ArgumentParser) -> Set[str]:
    return {opt for action in parser._actions if action.help is not argparse.SUPPRESS
            for opt in action.option_strings}


def help_exit_statuses(parser: argparse.ArgumentParser) -> Set[int]:
    block = parser.format_help().split("exit status:", 1)[1].split("\n\n", 1)[0]
    return {int(m) for m in re.findall(r"^  (\d+)  ", block, re.M)}


def page_exit_statuses(name: str) -> Set[int]:
    return {int(tag) for tag in tags(sections(page(name))["EXIT STATUS"])}


def test_every_command_has_a_page_and_every_page_a_command():
    assert {p.stem for p in MAN.glob("*.1")} == set(PAGES)
    scripts = re.findall(r'^(cl-metadata[\w-]*) = ', (REPO / "pyproject.toml").read_text(), re.M)
    assert set(scripts) == set(PAGES)


@pytest.mark.parametrize("name", sorted(PAGES))
def test_page_options_are_the_parsers_options(name):
    documented = tagged_options(sections(page(name))["OPTIONS"])
    assert documented == parser_options(PAGES[name]())


@pytest.mark.parametrize("name", sorted(PAGES))
def test_page_mentions_no_option_the_command_lacks(name):
    known = parser_options(PAGES[name]())
    if name == "cl-metadata":
        known |= parser_options(cli.build_providers_parser())
    mentioned = {opt for opt in OPTION.findall(plain(page(name))) if opt.startswith("--")}
    # the fake server's page shows the agent's command line in its example
    if name == "cl-metadata-fake-server":
        mentioned -= parser_options(cli.build_parser())
    assert mentioned - known == set()


def test_providers_command_and_its_options_are_documented():
    commands = sections(page("cl-metadata"))["COMMANDS"]
    assert [tag.split()[0] for tag in tags(commands)] == ["providers", "query", "help"]
    documented = tagged_options(commands)
    assert documented == parser_options(cli.build_providers_parser()) - {"-h", "--help"}
    # the query item names each of its options (they are a run's, so OPTIONS explains them)
    item = plain(commands.split("\n.TP\n")[2])
    assert parser_options(query.build_parser()) - {"-h", "--help", "--verbose"} == {
        opt for opt in OPTION.findall(item) if opt in parser_options(query.build_parser())}


def test_agent_exit_statuses_are_those_of_errors_py_in_page_and_help():
    defined = {value for name, value in vars(errors).items() if name.startswith("EXIT_")}
    assert defined == {0, 1, 2}
    assert page_exit_statuses("cl-metadata") == defined
    assert help_exit_statuses(cli.build_parser()) == defined


def test_fake_server_exit_statuses_match_its_help():
    assert page_exit_statuses("cl-metadata-fake-server") == help_exit_statuses(
        fake_server_cli.build_parser()) == {0, 1, 2}


def test_environment_section_names_every_override_the_code_reads():
    # every override is a module constant NAME_ENV = "CL_METADATA_..." (fake server aside)
    read: Set[str] = set()
    for source in [*(REPO / "agent").rglob("*.py"), *(REPO / "providers").rglob("*.py")]:
        if "fakeserver" not in source.parts:
            read |= set(re.findall(r'^\w+_ENV = "(CL_METADATA_\w+)"', source.read_text(), re.M))
    assert {"CL_METADATA_ENDPOINT", "CL_METADATA_CONFIG_DRIVE", "CL_METADATA_CMDLINE",
            "CL_METADATA_TIMEOUT", "CL_METADATA_CONCURRENCY", "CL_METADATA_DMI_DIR"} <= read
    documented = {tag.strip() for tag in tags(sections(page("cl-metadata"))["ENVIRONMENT"])}
    assert documented == read
    # --help names them too
    assert set(re.findall(r"CL_METADATA_\w+", cli.build_parser().format_help())) == read


def test_page_documents_the_units_kill_switch_settings_file_and_outputs():
    parts = sections(page("cl-metadata"))
    units = "\n".join(p.read_text() for p in (REPO / "units").glob("*.service"))
    (switch,) = set(re.findall(r"^ConditionKernelCommandLine=!(\S+)$", units, re.M))
    assert switch in [tag.strip() for tag in tags(parts["KERNEL COMMAND LINE"])]
    settings = set(re.findall(r"--settings=(\S+)", units))
    files = plain(parts["FILES"])
    for path in settings | {"/run/metadata/coreos", "/run/metadata/afterburn"}:
        assert path in files


@pytest.mark.parametrize("name", sorted(PAGES))
def test_page_carries_the_package_version(name):
    (th,) = re.findall(r"^\.TH .*$", page(name), re.M)
    assert f'"cl-metadata {cl_metadata.__version__}"' in th


@pytest.mark.parametrize("name", sorted(PAGES))
def test_page_renders_without_warnings(name):
    if shutil.which("groff") is None:
        pytest.skip("groff is not installed (Debian package groff-base; tests/setup-system-deps)")
    result = subprocess.run(["groff", "-man", "-ww", "-z", str(MAN / f"{name}.1")],
                            capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stderr) == (0, "")
    if shutil.which("man") is not None:
        result = subprocess.run(["man", "--warnings", "-l", str(MAN / f"{name}.1")],
                                capture_output=True, text=True, timeout=60,
                                env={"PATH": "/usr/bin:/bin", "MANWIDTH": "80", "LANG": "C.UTF-8"})
        assert (result.returncode, result.stderr) == (0, "")


# --- bash completion ------------------------------------------------------------------------

COMPLETION = REPO / "packaging/completion/cl-metadata"


def test_completion_offers_every_long_option_and_no_other():
    script = COMPLETION.read_text()
    offered = script.split("--provider --cmdline", 1)[1].split("' --", 1)[0]
    offered_set = {"--provider", "--cmdline", *OPTION.findall(offered)}
    long_options = {o for o in parser_options(cli.build_parser()) if o.startswith("--")}
    assert offered_set == long_options
    # the values it offers are the parser's choices
    flavor = next(a for a in cli.build_parser()._actions if a.dest == "attributes_flavor")
    assert f"'{' '.join(flavor.choices)}'" in script


def test_completion_is_valid_bash():
    result = subprocess.run(["bash", "-n", str(COMPLETION)], capture_output=True, text=True)
    assert (result.returncode, result.stderr) == (0, "")
