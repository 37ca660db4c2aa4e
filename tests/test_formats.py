import pytest

from cl_metadata.parsing import formats
from cl_metadata.errors import InvalidMetadata


def test_text_strips_and_checks_utf8():
    assert formats.text(b"  10.0.0.5\n", "s") == "10.0.0.5"
    assert formats.text(None, "s") is None
    assert formats.text(b"", "s") == ""
    with pytest.raises(InvalidMetadata, match=r"^s: not valid UTF-8 \(byte 1\)$"):
        formats.text(b"a\xff", "s")


@pytest.mark.parametrize("body, expected", [
    ("0=alice\n1=deploy\n", ["0", "1"]),
    ("\n0=alice\n\n", ["0"]),
    ("", []),
    (None, []),
])
def test_ec2_key_index(body, expected):
    assert formats.ec2_key_index(body, "s") == expected


@pytest.mark.parametrize("body", ["0=alice\nfoo", "0=a=b", "x=alice", "=alice"])
def test_ec2_key_index_rejects_malformed_lines(body):
    with pytest.raises(InvalidMetadata, match="is not '<index>=<name>'"):
        formats.ec2_key_index(body, "s")


def test_string_field_types():
    doc = {"a": "x ", "n": 7, "b": True, "l": [1], "z": None}
    assert formats.string_field(doc, "a", "s") == "x"
    assert formats.string_field(doc, "n", "s") == "7"
    assert formats.string_field(doc, "z", "s") is None
    assert formats.string_field(doc, "missing", "s") is None
    for field, kind in (("b", "a boolean"), ("l", "a list")):
        with pytest.raises(InvalidMetadata, match=f"field '{field}': expected a string, got {kind}"):
            formats.string_field(doc, field, "s")
    with pytest.raises(InvalidMetadata, match="field 'missing' is missing"):
        formats.string_field(doc, "missing", "s", required=True)


def test_json_object_errors_name_position_not_content():
    with pytest.raises(InvalidMetadata) as info:
        formats.json_object(b'{"secret": tru', "doc")
    assert "line 1 column" in info.value.cause and "secret" not in str(info.value)
    with pytest.raises(InvalidMetadata, match="expected a JSON object, got a list"):
        formats.json_object(b"[1]", "doc")


@pytest.mark.parametrize("body, cause", [
    (b"[" * 100000, "invalid JSON: nested too deeply"),
    (b'{"a":' * 100000, "invalid JSON: nested too deeply"),
    (b'{"a": NaN}', "invalid JSON: non-standard JSON constant NaN"),
    (b"9" * 5000, "invalid JSON: a number is too long"),
])
def test_json_documents_are_bounded_before_parsing(body, cause):
    # no RecursionError traceback, no quoted content: the one "invalid" error
    with pytest.raises(InvalidMetadata) as info:
        formats.json_document(body, "GET http://169.254.169.254/doc")
    assert (info.value.source, info.value.cause) == ("GET http://169.254.169.254/doc", cause)


class RecordingHttp:
    """Answers get_many from a table and records what was asked."""

    def __init__(self, answers):
        self.answers, self.asked = answers, []

    def get_many(self, requests):
        self.asked.append([(url, kwargs["optional"]) for url, kwargs in requests])
        return [self.answers.get(url) for url, _ in requests]


def test_text_items_one_round_each_path_once():
    http = RecordingHttp({"b/x": b"1\n", "b/e": b"", "b/gone": None})
    assert formats.text_items(http, "b/", ["x", "e", "gone", "x"]) == {
        "x": "1", "e": "", "gone": None}
    assert http.asked == [[("b/x", True), ("b/e", True), ("b/gone", True)]]
    assert formats.text_items(http, "b/", ["e"], empty_is_absent=True) == {"e": None}


def test_text_attributes_leave_absent_items_out():
    http = RecordingHttp({"b/id": b"i-1", "b/host": b"h"})
    names = {"ID": "id", "HOST": "host", "ALSO_HOST": "host", "IP": "ip"}
    assert formats.text_attributes(http, "b/", names, optional=False) == {
        "ID": "i-1", "HOST": "h", "ALSO_HOST": "h"}
    assert http.asked == [[("b/id", False), ("b/host", False), ("b/ip", False)]]
