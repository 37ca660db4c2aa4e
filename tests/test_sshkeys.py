"""SSH keys: strict validation, and the privileged fragment writer against planted traps.

The writer tests create a throwaway user (root only; skipped otherwise) whose homes live in a
world-traversable temp directory, so the forked, privilege-dropped child can reach them.
"""

from __future__ import annotations

import base64
import errno
import logging
import os
import pwd
import secrets
import shutil
import signal
import stat
import struct
import subprocess
import tempfile
import time

import pytest

from cl_metadata.outputs import sshkeys
from cl_metadata.errors import OutputError
from cl_metadata.outputs.sshkeys import SshKey, parse_key, validate_keys

IS_ROOT = os.geteuid() == 0
FRAGMENT = "cl-metadata"


def blob(key_type: str, payload: int = 32, *, embedded: str = None) -> str:
    """A structurally valid key blob: length-prefixed type string, then random key bytes."""
    name = (embedded or key_type).encode()
    return base64.b64encode(struct.pack(">I", len(name)) + name + os.urandom(payload)).decode()


def key_line(key_type: str = "ssh-ed25519", comment: str = "") -> str:
    line = f"{key_type} {blob(key_type)}"
    return f"{line} {comment}" if comment else line


# --- validation ------------------------------------------------------------------------------

@pytest.mark.parametrize("key_type", sorted(sshkeys.KNOWN_TYPES))
def test_every_known_type_parses_and_round_trips(key_type):
    data = blob(key_type, 64)
    key = parse_key(f"{key_type} {data} alice@laptop")
    assert key == SshKey(key_type, data, "alice@laptop")
    assert key.line() == f"{key_type} {data} alice@laptop"
    assert parse_key(key.line()) == key


def test_comment_is_optional_and_separators_and_line_ends_are_normalised():
    data = blob("ssh-rsa", 256)
    assert parse_key(f"ssh-rsa {data}") == SshKey("ssh-rsa", data, "")
    assert parse_key(f"ssh-rsa {data}").line() == f"ssh-rsa {data}"
    assert parse_key(f"  ssh-rsa\t\t{data}  my\tcomment \r\n") == SshKey("ssh-rsa", data,
                                                                           "my comment")
    assert parse_key(f"ssh-rsa {data} café 日本").comment == "café 日本"


def _non_canonical_blob() -> str:
    raw = struct.pack(">I", 11) + b"ssh-ed25519" + b"\x01" * 31 + b"\x00"  # 47 bytes: one "="
    text = base64.b64encode(raw).decode()
    assert text.endswith("A=")
    return text[:-2] + "B="  # same bytes when decoded leniently, non-zero unused bits


GOOD = blob("ssh-ed25519")
BAD_KEYS = [
    ("", "empty"),
    ("   \t ", "empty"),
    ("ssh-ed25519", "no key data"),
    (f"ssh-ed25519 {GOOD[:-4]}!!!!", "key data is not valid base64"),
    (f"ssh-ed25519 {GOOD[:-1]}", "key data is not valid base64"),
    (f"ssh-ed25519 {GOOD}=", "key data is not valid base64"),
    (f"ssh-ed25519 {_non_canonical_blob()}", "key data is not canonical base64"),
    ("ssh-ed25519 YWI=", "key data is too short"),
    ("ssh-ed25519 " + base64.b64encode(struct.pack(">I", 99) + b"ssh-ed25519").decode(),
     "key data is truncated"),
    ("ssh-ed25519 " + base64.b64encode(struct.pack(">I", 11) + b"ssh-ed25519").decode(),
     "key data holds no key after the type"),
    (f"ssh-rsa {GOOD}", "key data is for a different key type"),
    (f"ssh-ed25519 {blob('ssh-ed25519', embedded='ssh-ed25518')}",
     "key data is for a different key type"),
    (f'command="/bin/sh" ssh-ed25519 {GOOD}', "key options are not allowed"),
    (f'from="10.0.0.0/8",no-pty ssh-ed25519 {GOOD}', "key options are not allowed"),
    (f"no-pty ssh-ed25519 {GOOD}", "key options are not allowed"),
    (f"restrict,command=x ssh-ed25519 {GOOD}", "key options are not allowed"),
    (f"ssh-foo {GOOD}", "unknown key type"),
    (f"ssh-ed25519-cert-v01@openssh.com {GOOD}", "unknown key type"),
    (f"SSH-ED25519 {GOOD}", "unknown key type"),
    (f"ssh-ed25519 {GOOD} me\nssh-rsa {blob('ssh-rsa')} attacker", "spans more than one line"),
    (f"ssh-ed25519 {GOOD}\rssh-rsa {blob('ssh-rsa')}", "spans more than one line"),
    (f"ssh-ed25519 {GOOD} co\0mment", "contains a NUL or control character"),
    (f"ssh-ed25519 {GOOD[:8]}\0{GOOD[8:]}", "contains a NUL or control character"),
    (f"ssh-ed25519 {GOOD} \x1b[2Jclear", "contains a NUL or control character"),
    (f"ssh-ed25519 {GOOD} bad\x7f", "contains a NUL or control character"),
    (f"ssh-ed25519 {GOOD} line\u2028separator", "comment has unprintable characters"),
    (f"ssh-ed25519 {GOOD} lone\udcffsurrogate", "comment has unprintable characters"),
    (f"ssh-rsa {blob('ssh-rsa', 12 * 1024)}", "longer than 16 KiB"),
    (f"ssh-ed25519 {GOOD} " + "c" * (16 * 1024), "longer than 16 KiB"),
    (b"ssh-ed25519 AAAA", "not text"),
    (None, "not text"),
]


