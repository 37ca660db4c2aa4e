"""Failures the agent reports as one line and an exit status.

Every message names what failed (provider, source) and why, never a metadata value: bodies,
keys, tokens and user-data stay out of errors and logs.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILURE = 1  # the platform could not be read, or an output could not be written
EXIT_USAGE = 2  # bad flags, unknown provider, no platform on the kernel command line


class CLMetadataError(Exception):
    """Base class: ``str(err)`` is the one-line message, ``exit_code`` the process status."""

    exit_code = EXIT_FAILURE


class UsageError(CLMetadataError):
    """The command line, the kernel command line or the environment asks for something invalid."""

    exit_code = EXIT_USAGE


class NoMetadataHere(CLMetadataError):
    """The platform is named, but gives this machine nothing to read (no drive, no firmware
    config entry): a success that fetches, writes and removes nothing, said in one notice.

    Raised by a provider's constructor, or by the context when ``--local-only`` keeps a
    provider off the network; ``str(err)`` is the notice.
    """

    exit_code = EXIT_OK

    def __init__(self, cause: str, *, provider: str | None = None):
        super().__init__(cause)
        self.cause = cause
        self.provider = provider

    def __str__(self) -> str:
        return f"{self.provider}: {self.cause}" if self.provider else self.cause


class MetadataError(CLMetadataError):
    """The platform's metadata could not be read or is not acceptable.

    ``source`` names where (``GET /latest/meta-data/hostname``, ``openstack/latest/meta_data.json``,
    a JSON path); ``cause`` says why. ``provider`` is filled in by the pipeline when the raising
    code does not know it.
    """

    def __init__(self, cause: str, *, source: str | None = None, provider: str | None = None):
        super().__init__(cause)
        self.cause = cause
        self.source = source
        self.provider = provider

    def __str__(self) -> str:
        parts = [p for p in (self.provider, self.source, self.cause) if p]
        return ": ".join(parts)


class FetchError(MetadataError):
    """An HTTP request failed for good (status, transport error, deadline, size cap)."""

    def __init__(self, cause: str, *, source: str | None = None, provider: str | None = None,
                 status: int | None = None):
        super().__init__(cause, source=source, provider=provider)
        self.status = status


class ConfigDriveError(MetadataError):
    """A config drive was missing, could not be mounted, or holds an unacceptable file."""


class ConfigDriveNotFound(ConfigDriveError):
    """No drive carries any of the expected labels (a provider may fall back or no-op)."""


class InvalidMetadata(MetadataError):
    """A document was read but its content is malformed or of the wrong shape."""


class OutputError(CLMetadataError):
    """An output (attributes, SSH keys, hostname, network units) could not be written.

    ``target`` names the output path or user; the previous file is left as it was.
    """

    def __init__(self, cause: str, *, target: str | None = None):
        super().__init__(cause)
        self.cause = cause
        self.target = target

    def __str__(self) -> str:
        return f"{self.target}: {self.cause}" if self.target else self.cause
