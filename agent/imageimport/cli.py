"""``cl-metadata-import-image``: import a release image from its channel, verified and labelled.

    cl-metadata-import-image CHANNEL_URL IMAGE --keyring FILE [--fingerprint FPR] [-o DIR]

Steps, each of which stops the import with one line on stderr and exit status 1:

1. ``version.txt`` of the channel directory (``…/amd64-usr/current/``) names the release;
   the image, its detached ``.sig`` and the release's own ``version.txt`` (which must name the
   same version) come from the release's directory (``…/amd64-usr/<version>/``);
2. the image is downloaded into a hidden partial file in the output directory (a dropped
   connection keeps it, and the next run resumes it with a ``Range`` request);
3. ``gpgv`` checks the signature against ``--keyring`` only, and the signing key against
   ``--fingerprint`` when given;
4. the verified file is decompressed, streaming and size-capped, into a temp file in the
   output directory, which is renamed over ``DIR/<image without .bz2>``; then
   ``DIR/<image>.labels.json`` is written atomically, and the suggested
   ``openstack image create`` command is printed on stdout.

Any refusal after the download (a bad signature, a wrong key, an oversized image) removes the
partial file too: nothing but the error is left. Temp files (the signature, gpgv's empty home,
a de-armored keyring) live in a private directory that is removed on every exit path.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import shlex
import signal
import stat
import sys
import tempfile
from typing import List, Optional

from cl_metadata import __version__
from cl_metadata.cli import Parser  # one-line usage errors, as every cl-metadata command
from cl_metadata.outputs import fsutil
from cl_metadata.sources.deadline import Deadline
from cl_metadata.errors import EXIT_FAILURE, EXIT_OK, CLMetadataError, UsageError
from cl_metadata.imageimport.channel import (VERSION_FILE, channel_directory, distro,
                                             is_file_name, is_version, parse_version_file,
                                             release_directory, release_version)
from cl_metadata.imageimport.download import Downloader
from cl_metadata.imageimport.errors import ImageImportError
from cl_metadata.imageimport.signature import binary_keyring, normalize_fingerprint, verify
from cl_metadata.imageimport.unpack import compression, unpack, unpacked_name

PROG = "cl-metadata-import-image"
SMALL_FILE_LIMIT = 64 * 1024  # version.txt and the .sig
DEFAULT_MAX_DOWNLOAD = 8 << 30
DEFAULT_MAX_IMAGE = 64 << 30
DEFAULT_TIMEOUT = 3600.0
OUTPUT_MODE = 0o644
PARTIAL_MODE = 0o600


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) <= 0:
        raise argparse.ArgumentTypeError(f"not a positive number of bytes: {text!r}")
    return int(text)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value < 1e7:
        raise argparse.ArgumentTypeError(f"not a positive number of seconds: {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog=PROG,
        description="Download a release image from its channel, verify its signature with "
                    "gpgv, decompress it and write it with a JSON file of labels.",
        epilog="Exit status: 0 imported, 1 refused or failed (nothing written), 2 usage error.")
    parser.add_argument("channel", metavar="CHANNEL_URL",
                        help="the channel directory, e.g. "
                             "https://stable.release.example/amd64-usr/current/")
    parser.add_argument("image", metavar="IMAGE",
                        help="the image's file name there, e.g. "
                             "flatcar_production_openstack_image.img.bz2")
    parser.add_argument("--keyring", metavar="FILE", required=True,
                        help="the image signing key(s), binary or ASCII-armored")
    parser.add_argument("--fingerprint", metavar="FPR",
                        help="require the signature to be made by this key (or its subkey)")
    parser.add_argument("-o", "--output-dir", metavar="DIR", default=".",
                        help="where the image and its labels are written (default: .)")
    parser.add_argument("--release", metavar="VERSION",
                        help="import this release instead of the one version.txt names")
    parser.add_argument("--allow-http", action="store_true",
                        help="allow plain http URLs (only for a mirror you trust the path to)")
    parser.add_argument("--ca-bundle", metavar="FILE", help="CA certificates for HTTPS")
    parser.add_argument("--env-proxy", action="store_true",
                        help="use the proxy environment variables (https_proxy, no_proxy …)")
    parser.add_argument("--max-download-size", metavar="BYTES", type=_positive_int,
                        default=DEFAULT_MAX_DOWNLOAD, help="cap on the downloaded image")
    parser.add_argument("--max-image-size", metavar="BYTES", type=_positive_int,
                        default=DEFAULT_MAX_IMAGE, help="cap on the decompressed image")
    parser.add_argument("--timeout", metavar="SECONDS", type=_positive_float,
                        default=DEFAULT_TIMEOUT, help="deadline for the whole import")
    parser.add_argument("--version", action="version",
                        version=f"{PROG} {__version__}")
    return parser


def _check_args(args: argparse.Namespace) -> Optional[str]:
    """The normalized --fingerprint; raises UsageError on any unusable argument."""
    if not is_file_name(args.image):
        raise UsageError(f"IMAGE must be a plain file name: {args.image!r}")
    if args.release is not None and not is_version(args.release):
        raise UsageError(f"--release must look like 1234.5.6: {args.release!r}")
    if not os.path.isfile(args.keyring):
        raise UsageError(f"--keyring {args.keyring}: not a readable file")
    if not os.path.isdir(args.output_dir) or os.path.islink(args.output_dir):
        raise UsageError(f"--output-dir {args.output_dir}: not a directory")
    if args.fingerprint is None:
        return None
    fingerprint = normalize_fingerprint(args.fingerprint)
    if fingerprint is None:
        raise UsageError("--fingerprint must be 40 (or 64) hex digits")
    return fingerprint


def main(argv: Optional[List[str]] = None) -> int:
    # SIGTERM unwinds like an error: the private directory and temp files are removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    try:
        args = build_parser().parse_args(argv)
        fingerprint = _check_args(args)
        command = run_import(args, fingerprint)
    except CLMetadataError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print(f"{PROG}: error: interrupted", file=sys.stderr)
        return EXIT_FAILURE
    print(command)
    return EXIT_OK


def run_import(args: argparse.Namespace, fingerprint: Optional[str]) -> str:
    """Imports the image; the suggested ``openstack image create`` command."""
    deadline = Deadline(args.timeout)
    channel = channel_directory(args.channel)
    out_dir = os.path.abspath(args.output_dir)
    name = unpacked_name(args.image)
    target = os.path.join(out_dir, name)
    labels_path = target + ".labels.json"
    for path in (target, labels_path):  # refused before anything is downloaded
        fsutil.check_output_file(path)
    with Downloader(deadline=deadline, allow_http=args.allow_http, ca_bundle=args.ca_bundle,
                    env_proxy=args.env_proxy) as downloader, \
            tempfile.TemporaryDirectory(prefix="cl-metadata-import-") as private:
        downloader.check_url(channel)
        version, pairs = _release(downloader, channel, args.release)
        release = release_directory(channel, version)
        image_url = release + args.image
        signature = os.path.join(private, "image.sig")
        with open(signature, "wb") as f:
            f.write(downloader.fetch(image_url + ".sig", limit=SMALL_FILE_LIMIT))
        keyring = binary_keyring(args.keyring, private)
        gpg_home = os.path.join(private, "gnupg")
        os.mkdir(gpg_home, 0o700)

        partial = os.path.join(out_dir, f".{args.image}.{version}.partial")
        fd = _open_partial(partial)
        keep_partial = False
        try:
            try:
                downloader.fetch_resumable(image_url, fd, limit=args.max_download_size)
            except ImageImportError as err:
                keep_partial = err.resumable
                raise
            except (KeyboardInterrupt, SystemExit):  # Ctrl-C or SIGTERM: resumable too
                keep_partial = True
                raise
            os.fsync(fd)
            verdict = verify(partial, signature, keyring, homedir=gpg_home,
                             expected=fingerprint, timeout=deadline.remaining())
            unpacked = _write_image(partial, target, kind=compression(args.image),
                                    limit=args.max_image_size, deadline=deadline)
        finally:
            os.close(fd)
            if not keep_partial:
                _unlink(partial)
    labels = {"channel": channel, "disk_format": unpacked.disk_format, "image": name,
              "sha256": unpacked.sha256, "signer_fingerprint": verdict.primary_key,
              "size": unpacked.size, "source": image_url, "version": version}
    fsutil.atomic_write(labels_path, (json.dumps(labels, indent=2, sort_keys=True) + "\n")
                        .encode(), mode=OUTPUT_MODE, make_parents=False)
    return openstack_command(target, labels, distro(pairs))


def _release(downloader: Downloader, channel: str, wanted: Optional[str]):
    """(version, the release's version.txt pairs), the two version files agreeing."""
    asked = wanted is not None
    if not asked:
        url = channel + VERSION_FILE
        source = f"GET {url}"
        wanted = release_version(parse_version_file(
            downloader.fetch(url, limit=SMALL_FILE_LIMIT), source), source)
    url = release_directory(channel, wanted) + VERSION_FILE
    source = f"GET {url}"
    pairs = parse_version_file(downloader.fetch(url, limit=SMALL_FILE_LIMIT), source)
    if release_version(pairs, source) != wanted:
        raise ImageImportError("names another release than --release" if asked else
                               f"names another release than {channel}{VERSION_FILE}",
                               source=source)
    return wanted, pairs


def _open_partial(path: str) -> int:
    """The partial download's fd (created 0600; never through a symlink)."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, PARTIAL_MODE)
    except OSError as err:
        raise ImageImportError(fsutil.describe(err), source=path) from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise ImageImportError("not a regular file", source=path)
    return fd


def _write_image(src: str, target: str, *, kind, limit: int, deadline: Deadline):
    """Decompresses ``src`` into a temp file beside ``target``, then renames it over it."""
    directory, name = os.path.split(target)
    tmp = os.path.join(directory, fsutil.temp_name(name))
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     OUTPUT_MODE)
        try:
            os.fchmod(fd, OUTPUT_MODE)  # whatever the umask
            with os.fdopen(fd, "wb", closefd=False) as out:
                unpacked = unpack(src, out, kind=kind, limit=limit, expired=deadline.expired)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, target)
    except OSError as err:
        _unlink(tmp)
        raise ImageImportError(fsutil.describe(err), source=target) from None
    except BaseException:
        _unlink(tmp)
        raise
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return unpacked


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError as err:
        if err.errno != errno.ENOENT:
            raise


def openstack_command(image_path: str, labels: dict, os_distro: Optional[str]) -> str:
    """The ``openstack image create`` line that uploads the image with its labels."""
    properties = {"os_version": labels["version"], "cl_channel": labels["channel"],
                  "cl_sha256": labels["sha256"],
                  "cl_signer_fingerprint": labels["signer_fingerprint"]}
    if os_distro:
        properties = {"os_distro": os_distro, **properties}
    words = ["openstack", "image", "create", "--disk-format", labels["disk_format"],
             "--container-format", "bare", "--file", image_path]
    for key, value in properties.items():
        words += ["--property", f"{key}={value}"]
    words.append(f"{os_distro or labels['image'].split('.')[0]}-{labels['version']}")
    return " ".join(shlex.quote(w) for w in words)


if __name__ == "__main__":
    sys.exit(main())