@pytest.mark.parametrize("line, reason", BAD_KEYS,
                         ids=[f"{i}-{reason}" for i, (_, reason) in enumerate(BAD_KEYS)])
def test_bad_keys_are_refused_with_a_reason_that_never_echoes_the_key(line, reason):
    with pytest.raises(ValueError) as caught:
        parse_key(line)
    assert str(caught.value) == reason


def test_a_large_but_legal_key_is_accepted():
    data = blob("ssh-rsa", 9 * 1024)  # ~12 KiB of base64
    assert parse_key(f"ssh-rsa {data}").blob == data


def test_validate_keys_keeps_order_drops_duplicates_and_names_dropped_entries_by_position():
    first, second = key_line("ssh-ed25519", "one"), key_line("ecdsa-sha2-nistp256", "two")
    duplicate = first.rsplit(" ", 1)[0] + " same key, other comment"
    bad_blob = blob("ssh-ed25519")
    lines = [
        "# a comment line",                          # 1: skipped silently
        first,                                       # 2
        "",                                          # 3: skipped silently
        f'command="x" ssh-ed25519 {bad_blob}',       # 4: dropped
        second + "\n",                               # 5
        duplicate,                                   # 6: duplicate, dropped silently
        f"ssh-dss {bad_blob}",                       # 7: dropped, type mismatch
        "ssh-ed25519 AAAA\nssh-rsa AAAA",            # 8: dropped
        "   ",                                       # 9: skipped silently
    ]
    keys, warnings = validate_keys(lines)
    assert [k.line() for k in keys] == [first, second]
    assert warnings == [
        "ssh key #4 dropped: key options are not allowed",
        "ssh key #7 dropped: key data is for a different key type",
        "ssh key #8 dropped: spans more than one line",
    ]
    assert all(bad_blob not in w for w in warnings)


def test_validate_keys_on_nothing():
    assert validate_keys([]) == ([], [])
    assert validate_keys(iter(["", "# only comments"])) == ([], [])


# --- checks that need no user ----------------------------------------------------------------

def fake_user(name="someone", uid=4242, gid=4242, home="/nonexistent"):
    return pwd.struct_passwd((name, "x", uid, gid, "", home, "/bin/sh"))


@pytest.mark.parametrize("home, cause", [
    ("", "the user has no home directory"),
    ("/", "home directory is /"),
    ("//", "home directory is /"),
    ("/./", "home directory is /"),
    ("relative/home", "home directory 'relative/home' is not an absolute path"),
])
def test_unusable_home_paths_are_refused(monkeypatch, home, cause):
    monkeypatch.setattr(sshkeys.pwd, "getpwnam", lambda name: fake_user(name, home=home))
    with pytest.raises(OutputError) as caught:
        sshkeys.lookup_user("someone")
    assert caught.value.target == "ssh keys for someone"
    assert caught.value.cause == cause
    with pytest.raises(OutputError) as caught:
        sshkeys.write_fragment(fake_user(home=home), [parse_key(key_line())])
    assert caught.value.cause == cause


