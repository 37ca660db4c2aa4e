"""The fake metadata server as a separate process on 127.0.0.1, and its JSONL request log.

Started through ``serve.py`` (the installed server with TCP_NODELAY, see there), by the bench
venv's interpreter.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
from typing import List, Mapping, Optional

START_TIMEOUT = 30.0  # seconds for the server to print its URL (a 10 000-key instance loads slowly)
STOP_TIMEOUT = 5.0
SERVE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "serve.py")


class FakeServer:
    """``cl-metadata-fake-server --platform P --port 0 --latency L --log FILE`` on loopback."""

    def __init__(self, venv_bin: str, platform: str, latency: float, log_path: str,
                 env: Mapping[str, str], instance: Optional[str] = None):
        self.platform = platform
        self.latency = latency
        self.log_path = log_path
        argv = [os.path.join(venv_bin, "python"), "-E", "-s", SERVE, "--platform", platform,
                "--bind", "127.0.0.1", "--port", "0", "--latency", f"{latency:g}",
                "--log", log_path]
        if instance is not None:
            argv += ["--instance", instance]
        self._proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                      env=dict(env))
        self.url = self._read_url()
        self._offset = 0

    def _read_url(self) -> str:
        ready, _, _ = select.select([self._proc.stdout], [], [], START_TIMEOUT)
        line = self._proc.stdout.readline().decode("ascii", "replace").strip() if ready else ""
        if not line.startswith("http://127.0.0.1:"):
            self.stop()
            raise RuntimeError(f"fake server for {self.platform} did not start (got {line!r})")
        return line

    def new_requests(self) -> List[dict]:
        """Requests logged since the last call (each is logged before it is answered, so a
        client that has exited has all of its requests in the file)."""
        with open(self.log_path, "rb") as log:
            log.seek(self._offset)
            data = log.read()
        end = data.rfind(b"\n") + 1
        self._offset += end
        return [json.loads(line) for line in data[:end].splitlines() if line.strip()]

    def stop(self) -> None:
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if self._proc.stdout is not None:
            self._proc.stdout.close()

    def __enter__(self) -> "FakeServer":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def write_drive(venv_bin: str, platform: str, directory: str, env: Mapping[str, str],
                instance: Optional[str] = None) -> None:
    """The platform's config drive as a directory (``--write-drive DIR --drive-format dir``)."""
    argv = [os.path.join(venv_bin, "cl-metadata-fake-server"), "--platform", platform,
            "--write-drive", directory, "--drive-format", "dir"]
    if instance is not None:
        argv += ["--instance", instance]
    subprocess.run(argv, check=True, env=dict(env), stdin=subprocess.DEVNULL,
                   stdout=subprocess.DEVNULL, timeout=START_TIMEOUT)
