"""The attributes file: what sh, bash and systemd read back is exactly what the platform said."""

from __future__ import annotations

import errno
import logging
import os
import random
import shutil
import stat
import subprocess

import pytest

from cl_metadata.outputs import envfile, fsutil
from cl_metadata.errors import OutputError
from systemd_envfile import load_environment_file, parse_env_file

SHELLS = [shell for shell in ("/bin/sh", "/bin/dash", "/bin/bash") if shutil.which(shell)]
SHELL_ENV = {"PATH": "/usr/bin:/bin", "HOME": "/home-must-not-appear", "X": "x-must-not-appear"}



def value_of_bytes(size: int, pattern: str = "ab\"c$d`e\\f 'é日本#;=") -> str:
    """A value of exactly ``size`` UTF-8 bytes, made of ``pattern`` (quoting-heavy by default)."""
    value = ""
    while len((value + pattern).encode("utf-8")) <= size:
        value += pattern
    for char in pattern:
        if len((value + char).encode("utf-8")) <= size:
            value += char
    return value + "x" * (size - len(value.encode("utf-8")))


AT_THE_VALUE_CAP = value_of_bytes(envfile.MAX_VALUE_BYTES)

# Values that must read back byte-identical (all of them are written).
HOSTILE = {
    "TRAILING_BACKSLASH": "abc\\",
    "ONLY_BACKSLASH": "\\",
    "BACKSLASH_N": "a\\nb",
    "DOUBLE_QUOTE": 'say "hi"',
    "LONE_DOUBLE_QUOTE": '"',
    "SINGLE_QUOTE": "it's",
    "DOLLAR_HOME": "$HOME",
    "DOLLAR_BRACE": "${X}",
    "DOLLAR_PAREN": "$(touch pwned)",
    "BACKTICK": "`touch pwned`",
    "HASH": "#x",
    "SEMICOLON": ";x",
    "SEMICOLON_COMMAND": "x; touch pwned",
    "SPACES_BOTH_ENDS": "  padded value  ",
    "ONLY_SPACES": "   ",
    "EQUALS": "a=b=c",
    "LEADING_EQUALS": "=x",
    "UNICODE_E": "café",
    "UNICODE_CJK": "日本",
    "EMPTY": "",
    "GLOB": "*?[a]",
    "TILDE": "~root",
    "AMPERSAND_PIPE": "a&b|c>d<e",
    "BRACES_PARENS": "{a,b}(c)",
    "BANG": "!!",
    "MIXED": "\\\"$`'#; \\$",
    "LONG": AT_THE_VALUE_CAP,
}

# Values that cannot be written safely: dropped with a warning.
CONTROL = {
    "NEWLINE": "line1\nCOREOS_INJECTED=1",
    "CR": "a\rb",
    "NUL": "a\0b",
    "TAB": "a\tb",
    "ESC": "\x1b[31mred",
    "DEL": "a\x7f",
    "UNIT_SEPARATOR": "a\x1f",
    "TRAILING_NEWLINE": "10.0.0.5\n",
}


@pytest.fixture
def events():
    """Records emitted on the cl_metadata logger (independent of pytest's caplog wiring)."""
    records = []

    class Collect(logging.Handler):
        def emit(self, record):
            records.append(record)

    logger = logging.getLogger("cl_metadata")
    handler = Collect(level=logging.DEBUG)
    saved_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield records
    logger.removeHandler(handler)
    logger.setLevel(saved_level)


def read_with_shell(shell: str, path, name: str) -> bytes:
    result = subprocess.run([shell, "-c", f'. "$1" && printf %s "${{{name}-UNSET}}"', "sh",
                             str(path)], capture_output=True, env=SHELL_ENV, cwd=str(path.parent))
    assert result.returncode == 0, result.stderr
    assert result.stderr == b""
    return result.stdout


# --- rendering -------------------------------------------------------------------------------

