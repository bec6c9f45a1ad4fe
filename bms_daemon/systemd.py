"""The sd_notify protocol, in a few lines instead of a dependency on libsystemd.

systemd documents the protocol itself as the stable interface: one datagram of ``KEY=value``
lines to the AF_UNIX socket named in ``$NOTIFY_SOCKET`` (a leading ``@`` is the abstract
namespace).  Outside systemd the variable is unset and every call is a cheap no-op, so the
daemon calls these unconditionally.  A failed send is swallowed: losing a status line must never
disturb the control loop (a lost WATCHDOG ping is what the watchdog is for).
"""

from __future__ import annotations

import os
import socket

WATCHDOG_PING_FRACTION = 0.5  # ping at half of WatchdogSec, as sd_watchdog_enabled(3) advises


def notify(*fields: str) -> bool:
    """Send ``fields`` (e.g. ``"READY=1"``, ``"STATUS=…"``); False when not under systemd."""
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return False
    address = "\0" + path[1:] if path.startswith("@") else path
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall("\n".join(fields).encode("utf-8"))
    except OSError:
        return False
    return True


def watchdog_interval() -> float | None:
    """Seconds between WATCHDOG=1 pings, or None when systemd set no watchdog for us."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec:
        return None
    try:
        if pid and int(pid) != os.getpid():
            return None
        timeout = int(usec)
    except ValueError:
        return None
    if timeout <= 0:
        return None
    return timeout / 1e6 * WATCHDOG_PING_FRACTION
