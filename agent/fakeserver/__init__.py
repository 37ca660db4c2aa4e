"""A fake metadata server for tests, demos and QEMU guests: one instance description, every
platform's wire format, loopback or stdin/stdout only."""