def test_render_sorts_lines_and_keeps_plain_values_bare():
    data, dropped = envfile.render({
        "EC2_REGION": "eu-west-1",
        "EC2_IPV4_LOCAL": "10.0.0.5",
        "EC2_HOSTNAME": "ip-10-0-0-5.eu-west-1.compute.internal",
        "DIGITALOCEAN_IPV6_PUBLIC_0": "2a03:b0c0:2:d0::1b:c001",
        "PACKET_PHONE_HOME_URL": "https://metadata.packet.net/phone-home?x=1%2B",
        "EMPTY": "",
    }, "COREOS")
    assert dropped == []
    assert data == (
        b"COREOS_DIGITALOCEAN_IPV6_PUBLIC_0=2a03:b0c0:2:d0::1b:c001\n"
        b"COREOS_EC2_HOSTNAME=ip-10-0-0-5.eu-west-1.compute.internal\n"
        b"COREOS_EC2_IPV4_LOCAL=10.0.0.5\n"
        b"COREOS_EC2_REGION=eu-west-1\n"
        b"COREOS_EMPTY=\n"
        b"COREOS_PACKET_PHONE_HOME_URL=\"https://metadata.packet.net/phone-home?x=1%2B\"\n"
    )


@pytest.mark.parametrize("value, written", [
    ("10.0.0.5", "10.0.0.5"),
    ("user@host:/a,b+c%d=e-f_g", "user@host:/a,b+c%d=e-f_g"),
    ("", ""),
    ("a b", '"a b"'),
    ('say "hi"', '"say \\"hi\\""'),
    ("abc\\", '"abc\\\\"'),
    ("$HOME", '"\\$HOME"'),
    ("`id`", '"\\`id\\`"'),
    ("it's", "\"it's\""),
    ("#x", '"#x"'),
    ("~root", '"~root"'),
    ("café", '"café"'),
    (" x ", '" x "'),
])
def test_quoting(value, written):
    data, _ = envfile.render({"V": value}, "AFTERBURN")
    assert data == f"AFTERBURN_V={written}\n".encode("utf-8")


@pytest.mark.parametrize("name", sorted(CONTROL))
def test_control_characters_drop_the_attribute_with_a_warning(name, events):
    value = "SECRETVALUE" + CONTROL[name]
    data, dropped = envfile.render({name: value, "KEPT": "1"}, "COREOS")
    assert data == b"COREOS_KEPT=1\n"
    assert dropped == [name]
    warnings = [r.getMessage() for r in events if r.levelno == logging.WARNING]
    assert warnings == [f"attribute COREOS_{name} dropped: the value contains a control character"]
    assert "SECRETVALUE" not in warnings[0]


def test_values_that_are_not_valid_unicode_or_not_text_are_dropped(events):
    data, dropped = envfile.render({"SURROGATE": "a\udcff", "NUMBER": 5, "OK": "x"}, "COREOS")
    assert data == b"COREOS_OK=x\n"
    assert sorted(dropped) == ["NUMBER", "SURROGATE"]
    messages = sorted(r.getMessage() for r in events if r.levelno == logging.WARNING)
    assert messages == ["attribute COREOS_NUMBER dropped: the value is not text",
                        "attribute COREOS_SURROGATE dropped: the value is not valid Unicode"]


@pytest.mark.parametrize("name", ["lower", "A-B", "A B", "A\nCOREOS_X", "A=B", "", "É", "A.B"])
def test_names_outside_upper_case_letters_digits_underscore_are_dropped(name, events):
    data, dropped = envfile.render({name: "v"}, "COREOS")
    assert data == b""
    assert dropped == [name]
    message = [r.getMessage() for r in events if r.levelno == logging.WARNING][0]
    assert "\n" not in message and message.endswith("dropped: not a valid variable name")


def test_a_digit_first_name_is_fine_after_the_prefix_but_a_bad_prefix_is_not():
    assert envfile.render({"0": "v"}, "COREOS") == (b"COREOS_0=v\n", [])
    assert envfile.render({"X": "v"}, "1BAD") == (b"", ["X"])
    assert envfile.render({"X": "v"}, "") == (b"", ["X"])


