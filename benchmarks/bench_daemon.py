"""Idle cost of `smallbms run` on its defaults (simulated bank, memory GPIO, BLE off).

``BENCH_BLE=1`` runs it with Bluetooth on (a virtual BlueZ is started when none is present);
the figures then include the GATT server and the readout broadcaster, not the virtual BlueZ
processes.

Runs the daemon for DURATION_S seconds in a temporary state directory and prints the CPU it
used, as a percentage of one core, and its peak resident memory.  Targets: < 1 % and < 50 MB.
The first seconds (imports, start-up) are excluded from the CPU figure: the daemon's READY
message marks the start of the measured period.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DURATION_S = float(os.environ.get("BENCH_DURATION_S", "30"))
WITH_BLE = os.environ.get("BENCH_BLE", "") not in ("", "0")
RUN = (
    "import argparse, sys\n"
    "from bms_daemon import daemon\n"
    "parser = argparse.ArgumentParser()\n"
    "daemon.configure(parser)\n"
    "sys.exit(daemon.main(parser.parse_args(sys.argv[1:])))\n"
)
TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / TICKS_PER_SECOND


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        notify_path = Path(tmp) / "notify"
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify.bind(str(notify_path))
        notify.settimeout(60)
        env = dict(os.environ, NOTIFY_SOCKET=str(notify_path))
        proc = subprocess.Popen(
            [sys.executable, "-c", RUN, *([] if WITH_BLE else ["--no-ble"]),
             "--state-directory", f"{tmp}/state"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            while b"READY=1" not in notify.recv(4096):
                pass
            start_cpu, start = cpu_seconds(proc.pid), time.monotonic()
            time.sleep(DURATION_S)
            used = cpu_seconds(proc.pid) - start_cpu
            elapsed = time.monotonic() - start
            rss = peak_rss_mb(proc.pid)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
            notify.close()
    print(f"BLE {'on' if WITH_BLE else 'off'}")
    print(f"daemon idle CPU: {100 * used / elapsed:.2f} % of one core over {elapsed:.0f} s "
          "(target < 1 %)")
    print(f"daemon peak RSS: {rss:.1f} MB (target < 50 MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