def test_missing_home_and_home_owned_by_someone_else_are_refused(monkeypatch, tmp_path):
    missing = str(tmp_path / "gone")
    monkeypatch.setattr(sshkeys.pwd, "getpwnam", lambda name: fake_user(name, home=missing))
    with pytest.raises(OutputError) as caught:
        sshkeys.lookup_user("someone")
    assert caught.value.cause == f"home directory {missing} does not exist"
    owner = os.stat(tmp_path).st_uid
    monkeypatch.setattr(sshkeys.pwd, "getpwnam",
                        lambda name: fake_user(name, uid=owner + 1, home=str(tmp_path)))
    with pytest.raises(OutputError) as caught:
        sshkeys.lookup_user("someone")
    assert caught.value.cause == f"home directory {tmp_path} is not owned by someone"
    (tmp_path / "file").write_bytes(b"")
    monkeypatch.setattr(sshkeys.pwd, "getpwnam",
                        lambda name: fake_user(name, uid=owner, home=str(tmp_path / "file")))
    with pytest.raises(OutputError) as caught:
        sshkeys.lookup_user("someone")
    assert caught.value.cause == f"home directory {tmp_path / 'file'} is not a directory"


@pytest.mark.parametrize("name", ["no-such-user-cl-metadata-test", "bad\0name", ""])
def test_unknown_user(name):
    with pytest.raises(OutputError) as caught:
        sshkeys.lookup_user(name)
    assert caught.value.cause == "no such user"
    assert caught.value.target.startswith("ssh keys for ")
    assert "\0" not in str(caught.value)


@pytest.mark.parametrize("fragment", ["../authorized_keys", "a/b", ".hidden", "", "x" * 200])
def test_fragment_names_are_single_plain_components(fragment, tmp_path):
    with pytest.raises(OutputError) as caught:
        sshkeys.write_fragment(fake_user(home=str(tmp_path)), [], fragment=fragment)
    assert caught.value.cause == "invalid fragment file name"


@pytest.mark.parametrize("bad_key", [
    SshKey("ssh-ed25519", blob("ssh-ed25519"), "x\nssh-rsa AAAA injected"),
    SshKey("ssh-ed25519", "not base64!", ""),
    "ssh-ed25519 AAAA",
])
def test_only_validated_keys_are_written(bad_key, tmp_path):
    with pytest.raises(OutputError) as caught:
        sshkeys.write_fragment(fake_user(home=str(tmp_path)),
                               [parse_key(key_line()), bad_key])
    assert caught.value.cause == "ssh key #2 is not a validated key; refusing to write it"
    assert os.listdir(tmp_path) == []


# --- the writer, as root with a throwaway user -----------------------------------------------

@pytest.fixture(scope="module")
def base():
    if not IS_ROOT:
        pytest.skip("needs root")
    path = tempfile.mkdtemp(prefix="clm-sshkeys-", dir="/tmp")
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path)


def _run_tool(argv):
    for _ in range(20):  # other test runs may hold the passwd lock for a moment
        result = subprocess.run(argv, capture_output=True, text=True)
        if result.returncode == 0:
            return
        time.sleep(0.1)
    raise RuntimeError(f"{argv[0]} failed: {result.stderr.strip()}")


@pytest.fixture(scope="module")
def account(base):
    """A real user (so setresuid lands on a real account) with its passwd home in ``base``;
    the "root" tests skip through ``base`` when not run as root."""
    name = "clmt" + secrets.token_hex(4)
    home = os.path.join(base, "passwd-home")
    _run_tool(["useradd", "--no-create-home", "--home-dir", home, "--shell", "/usr/sbin/nologin",
               "--user-group", name])
    try:
        user = pwd.getpwnam(name)
        os.mkdir(home, 0o755)
        os.chown(home, user.pw_uid, user.pw_gid)
        yield user
    finally:
        _run_tool(["userdel", name])


@pytest.fixture
def user(account, base):
    """The account with a fresh empty home of its own for this test."""
    home = tempfile.mkdtemp(prefix="home-", dir=base)
    os.chmod(home, 0o755)
    os.chown(home, account.pw_uid, account.pw_gid)
    return pwd.struct_passwd((account.pw_name, "x", account.pw_uid, account.pw_gid, "", home,
                              "/usr/sbin/nologin"))