# --- the promise: byte-identical read-back ---------------------------------------------------

@pytest.fixture
def hostile_file(tmp_path):
    data, dropped = envfile.render({**HOSTILE, **CONTROL}, "COREOS")
    assert sorted(dropped) == sorted(CONTROL)
    path = tmp_path / "attributes"
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_shells_read_back_every_value_exactly(hostile_file, shell, name):
    assert read_with_shell(shell, hostile_file, f"COREOS_{name}") == HOSTILE[name].encode("utf-8")


@pytest.mark.parametrize("shell", SHELLS)
def test_shells_see_dropped_attributes_as_unset_and_run_nothing(hostile_file, shell):
    for name in CONTROL:
        assert read_with_shell(shell, hostile_file, f"COREOS_{name}") == b"UNSET"
    assert read_with_shell(shell, hostile_file, "COREOS_INJECTED") == b"UNSET"
    assert not (hostile_file.parent / "pwned").exists()


def test_systemd_reads_back_every_value_exactly(hostile_file):
    env = load_environment_file(hostile_file.read_bytes())
    assert env == {f"COREOS_{name}": value for name, value in HOSTILE.items()}


def test_random_values_round_trip_through_systemd_and_dash(tmp_path):
    rng = random.Random(20240501)
    alphabet = "aZ09 _.,:/@%+=-\\\"'$`#;!*?~&|<>(){}[]é日\u00a0\u2028"
    values = {f"R{i}": "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 40)))
              for i in range(300)}
    data, dropped = envfile.render(values, "AFTERBURN")
    assert dropped == []
    assert load_environment_file(data) == {f"AFTERBURN_{k}": v for k, v in values.items()}
    path = tmp_path / "attributes"
    path.write_bytes(data)
    names = sorted(values)[:60]
    script = '. "$1" && printf "%s\\0" ' + " ".join(f'"$AFTERBURN_{n}"' for n in names)
    result = subprocess.run(["/bin/sh", "-c", script, "sh", str(path)], capture_output=True,
                            env=SHELL_ENV, check=True)
    assert result.stdout.split(b"\0")[:-1] == [values[n].encode("utf-8") for n in names]


# --- the systemd port itself, against hand-checked inputs ------------------------------------

@pytest.mark.parametrize("text, expected", [
    (b"A=1\nB = 2 \n", {"A": "1", "B": "2"}),
    (b"# comment\n; also a comment\nC=3", {"C": "3"}),
    (b'D="x \\"y\\" \\$z \\n \\\\ \\`"\n', {"D": 'x "y" $z \\n \\ `'}),
    (b"E='a \"b\" \\ c'\n", {"E": 'a "b" \\ c'}),
    (b"F=abc\\\ndef\n", {"F": "abcdef"}),
    (b'G="multi\nline"\n', {"G": "multi\nline"}),
    (b'G2="joined \\\nline"\n', {"G2": "joined line"}),
    (b"H=unquoted # not a comment  \n", {"H": "unquoted # not a comment"}),
    (b"I=a\0junk\nJ=b\n", {"I": "a"}),
    (b"K\nL=\n", {"L": ""}),
    (b"M=\"a\"'b'\n", {"M": "ab"}),
    (b"M2=\"a\"b'c'\n", {"M2": "ab'c'"}),  # once unquoted, quotes are literal
    (b"N=   leading\n", {"N": "leading"}),
    (b"O=\\ x\n", {"O": " x"}),
    (b"P=1\r\nQ=2\r\n", {"P": "1", "Q": "2"}),
    (b"#continued comment \\\nR=1\nS=2\n", {"S": "2"}),  # v252: the comment eats the R line
    (b"T=first\nT=second\n", {"T": "second"}),
    (b"1X=a\nY-Z=b\n_ok=c\n", {"_ok": "c"}),
    (b"U=\"unterminated", {"U": "unterminated"}),
    (b'V="  keep  "  \n', {"V": "  keep  "}),
])
def test_systemd_port_on_hand_checked_inputs(text, expected):
    assert load_environment_file(text) == expected


