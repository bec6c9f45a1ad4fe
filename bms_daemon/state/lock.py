"""One writer per state directory: an exclusive lock held for the writer's whole life.

Two daemons on one state directory would both save ``bms.json`` (each overwriting the other's
SOC and history) and both drive the in-memory GPIO file, so every command that writes the state
(``smallbms run``, ``smallbms float-outputs``) takes this lock first and refuses, with a message
naming the holder, when another process has it.  Commands that only read (``smallbms key``)
do not take it.

Why ``fcntl.flock`` on a lock file kept open: the kernel releases the lock when the process
dies, however it dies (crash, SIGKILL from the watchdog, power cut), so a stale lock can never
keep the BMS from starting again; nothing is deleted on exit (deleting a lock file races with
the next taker).  The file holds the holder's pid and command, for the message only.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
from pathlib import Path
from types import TracebackType

LOCK_NAME = ".lock"  # hidden, next to bms.json; never removed
LOCK_MODE = 0o600


class StateDirectoryBusyError(RuntimeError):
    """Another process holds the state directory; the message says which and what to do."""


class StateLock:
    """The exclusive lock of one state directory (a context manager; ``release`` to let go).

    ``acquire`` raises ``StateDirectoryBusyError`` when another process holds it and ``OSError``
    when the lock file cannot be opened at all (a missing or read-only directory).
    """

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.path = self.directory / LOCK_NAME
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        """This object holds the lock."""
        return self._fd is not None

    def acquire(self, command: str = "") -> None:
        """Take the lock without waiting; record our pid and ``command`` in the file."""
        if self._fd is not None:
            return
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, LOCK_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise StateDirectoryBusyError(
                f"state directory {self.directory} is in use by another smallbms{holder}; "
                "two processes writing one state directory would overwrite each other's SOC, "
                "history and outputs. Stop the other one first (e.g. `systemctl stop "
                "smallbms`), or give this one its own --state-directory."
            ) from None
        except BaseException:
            os.close(fd)
            raise
        text = f"{os.getpid()} {command or ' '.join(sys.argv)}\n".encode()
        with contextlib.suppress(OSError):  # the text is informative only
            os.ftruncate(fd, 0)
            os.pwrite(fd, text, 0)
        self._fd = fd

    def release(self) -> None:
        """Let go (closing the file releases the lock); the file stays."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def __enter__(self) -> StateLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def _read_holder(fd: int) -> str:
    """" (pid N: command)" from the lock file, or "" when it says nothing usable."""
    try:
        text = os.pread(fd, 512, 0).decode("utf-8", "replace").strip()
    except OSError:
        return ""
    pid, _, command = text.partition(" ")
    if not pid.isdigit():
        return ""
    return f" (pid {pid}: {command})" if command else f" (pid {pid})"
