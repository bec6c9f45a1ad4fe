"""How many Victron advertisements per second the Bluetooth source can judge and decode.

What a Pi hears: each device repeats its current frame several times a second (copies: renew
the figures' age without decrypting), a new frame (new nonce: decrypt with victron-ble, decode,
our fixes) about once a second, and other people's Victron devices (dropped by address before
anything else).  Printed per kind, in advertisements per second of one core, with the share of
a core that 8 batteries and a shunt at their real rates would use (a frame per second each,
plus 9 copies per second each: an upper bound of what BlueZ reports).

Run: .venv/bin/python benchmarks/bench_victron_decode.py [--frames N]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from bms_daemon.sources.victron import encode, records
from bms_daemon.sources.victron.frames import DeviceFrames

KEY = bytes.fromhex("0df4d0395b7d1a876c0c33ecb9e70dcd")
DEVICES = 9  # 8 batteries and a shunt
NEW_PER_S = 1.0  # new frames per device per second (research/victron-ble.md: ~1 nonce/s)
COPIES_PER_S = 9.0  # reports of the same frame per device per second (upper bound)


def rate(label: str, count: int, body: Callable[[int], object]) -> float:
    start = time.perf_counter()
    for i in range(count):
        body(i)
    elapsed = time.perf_counter() - start
    per_s = count / elapsed
    print(f"{label:<48} {per_s:>10,.0f} /s   {elapsed / count * 1e6:7.1f} µs each")
    return per_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=20_000)
    args = parser.parse_args()
    n = args.frames
    cells = [3.30, 3.31, 3.29, 3.32]
    battery = encode.DeviceEncoder.battery(KEY)
    frames = [battery.frame(encode.lithium_record(cells, temperature=20 + i % 5))
              for i in range(n)]
    shunt = encode.DeviceEncoder.monitor(KEY)
    shunt_frames = [shunt.frame(encode.monitor_record(voltage=13.2, current=-i / 100, soc=80))
                    for i in range(n)]

    rate("records.decode, 0x05 (victron-ble + fixes)", n,
         lambda i: records.decode(frames[i], KEY))
    rate("records.decode, 0x02 (victron-ble + fixes)", n,
         lambda i: records.decode(shunt_frames[i], KEY))
    dev = DeviceFrames("b", KEY, records.RECORD_SMART_LITHIUM, resync_after=10.0)
    new = rate("DeviceFrames.offer, new frame (decoded)", n,
               lambda i: dev.offer(frames[i], float(i)))
    copy = rate("DeviceFrames.offer, copy of the current frame", n,
                lambda i: dev.offer(frames[-1], float(n + i)))
    replay = rate("DeviceFrames.offer, replayed old frame", n,
                  lambda i: dev.offer(frames[i], float(2 * n)))
    del replay
    per_s = DEVICES * (NEW_PER_S / new + COPIES_PER_S / copy)
    print(f"8 batteries + a shunt at real rates: {per_s * 100:.3f} % of a core "
          "(decoding only; bleak and D-Bus come on top, see bench_victron_daemon.py)")


if __name__ == "__main__":
    main()