def test_systemd_port_keeps_null_values_apart_and_refuses_invalid_utf8():
    assert parse_env_file(b"A=\nB=''\nC") == [(b"A", None), (b"B", None)]
    with pytest.raises(ValueError):
        load_environment_file(b"A=\xff\n")


# --- writing ---------------------------------------------------------------------------------

def test_write_replaces_the_file_with_mode_0644_and_reports(tmp_path, events):
    path = tmp_path / "run" / "metadata" / "coreos"
    path.parent.mkdir(parents=True)  # only directories below /run itself are created
    count = envfile.write(path, {"EC2_IPV4_LOCAL": "10.0.0.5", "BAD": "x\ny"}, "COREOS")
    assert count == 1
    assert path.read_bytes() == b"COREOS_EC2_IPV4_LOCAL=10.0.0.5\n"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
    written = [r for r in events if getattr(r, "cl_metadata_event", None) == "attributes-written"]
    assert len(written) == 1
    assert written[0].cl_metadata_fields == {"path": str(path)}
    assert "x\ny" not in written[0].getMessage()


def test_write_with_no_attributes_writes_an_empty_file(tmp_path):
    path = tmp_path / "coreos"
    path.write_bytes(b"COREOS_OLD=1\n")
    assert envfile.write(path, {}, "COREOS") == 0
    assert path.read_bytes() == b""


def test_a_failed_write_keeps_the_previous_file_and_emits_nothing(tmp_path, monkeypatch, events):
    path = tmp_path / "coreos"
    path.write_bytes(b"COREOS_OLD=1\n")

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(fsutil.os, "fsync", no_space)
    with pytest.raises(OutputError) as caught:
        envfile.write(path, {"NEW": "2"}, "COREOS")
    monkeypatch.undo()
    assert str(caught.value) == f"{path}: syncing the file: No space left on device"
    assert path.read_bytes() == b"COREOS_OLD=1\n"
    assert os.listdir(tmp_path) == ["coreos"]
    assert not [r for r in events if getattr(r, "cl_metadata_event", None)]


def test_unprefixed_names_are_written_twice():
    data, dropped = envfile.render({"CLOUDSTACK_LOCAL_HOSTNAME": "node-1", "CLOUDSTACK_VM_ID": "v"},
                                   "COREOS", unprefixed=("CLOUDSTACK_LOCAL_HOSTNAME", "ABSENT"))
    assert dropped == []
    assert data == (b"CLOUDSTACK_LOCAL_HOSTNAME=node-1\n"
                    b"COREOS_CLOUDSTACK_LOCAL_HOSTNAME=node-1\n"
                    b"COREOS_CLOUDSTACK_VM_ID=v\n")


# --- size caps: every consumer can still take the file in ------------------------------------

def warning_lines(events):
    return [r.getMessage() for r in events if r.levelno == logging.WARNING]


def test_a_value_over_the_cap_is_dropped_naming_its_length_never_its_content(events):
    cap = envfile.MAX_VALUE_BYTES
    assert cap == 4096 and len(AT_THE_VALUE_CAP.encode("utf-8")) == cap
    over = "SECRETVALUE" + "x" * (200 * 1024)  # the 200 KiB value sh could not take
    one_over = value_of_bytes(cap + 1, "é")  # an odd size: the bound counts bytes, not characters
    data, dropped = envfile.render({"HUGE": over, "ONE_OVER": one_over, "AT_CAP": "a" * cap,
                                    "IPV4": "10.0.0.5"}, "COREOS")
    assert data == b"COREOS_AT_CAP=" + b"a" * cap + b"\nCOREOS_IPV4=10.0.0.5\n"
    assert dropped == ["HUGE", "ONE_OVER"]
    assert warning_lines(events) == [
        f"attribute COREOS_HUGE dropped: the value is {len(over)} bytes, over the 4096-byte cap",
        "attribute COREOS_ONE_OVER dropped: the value is 4097 bytes, over the 4096-byte cap"]


