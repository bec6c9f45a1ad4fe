"""What the instant readout costs the daemon per call, and the nonce window's disk writes.

``ReadoutBroadcaster.payload_for`` runs about once a second in the daemon's event loop; the
target is well under 1 ms per call so it never delays the control loop.  Once per
``NONCE_WINDOW`` new frames the nonce window is saved (atomic, fsync'd); the daemon does that in
a worker thread, and its duration, which depends on the disk, is printed separately.  (Called
in a tight loop, the "as daemon" case also counts calls that return the previous frame while
the next window is being saved; at 1 Hz that never happens.)  Also prints how many saves a day
of one refresh per second needs (the SD-card cost of the nonce window).

Run: .venv/bin/python benchmarks/bench_readout.py [--calls N]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import structlog

from bms_daemon.core.settings import Settings
from bms_daemon.core.types import Leds, Outputs, Status
from bms_daemon.store import FileStore, MemoryStore, Store
from gatt.broadcaster import ReadoutBroadcaster
from gatt.readout import encode_manufacturer_data, readout_from_status
from gatt.readout_keys import NONCE_WINDOW, ReadoutKeys

TARGET_MS = 1.0
SECONDS_PER_DAY = 86_400


def status(soc: float) -> Status:
    return Status(
        t=0.0,
        soc=soc,
        soc_synchronised=True,
        mode=True,
        remote=True,
        voltage=13.2,
        current=-5.0,
        power=-66.0,
        consumed_ah=20.0,
        ttg_min=800.0,
        allowed_to_charge=True,
        charge_reason=None,
        allowed_to_discharge=True,
        discharge_reason=None,
        outputs=Outputs(load=True, charger=True),
        leds=Leds(),
        temperature=25.0,
    )


def measure(
    label: str, calls: int, body: Callable[[int], object], target_ms: float | None = TARGET_MS
) -> None:
    samples = []
    for index in range(calls):
        start = time.perf_counter()
        body(index)
        samples.append((time.perf_counter() - start) * 1000)
    samples.sort()
    median = statistics.median(samples)
    p99 = samples[int(len(samples) * 0.99) - 1]
    verdict = "" if target_ms is None else ("  [ok]" if p99 <= target_ms else "  [SLOW]")
    print(f"{label:<48} median {median * 1000:7.1f} us  p99 {p99 * 1000:7.1f} us{verdict}")


def broadcaster(store: Store) -> ReadoutBroadcaster:
    return ReadoutBroadcaster(ReadoutKeys(store), Settings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=5000)
    calls = parser.parse_args().calls
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    key = bytes(range(16))
    statuses = [status(50 + (i % 500) / 10) for i in range(calls)]
    readouts = [readout_from_status(s) for s in statuses]

    measure(
        "status -> record -> AES-CTR frame",
        calls,
        lambda i: encode_manufacturer_data(readouts[i], key, i & 0xFFFF),
    )
    same = broadcaster(MemoryStore())
    measure(
        "payload_for, figures unchanged (repeat frame)",
        calls,
        lambda i: same.payload_for(statuses[0], float(i)),
    )
    changing = broadcaster(MemoryStore())
    measure(
        "payload_for, new frame every call (memory store)",
        calls,
        lambda i: changing.payload_for(statuses[i], float(i)),
    )
    with tempfile.TemporaryDirectory(dir=Path.cwd()) as directory:
        store = FileStore(Path(directory))
        daemon_like = ReadoutBroadcaster.from_store(store, Settings)  # background saves
        measure(
            "payload_for, new frame every call (file, as daemon)",
            calls,
            lambda i: daemon_like.payload_for(statuses[i], float(i)),
        )
        daemon_like.keys.flush()
        # the slow step, in a worker thread once per NONCE_WINDOW frames: an fsync'd save
        document = store.load("readout") or {}
        measure(
            f"nonce-window save (worker thread), 1/{NONCE_WINDOW} frames",
            min(calls, 200),
            lambda i: store.save("readout", document, secret=True),
            target_ms=None,
        )
    saves = SECONDS_PER_DAY / NONCE_WINDOW
    print(
        f"nonce-window saves per day at one new frame per second: {saves:.0f} "
        f"(one every {NONCE_WINDOW} s)"
    )
    print(f"16-bit nonce wrap at one new frame per second: every {65536 / 3600:.1f} h")


if __name__ == "__main__":
    main()