@pytest.fixture
def root_dir(base):
    """A root-owned directory with a root-owned file: what planted symlinks point at."""
    path = tempfile.mkdtemp(prefix="rootonly-", dir=base)
    os.chmod(path, 0o755)
    with open(os.path.join(path, "authorized_keys"), "w") as f:
        f.write("root's keys\n")
    os.chmod(os.path.join(path, "authorized_keys"), 0o644)
    return path


def snapshot(directory):
    """Every entry below ``directory`` with type, mode, owner and content."""
    result = {}
    for top, dirs, files in os.walk(directory):
        for name in dirs + files:
            path = os.path.join(top, name)
            st = os.lstat(path)
            content = None
            if stat.S_ISREG(st.st_mode):
                with open(path, "rb") as f:
                    content = f.read()
            elif stat.S_ISLNK(st.st_mode):
                content = os.readlink(path)
            result[os.path.relpath(path, directory)] = (st.st_mode, st.st_uid, st.st_gid, content)
    return result


@pytest.fixture
def events():
    records = []

    class Collect(logging.Handler):
        def emit(self, record):
            if getattr(record, "cl_metadata_event", None):
                records.append((record.cl_metadata_event, record.cl_metadata_fields))

    logger = logging.getLogger("cl_metadata")
    handler = Collect()
    saved = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield records
    logger.removeHandler(handler)
    logger.setLevel(saved)


def keys(*types):
    return [parse_key(key_line(t, f"key-{i}")) for i, t in enumerate(types)]


def fragment_path(user):
    return os.path.join(user.pw_dir, ".ssh", "authorized_keys.d", FRAGMENT)


def assert_owned(path, user, mode):
    st = os.lstat(path)
    assert stat.S_IMODE(st.st_mode) == mode, oct(st.st_mode)
    assert (st.st_uid, st.st_gid) == (user.pw_uid, user.pw_gid)


@pytest.mark.root
def test_lookup_user_accepts_the_throwaway_account(account):
    assert sshkeys.lookup_user(account.pw_name) == account


@pytest.mark.root
def test_write_creates_dirs_0700_and_a_0600_fragment_owned_by_the_user(user, events):
    written = keys("ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp384")
    assert sshkeys.write_fragment(user, written) == "written"
    path = fragment_path(user)
    with open(path) as f:
        assert f.read() == "".join(k.line() + "\n" for k in written)
    assert_owned(path, user, 0o600)
    assert_owned(os.path.join(user.pw_dir, ".ssh"), user, 0o700)
    assert_owned(os.path.join(user.pw_dir, ".ssh", "authorized_keys.d"), user, 0o700)
    assert os.listdir(os.path.dirname(path)) == [FRAGMENT]
    assert os.listdir(os.path.join(user.pw_dir, ".ssh")) == ["authorized_keys.d"]
    assert events == [("ssh-keys-written", {"user": user.pw_name, "path": path})]


@pytest.mark.root
def test_rewrite_replaces_and_leaves_authorized_keys_and_modes_alone(user):
    ssh = os.path.join(user.pw_dir, ".ssh")
    os.mkdir(ssh, 0o755)
    os.chown(ssh, user.pw_uid, user.pw_gid)
    own = os.path.join(ssh, "authorized_keys")
    with open(own, "w") as f:
        f.write("user's own key\n")
    os.chown(own, user.pw_uid, user.pw_gid)
    sshkeys.write_fragment(user, keys("ssh-ed25519", "ssh-rsa"))
    latest = keys("sk-ssh-ed25519@openssh.com")
    sshkeys.write_fragment(user, latest)
    with open(fragment_path(user)) as f:
        assert f.read() == latest[0].line() + "\n"
    assert stat.S_IMODE(os.stat(ssh).st_mode) == 0o755  # never chmod-ed
    with open(own) as f:
        assert f.read() == "user's own key\n"


@pytest.mark.root
def test_zero_keys_remove_the_fragment(user, events):
    sshkeys.write_fragment(user, keys("ssh-ed25519"))
    events.clear()
    assert sshkeys.write_fragment(user, []) == "removed"
    assert not os.path.lexists(fragment_path(user))
    assert events == [("ssh-keys-removed", {"user": user.pw_name, "path": fragment_path(user)})]
    events.clear()
    assert sshkeys.write_fragment(user, []) == "absent"
    assert events == []