def test_over_the_file_cap_the_longest_lines_go_first_ties_by_name(events):
    assert envfile.MAX_FILE_BYTES == 64 * 1024
    # 16 values at the cap that quote to 2 + 2 * 4096 bytes ("$" is escaped), plus short ones
    attributes = {f"Q{i:02}": "$" * 4096 for i in range(16)}
    attributes.update({"IPV4": "10.0.0.5", "HOSTNAME": "node-1"})
    data, dropped = envfile.render(attributes, "COREOS")
    line = len("COREOS_Q00=") + 2 + 2 * 4096 + 1
    # 16 such lines are 131 KiB; seven fit beside the short ones, nine go, first by name
    assert dropped == [f"Q{i:02}" for i in range(9)]
    assert data.count(b"\n") == 9 and len(data) == 7 * line + len(
        b"COREOS_HOSTNAME=node-1\nCOREOS_IPV4=10.0.0.5\n")
    assert data.startswith(b"COREOS_HOSTNAME=node-1\nCOREOS_IPV4=10.0.0.5\nCOREOS_Q09=")
    why = f"the file would exceed 65536 bytes (its lines are {line} bytes, the longest left)"
    assert warning_lines(events) == [f"attribute COREOS_Q{i:02} dropped: {why}"
                                     for i in range(5)] + ["... and 4 more attributes dropped"]
    assert envfile.render(dict(reversed(attributes.items())), "COREOS")[0] == data


def test_the_file_cap_counts_the_unprefixed_copy_with_its_attribute():
    attributes = {f"V{i:02}": "v" * 4000 for i in range(16)}
    data, dropped = envfile.render(attributes, "COREOS", unprefixed=("V15",))
    # V15 is written twice, so its two lines are the longest: it goes first, both lines at once
    assert dropped[0] == "V15" and b"V15=" not in data
    assert len(data) <= envfile.MAX_FILE_BYTES


def test_per_item_warnings_are_summarised_after_five(events):
    attributes = {f"BAD_{i:02}": f"x\n{i}" for i in range(12)}
    data, dropped = envfile.render({**attributes, "OK": "1"}, "COREOS")
    assert data == b"COREOS_OK=1\n" and len(dropped) == 12
    assert warning_lines(events) == [
        f"attribute COREOS_BAD_{i:02} dropped: the value contains a control character"
        for i in range(5)] + ["... and 7 more attributes dropped"]


@pytest.fixture
def file_at_the_caps(tmp_path):
    """A file as large as the caps allow, of values as large as the value cap allows."""
    heavy = value_of_bytes(envfile.MAX_VALUE_BYTES)  # quoting makes its line longer still
    attributes = {f"BIG_{i:02}": heavy if i % 2 else "p" * envfile.MAX_VALUE_BYTES
                  for i in range(40)}
    data, dropped = envfile.render(attributes, "COREOS")
    assert dropped and envfile.MAX_FILE_BYTES - 8 * 1024 < len(data) <= envfile.MAX_FILE_BYTES
    path = tmp_path / "attributes"
    path.write_bytes(data)
    return path, {f"COREOS_{name}": value for name, value in attributes.items()
                  if name not in dropped}


def test_a_file_at_the_caps_reads_back_through_systemd(file_at_the_caps):
    path, expected = file_at_the_caps
    assert load_environment_file(path.read_bytes()) == expected


@pytest.mark.parametrize("shell", SHELLS)
def test_a_file_at_the_caps_reads_back_through_sh_and_survives_exec(file_at_the_caps, shell):
    path, expected = file_at_the_caps
    # every value exported: the exec of env carries the whole file in its environment
    result = subprocess.run([shell, "-c", 'set -a && . "$1" && exec env -0', "sh", str(path)],
                            capture_output=True, env=SHELL_ENV)
    assert result.returncode == 0 and result.stderr == b""
    seen = dict(item.split(b"=", 1) for item in result.stdout.split(b"\0") if item)
    assert {name: seen.get(name.encode()) for name in expected} == {
        name: value.encode("utf-8") for name, value in expected.items()}
