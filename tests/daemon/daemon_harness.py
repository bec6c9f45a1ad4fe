"""Run `smallbms run` as a real process, with a temporary state directory and a fake systemd.

Imported by name (``from daemon_harness import ...``) from the tests and the conftest.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

START_TIMEOUT_S = 30.0
# `smallbms run`, without going through the whole dispatcher (which imports every subcommand)
RUN = (
    "import argparse, sys\n"
    "from bms_daemon import daemon\n"
    "parser = argparse.ArgumentParser()\n"
    "daemon.configure(parser)\n"
    "sys.exit(daemon.main(parser.parse_args(sys.argv[1:])))\n"
)


class DaemonProcess:
    """A daemon subprocess; its JSON log lines and sd_notify messages arrive on queues."""

    def __init__(
        self, state: Path, config: Path, notify_path: Path, env: dict[str, str] | None = None
    ) -> None:
        self.state = state
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(str(notify_path))
        self.notify.settimeout(START_TIMEOUT_S)
        environ = dict(os.environ)
        environ.pop("STATE_DIRECTORY", None)
        environ.pop("WATCHDOG_USEC", None)
        environ.update(env or {})
        environ["NOTIFY_SOCKET"] = str(notify_path)
        self.proc = subprocess.Popen(
            [sys.executable, "-c", RUN, "--config", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=environ,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.log: list[dict[str, Any]] = []
        self.raw: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.put(line)
        self.lines.put(None)

    def _record(self, line: str) -> dict[str, Any] | None:
        self.raw.append(line)
        text = line.strip()
        if text.startswith("<") and ">" in text[:4]:
            text = text[text.index(">") + 1:]
        try:
            entry = json.loads(text)
        except json.JSONDecodeError:
            return None
        self.log.append(entry)
        return entry  # type: ignore[no-any-return]

    def wait_log(
        self, event: str, timeout: float = START_TIMEOUT_S, **fields: Any
    ) -> dict[str, Any]:
        """Block until a log entry with this event (and fields) arrives."""
        for entry in self.log:
            if entry.get("event") == event and all(entry.get(k) == v for k, v in fields.items()):
                return entry
        while True:
            line = self.lines.get(timeout=timeout)
            if line is None:
                raise AssertionError(f"daemon exited before {event!r}:\n{''.join(self.raw)}")
            found = self._record(line)
            if found and found.get("event") == event and all(
                found.get(k) == v for k, v in fields.items()
            ):
                return found

    def wait_notify(self, prefix: str) -> str:
        """Block until an sd_notify datagram containing a line starting with ``prefix``."""
        while True:
            message = self.notify.recv(4096).decode()
            if any(line.startswith(prefix) for line in message.splitlines()):
                return message

    def terminate(
        self, timeout: float = START_TIMEOUT_S, signum: int = signal.SIGTERM
    ) -> int:
        self.proc.send_signal(signum)
        code = self.proc.wait(timeout=timeout)
        while True:
            line = self.lines.get(timeout=timeout)
            if line is None:
                break
            self._record(line)
        return code

    def outputs(self) -> dict[str, bool]:
        return json.loads((self.state / "gpio-memory.json").read_text())  # type: ignore[no-any-return]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=START_TIMEOUT_S)
        self.notify.close()


def write_config(path: Path, state: Path, extra: str = "") -> Path:
    """A test config (like the daemon_config fixture) with extra TOML appended per table."""
    path.write_text(
        f'[bms]\nstate_directory = "{state}"\nrate_hz = 10.0\n'
        '[logging]\nformat = "json"\nlevel = "info"\n' + extra
    )
    return path