@pytest.mark.root
def test_zero_keys_without_ssh_dir_create_nothing(user):
    assert sshkeys.write_fragment(user, []) == "absent"
    assert os.listdir(user.pw_dir) == []


@pytest.mark.root
@pytest.mark.parametrize("zero_keys", [False, True])
def test_symlinked_ssh_dir_to_root_is_refused_and_untouched(user, root_dir, zero_keys):
    os.makedirs(os.path.join(root_dir, "authorized_keys.d"))
    with open(os.path.join(root_dir, "authorized_keys.d", FRAGMENT), "w") as f:
        f.write("root-owned fragment\n")
    os.symlink(root_dir, os.path.join(user.pw_dir, ".ssh"))
    before = snapshot(root_dir)
    with pytest.raises(OutputError) as caught:
        sshkeys.write_fragment(user, [] if zero_keys else keys("ssh-ed25519"))
    assert caught.value.target == f"ssh keys for {user.pw_name}"
    assert caught.value.cause == (f"{user.pw_dir}/.ssh is a symbolic link; "
                                  "refusing to follow it")
    assert snapshot(root_dir) == before


@pytest.mark.root
def test_symlinked_ssh_dir_is_refused_even_when_it_points_into_the_home(user):
    real = os.path.join(user.pw_dir, "elsewhere")
    os.mkdir(real, 0o700)
    os.chown(real, user.pw_uid, user.pw_gid)
    os.symlink("elsewhere", os.path.join(user.pw_dir, ".ssh"))
    with pytest.raises(OutputError) as caught:
        sshkeys.write_fragment(user, keys("ssh-ed25519"))
    assert "is a symbolic link" in caught.value.cause
    assert os.listdir(real) == []


@pytest.mark.root
def test_symlinked_authorized_keys_d_to_root_is_refused_and_untouched(user, root_dir):
    ssh = os.path.join(user.pw_dir, ".ssh")
    os.mkdir(ssh, 0o700)
    os.chown(ssh, user.pw_uid, user.pw_gid)
    os.symlink(root_dir, os.path.join(ssh, "authorized_keys.d"))
    before = snapshot(root_dir)
    with pytest.raises(OutputError) as caught:
        sshkeys.write_fragment(user, keys("ssh-ed25519"))
    assert caught.value.cause == (f"{user.pw_dir}/.ssh/authorized_keys.d is a symbolic link; "
                                  "refusing to follow it")
    assert snapshot(root_dir) == before


@pytest.mark.root
@pytest.mark.parametrize("zero_keys", [False, True])
def test_a_fragment_symlinked_to_a_root_file_is_replaced_not_followed(user, root_dir, zero_keys):
    sshkeys.write_fragment(user, keys("ssh-ed25519"))
    path = fragment_path(user)
    os.unlink(path)
    victim = os.path.join(root_dir, "authorized_keys")
    os.symlink(victim, path)
    before = snapshot(root_dir)
    written = [] if zero_keys else keys("ssh-rsa")
    assert sshkeys.write_fragment(user, written) == ("removed" if zero_keys else "written")
    assert snapshot(root_dir) == before
    if zero_keys:
        assert not os.path.lexists(path)
    else:
        assert not os.path.islink(path)
        assert_owned(path, user, 0o600)
        with open(path) as f:
            assert f.read() == written[0].line() + "\n"


@pytest.mark.root
def test_the_kernel_refuses_too_when_the_symlink_check_is_bypassed(user, root_dir, monkeypatch):
    """Defence in depth: follow symlinks anyway; the dropped uid still cannot write root's dir."""
    def follow(name, dir_fd, *, create_mode=None):
        return os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=dir_fd)

    monkeypatch.setattr(sshkeys.fsutil, "open_dir_nofollow", follow)
    monkeypatch.setattr(sshkeys, "_open_owned_dir",
                        lambda name, parent, uid, shown, create: follow(name, parent))
    os.makedirs(os.path.join(root_dir, "authorized_keys.d"))
    os.symlink(root_dir, os.path.join(user.pw_dir, ".ssh"))
    before = snapshot(root_dir)
    with pytest.raises(OutputError) as caught:
        sshkeys.write_fragment(user, keys("ssh-ed25519"))
    assert caught.value.cause == "creating a temporary file: Permission denied"
    assert snapshot(root_dir) == before


