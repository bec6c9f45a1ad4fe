"""``smallbms source-check``: connect to the configured battery source and show what the BMS
would see, live, without driving any output (the first thing an installer runs).

Every second (``--interval``) it prints each feed's state (connected, frames per second,
dropped input by reason, the CAN frames seen and missing) and the readings the BMS would get:
batteries, cell extremes, temperatures, bank voltage and current and who provided them, the
devices' own alarms.  It stops after ``--seconds`` (default: until Ctrl-C) and exits 0 when the
last readings were complete, 1 when not, 2 for a bad configuration.  It opens no GPIO line and
touches no state file, so it can run beside a stopped daemon (not beside a running one on a
serial port: only one program can read a port).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from pathlib import Path
from typing import Any

from bms_daemon.config import EXIT_BAD_CONFIG, check_source, load_or_report
from bms_daemon.core.types import Readings
from bms_daemon.sources import comms_delays

EXIT_INCOMPLETE = 1


def configure(parser: argparse.ArgumentParser) -> None:
    """Options of ``smallbms source-check``."""
    parser.description = (
        "Connect to the battery source(s) of a configuration and show live what the BMS would "
        "see (batteries, cells, current, temperatures, the devices' own alarms, frames per "
        "second, dropped frames) without driving any output. Exit 0 when the readings are "
        "complete, 1 when something is missing, 2 for a bad configuration."
    )
    parser.add_argument("-c", "--config", type=Path, metavar="FILE", required=True,
                        help="TOML configuration file, e.g. /etc/smallbms/smallbms.toml")
    parser.add_argument("--seconds", type=float, metavar="S", default=None,
                        help="stop after S seconds (default: run until Ctrl-C)")
    parser.add_argument("--interval", type=float, metavar="S", default=1.0,
                        help="seconds between two reports (default 1)")
    parser.add_argument("--json", action="store_true",
                        help="one JSON object per report instead of text")


def main(args: argparse.Namespace) -> int:
    """Run ``smallbms source-check``."""
    config = load_or_report(args.config)
    if config is None:
        return EXIT_BAD_CONFIG
    problem = check_source(config)
    if problem:
        print(f"smallbms: error: {problem}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    if config.source.get("type", "simulated") == "simulated":
        print("source-check: [source] type is \"simulated\": no device to check "
              "(docs/sources.md shows real sources)")
        return 0
    from bms_daemon import logging as smallbms_logging  # noqa: PLC0415
    from bms_daemon.sources.spec import create_real_source  # noqa: PLC0415

    smallbms_logging.configure("error", "console")  # the report says it all, once a second
    source = create_real_source(config.source)
    comms = comms_delays(config.source)
    interval = max(args.interval, 0.1)
    try:
        return asyncio.run(_check(source, args.seconds, interval, args.json, comms=comms))
    except KeyboardInterrupt:
        return 130


async def _check(source: Any, seconds: float | None, interval: float, as_json: bool, *,
                 comms: tuple[float, float]) -> int:
    task = asyncio.create_task(source.run(), name="source")
    started = time.monotonic()
    frames_before = {name: feed.stats.frames for name, feed in source.feeds.items()}
    last = started
    readings: Readings | None = None
    if not as_json:
        print(_header(source))
    try:
        while seconds is None or time.monotonic() - started < seconds:
            left = None if seconds is None else seconds - (time.monotonic() - started)
            await asyncio.sleep(interval if left is None else max(min(interval, left), 0.0))
            now = time.monotonic()
            readings = source.read(now)
            report = _report(source, readings, now, span=now - last,
                             frames_before=frames_before, elapsed=now - started)
            report["comms_warning_s"], report["comms_alarm_s"] = comms
            frames_before = {name: feed.stats.frames for name, feed in source.feeds.items()}
            last = now
            print(json.dumps(report) if as_json else _text(report), flush=True)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    return 0 if readings is not None else EXIT_INCOMPLETE


def _header(source: Any) -> str:
    feeds = ", ".join(f"{name}: {feed.kind} {feed.describe_device()}"
                      for name, feed in source.feeds.items())
    roles = ", ".join(f"{q.value} from {name}" for q, name in source.providers.items())
    return f"source-check: {feeds}\n  the BMS takes {roles}; no output is driven\n"


def _report(source: Any, readings: Readings | None, now: float, *, span: float,
            frames_before: dict[str, int], elapsed: float) -> dict[str, Any]:
    feeds: dict[str, Any] = {}
    for name, feed in source.feeds.items():
        stats = feed.stats
        sample = feed.last_sample()
        entry: dict[str, Any] = {
            "connected": stats.connected,
            "frames_per_s": round((stats.frames - frames_before[name]) / span, 1) if span else 0,
            "dropped": dict(stats.dropped),
            "age_s": None if sample is None else round(now - sample.at, 1),
            "fresh": feed.latest(now) is not None,
        }
        if stats.problem:
            entry["problem"] = stats.problem
        seen = getattr(feed, "seen_frames", None)
        if seen is not None:
            frames = seen()
            entry["can_frames"] = sorted(f"{frame:03X}" for frame in frames)
            needed = getattr(feed.decoder, "received", {})
            entry["missing"] = [f"{frame:03X}" for frame in (0x356, 0x373) if frame not in needed]
        devices = getattr(feed, "devices", None)
        if devices is not None:  # a radio feed: each device's RSSI, frame age, figures
            entry["devices"] = devices(now)
        if sample is not None:
            entry["extra"] = dict(sample.extra)
            entry["notes"] = list(sample.notes)
        feeds[name] = entry
    report: dict[str, Any] = {"t": round(elapsed, 1), "feeds": feeds, "readings": None}
    if readings is not None:
        report["readings"] = {
            "bank_voltage": round(readings.bank_voltage, 3),
            "bank_current": round(readings.bank_current, 3),
            "notes": list(readings.notes),
            "batteries": [
                {"serial": b.serial, "model": b.model, "voltage": round(b.voltage, 3),
                 "lowest_cell": b.lowest_cell, "highest_cell": b.highest_cell,
                 "cells": list(b.cell_voltages), "coldest": round(b.coldest, 1),
                 "warmest": round(b.temperature, 1)}
                for b in readings.batteries
            ],
        }
    return report


def _text(report: dict[str, Any]) -> str:
    lines = [f"[{report['t']:6.1f} s]"]
    for name, feed in report["feeds"].items():
        state = "connected" if feed["connected"] else f"NOT CONNECTED ({feed.get('problem', '')})"
        age = "no data yet" if feed["age_s"] is None else f"newest data {feed['age_s']} s old"
        dropped = ", ".join(f"{reason} {n}" for reason, n in feed["dropped"].items()) or "none"
        lines.append(f"  {name}: {state}, {feed['frames_per_s']} frames/s, {age}"
                     f"{'' if feed['fresh'] else ' (STALE)'}, dropped: {dropped}")
        if "can_frames" in feed:
            missing = f"; MISSING {' '.join(feed['missing'])}" if feed["missing"] else ""
            lines.append(f"    CAN frames seen: {' '.join(feed['can_frames']) or 'none'}"
                         f"{missing}")
        for device in feed.get("devices", []):
            lines += _device_lines(device)
        if feed.get("extra"):
            lines.append("    " + ", ".join(f"{k} {v}" for k, v in feed["extra"].items()))
        if feed.get("notes"):
            lines.append("    device says: " + "; ".join(feed["notes"]))
    readings = report["readings"]
    if readings is None:
        lines.append(f"  the BMS would see: NO FRESH READINGS (W-B05 after "
                     f"{report['comms_warning_s']:g} s, A-B05 after {report['comms_alarm_s']:g} s)")
    else:
        lines.append(f"  the BMS would see: bank {readings['bank_voltage']:.2f} V "
                     f"{readings['bank_current']:+.2f} A")
        for b in readings["batteries"]:
            cells = (f"{len(b['cells'])} cells" if b["cells"] else "cell extremes only")
            lines.append(f"    {b['serial']} ({b['model']}): {b['voltage']:.2f} V, cells "
                         f"{b['lowest_cell']:.3f}-{b['highest_cell']:.3f} V ({cells}), "
                         f"{b['coldest']:.1f}-{b['warmest']:.1f} °C")
    return "\n".join(lines)


_COUNTS = ("accepted", "repeated", "replayed", "wrong_key", "other_record", "truncated",
           "not_victron")


def _device_lines(device: dict[str, Any]) -> list[str]:
    """One radio device: when it was last heard, how well, what it says."""
    if device["age_s"] is not None:
        age = f"last frame {device['age_s']} s ago"
    elif "wrong_key" in device:
        age = "WRONG KEY: was the device's PIN changed? (docs/victron-bluetooth.md)"
    else:
        age = "NEVER HEARD" if device["rssi"] is None else "NO USABLE FRAME"
    rssi = "" if device["rssi"] is None else f", RSSI {device['rssi']} dBm"
    counts = ", ".join(f"{k.replace('_', ' ')} {device[k]}" for k in _COUNTS if k in device)
    lines = [f"    {device['name']} {device['address']}: {age}{rssi}; {counts or 'nothing'}"]
    figures = device.get("figures")
    if figures:
        lines.append("      " + ", ".join(f"{k.replace('_', ' ')} {v}"
                                          for k, v in figures.items()))
    return lines
