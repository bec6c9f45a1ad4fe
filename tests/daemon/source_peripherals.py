"""Test peripherals for the real sources: serial ports made of pseudo-terminals.

``PtyLink`` joins two pseudo-terminals back to back (what ``socat pty pty`` does), so two
programs that each open a serial device talk to each other: the daemon opens one end with
python-can's ``slcan`` interface like a USB serial CAN adapter, the test BMS opens the other end
with python-can too.  ``Port`` is one pseudo-terminal whose far end the test writes directly
(a VE.Direct shunt).  Both are reached through a symlink, like ``/dev/serial/by-id/...``, so a
test can unplug the adapter (close it: the daemon's reads fail, the path disappears) and plug it
back in (a new pseudo-terminal behind the same path).
"""

from __future__ import annotations

import contextlib
import os
import select
import threading
import tty
from pathlib import Path

import can

from bms_daemon.sources.can import frames_for


def _pty() -> tuple[int, int]:
    master, slave = os.openpty()
    tty.setraw(slave)
    return master, slave


class Port:
    """One pseudo-terminal behind ``path``; ``write`` sends bytes to whoever opened it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.master, self.slave = _pty()
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        path.symlink_to(os.ttyname(self.slave))

    def write(self, data: bytes) -> None:
        os.write(self.master, data)

    def unplug(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        for fd in (self.master, self.slave):
            with contextlib.suppress(OSError):
                os.close(fd)


class PtyLink:
    """Two pseudo-terminals joined back to back, reached as ``a`` and ``b``."""

    def __init__(self, a: Path, b: Path) -> None:
        self.a, self.b = Port(a), Port(b)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        peer = {self.a.master: self.b.master, self.b.master: self.a.master}
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select(list(peer), [], [], 0.05)
                for fd in ready:
                    data = os.read(fd, 4096)
                    if data:
                        os.write(peer[fd], data)
            except OSError:
                return

    def unplug(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.a.unplug()
        self.b.unplug()


class SlcanBms:
    """A CAN-bus BMS behind a serial CAN adapter: python-can's slcan on ``path``."""

    def __init__(self, path: Path) -> None:
        self.bus = can.Bus(interface="slcan", channel=str(path), sleep_after_open=0)

    def send(self, values: dict[str, float]) -> None:
        """One burst of every numeric frame (a BMS sends this once a second)."""
        for frame, data in frames_for(values):
            self.bus.send(can.Message(arbitration_id=frame, data=data, is_extended_id=False))

    def send_raw(self, frame: int, data: bytes) -> None:
        self.bus.send(can.Message(arbitration_id=frame, data=data, is_extended_id=False))

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.bus.shutdown()


def vedirect_block(fields: list[tuple[str, str]]) -> bytes:
    """A VE.Direct text block with its checksum."""
    body = b"".join(b"\r\n" + k.encode() + b"\t" + v.encode() for k, v in fields)
    body += b"\r\nChecksum\t"
    return body + bytes([(-sum(body)) % 256])


class Sender:
    """Calls ``send()`` every ``period`` seconds in a thread until stopped (a device's rhythm).

    The rhythm only keeps data fresh; no test asserts anything about time.
    """

    def __init__(self, send: object, period: float = 0.2) -> None:
        self.send = send
        self.period = period
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            with contextlib.suppress(Exception):  # an unplugged port: the test says when
                self.send()  # type: ignore[operator]

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
