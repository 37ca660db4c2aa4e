"""Host names: trimmed, cut like Afterburn (but label first), validated, written atomically."""

from __future__ import annotations

import logging
import os
import stat

import pytest

from cl_metadata.outputs import hostname
from cl_metadata.errors import InvalidMetadata


@pytest.fixture
def warnings():
    records = []

    class Collect(logging.Handler):
        def emit(self, record):
            if record.levelno >= logging.WARNING:
                records.append(record.getMessage())

    logger = logging.getLogger("cl_metadata")
    handler = Collect()
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)


@pytest.mark.parametrize("raw, expected", [
    ("host", "host"),
    ("ip-10-0-0-5.eu-west-1.compute.internal", "ip-10-0-0-5.eu-west-1.compute.internal"),
    ("  web-1.example.com.\n", "web-1.example.com"),
    ("Mixed-Case9", "Mixed-Case9"),
    ("a" * 31 + "." + "b" * 32, "a" * 31 + "." + "b" * 32),  # exactly 64: kept
    ("", None),
    ("  \n", None),
    (".", None),
])
def test_normalize(raw, expected, warnings):
    assert hostname.normalize(raw) == expected
    assert warnings == []


def test_a_long_name_is_cut_to_its_first_label_with_a_warning(warnings):
    long_name = "node-17." + "x" * 60 + ".example.com"
    assert hostname.normalize(long_name) == "node-17"
    assert warnings == ["host name of 80 characters is longer than 64, using its first label "
                        "(7 characters)"]


def test_a_long_first_label_is_cut_to_63_without_a_trailing_dash(warnings):
    label = "a" * 62 + "-" + "b" * 10
    assert hostname.normalize(label + ".example.com") == "a" * 62
    assert warnings == ["host name of 85 characters is longer than 64, using its first label "
                        "cut to 63 (62 characters)"]


def test_the_truncation_warning_never_carries_the_name(warnings):
    # a megabyte of host name must not become a megabyte of journal
    huge = "MARKERLABEL" + "x" * 40 + "." + ("y" * 60 + ".") * 17300 + "example.com"
    assert hostname.normalize(huge) == "MARKERLABEL" + "x" * 40
    assert warnings == [f"host name of {len(huge)} characters is longer than 64, using its "
                        "first label (51 characters)"]
    assert len(huge) > 1 << 20


def test_a_long_single_label_is_cut_to_63():
    assert hostname.normalize("c" * 100) == "c" * 63


@pytest.mark.parametrize("raw, reason", [
    ("a..b", "label 2 is empty"),
    (".a", "label 1 is empty"),
    ("-a.example", "label 1 starts or ends with '-'"),
    ("a.b-", "label 2 starts or ends with '-'"),
    ("under_score", "label 1 has a character other than letters, digits and '-'"),
    ("sp ace", "label 1 has a character other than letters, digits and '-'"),
    ("new\nline", "label 1 has a character other than letters, digits and '-'"),
    ("esc\x1b[2J", "label 1 has a character other than letters, digits and '-'"),
    ("café", "label 1 has a character other than letters, digits and '-'"),
    ("x" * 64, "label 1 is longer than 63 characters"),
    ("-" * 80, "label 1 is empty"),  # cut to 63, then every '-' stripped
])
def test_invalid_names_are_refused_without_echoing_them(raw, reason):
    with pytest.raises(InvalidMetadata) as caught:
        hostname.normalize(raw)
    assert caught.value.source == "hostname"
    assert caught.value.cause == f"not a valid host name ({reason})"
    assert "\n" not in str(caught.value) and "\x1b" not in str(caught.value)


def test_write(tmp_path):
    saved = os.umask(0o077)
    try:
        path = tmp_path / "run" / "hostname"
        path.parent.mkdir()  # only directories below /run itself are created
        hostname.write(path, " web-1.example.com. ")
    finally:
        os.umask(saved)
    assert path.read_bytes() == b"web-1.example.com\n"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644


@pytest.mark.parametrize("bad", ["evil\nline", "", None])
def test_write_refuses_invalid_or_empty_names_and_keeps_the_old_file(tmp_path, bad):
    path = tmp_path / "hostname"
    path.write_bytes(b"old\n")
    with pytest.raises(InvalidMetadata):
        hostname.write(path, bad)
    assert path.read_bytes() == b"old\n"
    assert os.listdir(tmp_path) == ["hostname"]
