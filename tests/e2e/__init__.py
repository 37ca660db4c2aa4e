"""QEMU end-to-end tests (issue 5); a package so that its conftest is e2e.conftest, not a
second top-level ``conftest`` module shadowing tests/conftest.py."""
