"""The image builder's settings file: what it may say, and how a bad one is refused."""

from __future__ import annotations

import pytest

from cl_metadata import settings
from cl_metadata.errors import UsageError


def test_a_debian_image_settings(tmp_path):
    path = tmp_path / "cl-metadata.conf"
    path.write_text("# written once by the image build\n\nprovider = auto\n"
                    "ssh-users = debian, admin debian\n")
    assert settings.load(str(path)) == settings.Settings(provider="auto",
                                                         ssh_users=("debian", "admin"))


def test_missing_file_is_no_settings_and_core_is_the_default_user(tmp_path):
    assert settings.load(str(tmp_path / "absent")) == settings.Settings(None, ("core",))


@pytest.mark.parametrize("text, line, cause", [
    ("provider = aws\nprovider = gcp\n", 2, "provider given a second time"),
    ("# ok\nprovider aws\n", 2, "not a 'key = value' line"),
    ("providers = aws\n", 1, "unknown key 'providers' (known: provider, ssh-users, "
                             "ssh-keys-per-user)"),
    ("ssh-keys-per-user = maybe\n", 1, "ssh-keys-per-user must be yes or no"),
    ("provider = AWS EC2\n", 1, "provider must be a provider id, auto or none"),
    ("provider =\n", 1, "provider must be a provider id, auto or none"),
    ("\n\nssh-users = root;id\n", 3, "ssh-users must be user names separated by spaces or commas"),
    ("ssh-users =\n", 1, "ssh-users must be user names separated by spaces or commas"),
])
def test_a_malformed_file_names_file_and_line_never_the_value(tmp_path, text, line, cause):
    path = tmp_path / "cl-metadata.conf"
    path.write_text(text)
    with pytest.raises(UsageError) as info:
        settings.load(str(path))
    assert str(info.value) == f"settings {path} line {line}: {cause}"
    assert info.value.exit_code == 2
    assert "root;id" not in str(info.value) and "EC2" not in str(info.value)


def test_not_utf8_names_the_line(tmp_path):
    path = tmp_path / "cl-metadata.conf"
    path.write_bytes(b"provider = auto\nssh-users = d\xe9bian\n")
    with pytest.raises(UsageError, match=r"line 2: not UTF-8$"):
        settings.load(str(path))


def test_unreadable_path_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="cannot read"):
        settings.load(str(tmp_path))  # a directory