@pytest.mark.root
def test_authorized_keys_d_that_is_a_file_is_refused(user):
    ssh = os.path.join(user.pw_dir, ".ssh")
    os.mkdir(ssh, 0o700)
    os.chown(ssh, user.pw_uid, user.pw_gid)
    with open(os.path.join(ssh, "authorized_keys.d"), "w") as f:
        f.write("not a directory\n")
    with pytest.raises(OutputError) as caught:
        sshkeys.write_fragment(user, keys("ssh-ed25519"))
    assert caught.value.cause == f"{ssh}/authorized_keys.d is not a directory"
    with open(os.path.join(ssh, "authorized_keys.d")) as f:
        assert f.read() == "not a directory\n"


@pytest.mark.root
def test_ssh_dir_owned_by_another_user_is_refused(user):
    ssh = os.path.join(user.pw_dir, ".ssh")
    os.mkdir(ssh, 0o777)
    os.chmod(ssh, 0o777)  # even writable for the user: ownership is what counts
    with pytest.raises(OutputError) as caught:
        sshkeys.write_fragment(user, keys("ssh-ed25519"))
    assert caught.value.cause == (f"{user.pw_dir}/.ssh is owned by uid 0, not by the user "
                                  f"(uid {user.pw_uid})")
    assert os.listdir(ssh) == []


def _root_ssh_dir(user):
    os.mkdir(os.path.join(user.pw_dir, ".ssh"), 0o700)  # root's, closed to the user


def _root_keys_dir(user):
    ssh = os.path.join(user.pw_dir, ".ssh")
    os.mkdir(ssh, 0o700)
    os.chown(ssh, user.pw_uid, user.pw_gid)
    os.mkdir(os.path.join(ssh, "authorized_keys.d"), 0o700)


def _closed_ssh_dir(user):
    ssh = os.path.join(user.pw_dir, ".ssh")
    os.mkdir(ssh)
    os.chown(ssh, user.pw_uid, user.pw_gid)
    os.chmod(ssh, 0)  # the user's own, but closed: only the user may reopen it


def _read_only_home(user):
    os.chmod(user.pw_dir, 0o555)


@pytest.mark.root
@pytest.mark.parametrize("prepare, cause", [
    (_root_ssh_dir, "{home}/.ssh is owned by uid 0, not by the user (uid {uid})"),
    (_root_keys_dir,
     "{home}/.ssh/authorized_keys.d is owned by uid 0, not by the user (uid {uid})"),
    (_closed_ssh_dir, "{home}/.ssh: permission denied (mode 0000)"),
    (_read_only_home, "cannot create {home}/.ssh: permission denied"),
])
def test_permission_denied_names_the_directory_and_why(user, prepare, cause):
    # The kernel says only "Permission denied" (EACCES) to the dropped writer; the error must
    # say which directory, and that it belongs to someone else when it does.
    prepare(user)
    before = snapshot(user.pw_dir)
    for new_keys in (keys("ssh-ed25519"), []):  # writing and removing alike
        if prepare is _read_only_home and not new_keys:
            continue  # removing with no ~/.ssh is "absent", not an error
        with pytest.raises(OutputError) as caught:
            sshkeys.write_fragment(user, new_keys)
        assert caught.value.cause == cause.format(home=user.pw_dir, uid=user.pw_uid)
        assert caught.value.target == f"ssh keys for {user.pw_name}"
    assert snapshot(user.pw_dir) == before


@pytest.mark.root
def test_home_not_owned_by_the_user_is_refused_and_nothing_is_created(user, account):
    os.chown(user.pw_dir, 0, 0)
    with pytest.raises(OutputError) as caught:
        sshkeys.write_fragment(user, keys("ssh-ed25519"))
    assert caught.value.cause == f"home directory {user.pw_dir} is not owned by the user"
    assert os.listdir(user.pw_dir) == []
    os.chown(account.pw_dir, 0, 0)
    try:
        with pytest.raises(OutputError) as caught:
            sshkeys.lookup_user(account.pw_name)
        assert caught.value.cause == f"home directory {account.pw_dir} is not owned by " \
                                     f"{account.pw_name}"
    finally:
        os.chown(account.pw_dir, account.pw_uid, account.pw_gid)


