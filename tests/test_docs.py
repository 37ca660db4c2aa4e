"""The documentation stands alone: docs/attributes.md is what the code writes today, and no file
in the repository sends its reader to a document the repository does not hold."""

import os
import re
import subprocess

import pytest

import attributes_doc

REPO = attributes_doc.REPO

# The reference notes the code was first written from lived outside the repository under these
# names; a citation of one must now resolve to a file in the repository (docs/…), as must any
# docs/ page cited anywhere.
CITATION = re.compile(r"(?<![\w/.-])((?:[\w.-]+/)*(?:attributes|providers|hardening|style|qemu)"
                      r"\.md|(?:[\w.-]+/)*docs/[\w.-]+\.md)")

SELF = "tests/test_docs.py"


def tracked_files():
    try:
        out = subprocess.run(["git", "-C", REPO, "ls-files", "-z"], capture_output=True,
                             check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git work tree (an sdist): nothing tracked to check")
    return [path for path in out.decode().split("\0") if path]


def unresolved_citations(path, text):
    """Citations in ``text`` (from file ``path``) that name no file of the repository, read
    relative to the repository root or to the citing file's directory."""
    here = os.path.dirname(path)
    missing = []
    for match in CITATION.finditer(text):
        cited = match.group(1)
        if not any(os.path.isfile(os.path.join(REPO, base, cited)) for base in ("", here)):
            missing.append(cited)
    return missing


def test_a_citation_resolves_only_to_a_file_in_the_repository(tmp_path):
    # what the repository check below relies on, shown on both sides
    outside = "providers" + ".md"  # spelled in two parts: no file here may name it whole
    assert unresolved_citations("providers/aws.py", f"see {outside} §2 \"aws\"") == [outside]
    assert unresolved_citations("providers/aws.py", "see `attributes.md` §7") == ["attributes.md"]
    assert unresolved_citations("README.md", "see docs/nowhere.md") == ["docs/nowhere.md"]
    assert unresolved_citations("providers/aws.py", "see docs/attributes.md, aws") == []
    assert unresolved_citations("tests/x.py", "tests/attributes_doc.py renders it") == []


def test_no_tracked_file_cites_a_document_outside_the_repository():
    offenders = {}
    for path in tracked_files():
        if path == SELF or not os.path.isfile(os.path.join(REPO, path)):
            continue  # this file's own examples name missing documents on purpose
        try:
            with open(os.path.join(REPO, path), encoding="utf-8") as f:
                text = f.read()
        except (UnicodeDecodeError, OSError):
            continue  # binary files cite nothing
        missing = unresolved_citations(path, text)
        if missing:
            offenders[path] = sorted(set(missing))
    assert offenders == {}


def test_docs_pages_exist():
    for page in ("attributes.md", "protocols.md", "hardening.md", "packaging.md"):
        assert os.path.getsize(os.path.join(REPO, "docs", page)) > 1000, page


def test_attributes_reference_is_current():
    with open(attributes_doc.DOC, encoding="utf-8") as f:
        committed = f.read()
    assert committed == attributes_doc.render(), (
        "docs/attributes.md is stale: run .venv/bin/python tests/attributes_doc.py --write")


def test_attributes_reference_names_what_the_providers_write():
    # every name a provider wrote for the contract machine is in the reference, under both
    # prefixes, in its platform's section
    text = attributes_doc.render()
    emitted = attributes_doc.emitted_names()
    assert emitted["openstack-metadata"] >= {"OPENSTACK_IPV4_LOCAL", "OPENSTACK_INSTANCE_UUID"}
    for provider_id, names in emitted.items():
        section = text.split(f"\n## {provider_id}\n", 1)[1].split("\n## ", 1)[0]
        for name in names:
            row = attributes_doc.normalise(name)
            if provider_id == "qemu" and row not in ("QEMU_INSTANCE_ID", "QEMU_HOSTNAME"):
                row = "QEMU_<NAME>"
            assert f"`COREOS_{row}`" in section and f"`AFTERBURN_{row}`" in section, name


def test_ct_dynamic_data_names_are_in_the_reference():
    text = attributes_doc.render()
    for platform, fields in attributes_doc.ct_table().items():
        section = text.split(f"\n## {platform}\n", 1)[1].split("\n## ", 1)[0]
        for variable in fields.values():
            if variable.startswith("COREOS_"):
                row = attributes_doc.normalise(variable[len("COREOS_"):])
                assert f"`COREOS_{row}`" in section, variable
            else:  # ct's one unprefixed name
                assert f"Also written without prefix: `{variable}`" in section, variable


def test_a_name_without_a_source_fails_the_rendering():
    with pytest.raises(SystemExit, match="vultr: no source known for VULTR_NEW_THING"):
        attributes_doc.rows("vultr", {"VULTR_HOSTNAME", "VULTR_NEW_THING"})
