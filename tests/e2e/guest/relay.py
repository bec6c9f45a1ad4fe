"""Joins the peripheral guest's serial line to btvirt's H4 server socket.

The central guest's ``btattach`` speaks H4 over its serial port; qemu carries those bytes to
this guest's serial port through a host socket, and this relay hands them to btvirt.  A serial
line delivers packets in arbitrary fragments, and btvirt's H4 server parser
(emulator/server.c) misreads a packet split across reads ("Frame is too long", then an HCI
tx timeout: 1 run in 13 before this fix), so the serial-to-socket direction is re-framed and
only whole H4 packets are sent.  The other direction needs nothing: the kernel's hci_uart H4
parser copes with fragments.

Usage: relay.py TTY SOCKET READY_FLAG
"""

from __future__ import annotations

import os
import select
import socket
import sys
import termios
import tty
from collections.abc import Callable

# H4 packet type -> (header length after the type byte, payload length from that header)
_HEADERS: dict[int, tuple[int, Callable[[bytes], int]]] = {
    0x01: (3, lambda h: h[2]),                    # HCI command: opcode(2) len(1)
    0x02: (4, lambda h: h[2] | h[3] << 8),        # ACL data: handle(2) len(2)
    0x03: (3, lambda h: h[2]),                    # SCO data: handle(2) len(1)
    0x04: (2, lambda h: h[1]),                    # event: code(1) len(1)
    0x05: (4, lambda h: h[2] | (h[3] & 0x3F) << 8),  # ISO data: handle(2) len(14 bits)
}
_CHUNK = 4096


def split_packets(buffer: bytes) -> tuple[list[bytes], bytes]:
    """Whole H4 packets at the front of ``buffer``, and the incomplete rest.

    An unknown type byte cannot be resynchronised on; it is dropped (and reported) so that
    one line glitch does not wedge the link for the rest of the run.
    """
    packets: list[bytes] = []
    while buffer:
        header = _HEADERS.get(buffer[0])
        if header is None:
            sys.stderr.write(f"relay: unexpected H4 type {buffer[0]:#04x}, byte dropped\n")
            buffer = buffer[1:]
            continue
        header_len, payload_len = header
        if len(buffer) < 1 + header_len:
            break
        size = 1 + header_len + payload_len(buffer[1 : 1 + header_len])
        if len(buffer) < size:
            break
        packets.append(buffer[:size])
        buffer = buffer[size:]
    return packets, buffer


def relay(tty_path: str, socket_path: str, ready_flag: str) -> None:
    """Copy bytes both ways until either side closes."""
    fd = os.open(tty_path, os.O_RDWR | os.O_NOCTTY)
    tty.setraw(fd)
    termios.tcflush(fd, termios.TCIOFLUSH)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(socket_path)
    with open(ready_flag, "w"):
        pass
    pending = b""
    while True:
        readable, _, _ = select.select([fd, sock.fileno()], [], [])
        if fd in readable:
            data = os.read(fd, _CHUNK)
            if not data:
                return
            packets, pending = split_packets(pending + data)
            for packet in packets:
                sock.sendall(packet)
        if sock.fileno() in readable:
            data = sock.recv(_CHUNK)
            if not data:
                return
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]


if __name__ == "__main__":
    relay(sys.argv[1], sys.argv[2], sys.argv[3])