@pytest.mark.root
def test_disk_full_keeps_the_old_fragment(account, base):
    home = tempfile.mkdtemp(prefix="tiny-", dir=base)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,mode=0755", "tmpfs", home],
                             capture_output=True)
    if mounted.returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        os.chown(home, account.pw_uid, account.pw_gid)
        user = pwd.struct_passwd((account.pw_name, "x", account.pw_uid, account.pw_gid, "",
                                  home, "/usr/sbin/nologin"))
        old = keys("ssh-ed25519")
        sshkeys.write_fragment(user, old)
        fd = os.open(os.path.join(home, "filler"), os.O_CREAT | os.O_WRONLY, 0o600)
        with pytest.raises(OSError) as full:
            while True:
                os.write(fd, b"\0" * 4096)
        os.close(fd)
        assert full.value.errno == errno.ENOSPC
        with pytest.raises(OutputError) as caught:
            sshkeys.write_fragment(user, keys(*["ssh-rsa"] * 20))
        assert caught.value.cause == "writing: No space left on device"
        with open(fragment_path(user)) as f:
            assert f.read() == old[0].line() + "\n"
        assert os.listdir(os.path.dirname(fragment_path(user))) == [FRAGMENT]
    finally:
        subprocess.run(["umount", home], check=True)


def _in_child_as(uid, gid, fn, groups=()) -> str:
    """Run fn() in a forked child with uid/gid/groups; return what it returned as a string."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read_fd)
            os.setgroups(list(groups))
            os.setresgid(gid, gid, gid)
            os.setresuid(uid, uid, uid)
            try:
                result = fn()
            except BaseException as err:
                result = f"raised {type(err).__name__}: {err}"
            os.write(write_fd, str(result).encode())
        finally:
            os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as f:
        output = f.read().decode()
    os.waitpid(pid, 0)
    return output


@pytest.mark.root
def test_a_non_root_caller_cannot_write_for_another_user(user):
    outcome = _in_child_as(65534, 65534,
                           lambda: sshkeys.write_fragment(user, keys("ssh-ed25519")))
    assert outcome == (f"raised OutputError: ssh keys for {user.pw_name}: "
                       "must run as root to write keys for another user")
    assert os.listdir(user.pw_dir) == []


@pytest.mark.root
def test_lookup_refuses_another_user_unless_root_and_accepts_oneself(account):
    # refused at lookup, so the run fails before the platform is asked
    outcome = _in_child_as(65534, 65534, lambda: sshkeys.lookup_user(account.pw_name))
    assert outcome == (f"raised OutputError: ssh keys for {account.pw_name}: must run as root to "
                       "write keys for another user (running as uid 65534)")
    assert _in_child_as(account.pw_uid, account.pw_gid,
                        lambda: sshkeys.lookup_user(account.pw_name).pw_name) == account.pw_name


@pytest.mark.root
def test_the_user_itself_writes_in_process(user):
    def without_fork():
        def no_fork():
            raise AssertionError("must not fork")
        os.fork = no_fork  # only in this child process
        return sshkeys.write_fragment(user, keys("ssh-ed25519"))

    assert _in_child_as(user.pw_uid, user.pw_gid, without_fork) == "written"
    assert_owned(fragment_path(user), user, 0o600)
    assert_owned(os.path.join(user.pw_dir, ".ssh"), user, 0o700)


@pytest.mark.root
def test_a_killed_writer_is_reported_and_the_old_fragment_stays(user, monkeypatch):
    old = keys("ssh-ed25519")
    sshkeys.write_fragment(user, old)

    def die(*args):
        os.kill(os.getpid(), signal.SIGKILL)

    monkeypatch.setattr(sshkeys, "_update_fragment", die)
    with pytest.raises(OutputError) as caught:
        sshkeys.write_fragment(user, keys("ssh-rsa"))
    assert caught.value.cause == f"the key writer was killed by signal {int(signal.SIGKILL)}"
    with open(fragment_path(user)) as f:
        assert f.read() == old[0].line() + "\n"


@pytest.mark.root
def test_the_child_has_dropped_every_privilege(user):
    def report():
        return repr((os.getresuid(), os.getresgid(), os.getgroups(), oct(os.umask(0o077))))

    # the caller is root with supplementary groups (disk, adm): none may survive the drop
    outcome = _in_child_as(0, 0, lambda: sshkeys._run_as_user(user, report, "t"), groups=(4, 6))
    uid, gid = user.pw_uid, user.pw_gid
    assert outcome == repr(((uid, uid, uid), (gid, gid, gid), [], "0o77"))
