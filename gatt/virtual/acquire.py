"""The sockets behind AcquireWrite / AcquireNotify.

BlueZ hands the client one end of a ``SOCK_SEQPACKET`` pair: each packet the client writes is
one Write Command; each notification is one packet the client reads.  Closing its end releases
the acquisition.  bleak uses these for ``BleakClient._acquire_mtu()`` and for notifications with
``bluez={"use_start_notify": False}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable

log = logging.getLogger("smallbms.virtual")


class AcquiredSocket:
    """Our end of the pair; ``client_fd`` is handed over in the method reply."""

    def __init__(
        self, mtu: int, on_packet: Callable[[bytes], None], on_closed: Callable[[], None]
    ) -> None:
        self.mtu = mtu
        self._on_packet = on_packet
        self._on_closed = on_closed
        self._ours, self._theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._ours.setblocking(False)
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._ours.fileno(), self._readable)
        self.open = True

    @property
    def client_fd(self) -> int:
        return self._theirs.fileno()

    def handed_over(self) -> None:
        """After the reply carrying ``client_fd`` is written: drop our copy of the client's end,
        so that the client closing it is seen here as end-of-file."""
        self._theirs.close()

    def _readable(self) -> None:
        try:
            data = self._ours.recv(self.mtu)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.close()
            self._on_closed()
            return
        self._on_packet(data)

    def send(self, value: bytes) -> None:
        """One notification; dropped if the client does not read (as a full socket on BlueZ)."""
        if not self.open:
            return
        with contextlib.suppress(BlockingIOError, OSError):
            self._ours.send(value)

    def close(self) -> None:
        if self.open:
            self.open = False
            self._loop.remove_reader(self._ours.fileno())
            self._ours.close()
            with contextlib.suppress(OSError):
                self._theirs.close()
