"""pytest plumbing for the QEMU end-to-end tests: the ``qemu`` marker and a closing table of
every boot's timings (cl-metadata.service's own activation time included)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # e2e_* modules, however pytest imports

from e2e_runner import SUMMARY_KEY  # noqa: E402


def pytest_configure(config):
    config.addinivalue_line("markers", "qemu: boots QEMU guests (tests/e2e; root, unshare, qemu)")


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    lines = getattr(config, SUMMARY_KEY, None)
    if lines:
        terminalreporter.section("cl-metadata end-to-end boots (QEMU)")
        for line in lines:
            terminalreporter.write_line(line)
