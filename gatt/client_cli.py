"""``smallbms-client``: read and configure a smallbms (or a real smallBMS-like device) over BLE.

A thin shell over :mod:`gatt.client`: it parses the command line, runs one client operation,
prints the result for a person (or as JSON with ``--json``), and turns every failure into one
clear line on stderr and a documented exit status, never a traceback, because the people who
run it are looking at a battery, not at Python.

Exit statuses (also in ``docs/client.md`` and ``--help``):

==  ===========================================================================
0   success
1   any other failure (the message says what)
2   bad command line (unknown command, missing or malformed argument)
3   no device found (nothing advertising, wrong --device)
4   wrong PIN, PIN missing, or too many wrong PINs (rate-limited)
5   the device rejected a value or a command (the message gives its reason)
6   the Bluetooth link was lost during the operation
7   no Bluetooth: no D-Bus system bus, no BlueZ, or no adapter
130 interrupted (Ctrl-C)
==  ===========================================================================
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import math
import os
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from enum import Enum
from typing import Any, TextIO

from bms_daemon.core.codes import describe
from bms_daemon.core.types import Code
from gatt import readout
from gatt.client import (
    COMMANDS,
    CONNECT_TIMEOUT_DEFAULT,
    PIN_ENV_VAR,
    SCAN_TIMEOUT_DEFAULT,
    ClientError,
    ScanResult,
    SmallBmsClient,
    default_adapter,
    scan,
)

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

EXIT_STATUS_HELP = """\
exit status:
  0 success          3 no device found      5 value or command rejected   7 no Bluetooth/BlueZ
  1 other failure    4 wrong/missing PIN    6 Bluetooth link lost         2 bad command line
"""

EPILOG = (
    EXIT_STATUS_HELP
    + f"""
The PIN can also come from the {PIN_ENV_VAR} environment variable (safer than --pin, which
other users can see in the process list).  Without --device, the only smallbms in range is
used.  To try it without Bluetooth hardware, start the daemon's demo (`smallbms run`, which
uses a virtual BlueZ when none is present) and point DBUS_SYSTEM_BUS_ADDRESS at the address
it prints; see docs/client.md.
"""
)

# Live view (`watch`): ANSI "cursor home" + "clear to end of screen", so the view is redrawn
# in place without scrolling; plain lines are printed instead when stdout is not a terminal.
_ANSI_REDRAW = "\x1b[H\x1b[J"


Operation = Callable[[SmallBmsClient], Awaitable[int]]


# --------------------------------------------------------------------------------------------
# output helpers
# --------------------------------------------------------------------------------------------
def to_jsonable(value: object) -> object:
    """Dataclasses, enums, tuples and bytes as plain JSON values; NaN/inf become null."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    if isinstance(value, bytes | bytearray):
        return bytes(value).hex()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _print_json(value: object, out: TextIO) -> None:
    print(json.dumps(to_jsonable(value), sort_keys=False), file=out, flush=True)


def _num(value: float | None, unit: str, digits: int = 2) -> str:
    if value is None:
        return "--"
    return f"{value:.{digits}f}{unit}"


def _yes_no(value: bool) -> str:
    return "yes" if value else "no"


def _on_off(value: bool) -> str:
    return "on" if value else "off"


def _ttg(minutes: float | None) -> str:
    if minutes is None:
        return "--"
    total = round(minutes)
    days, rest = divmod(total, 24 * 60)
    hours, mins = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h {mins:02d}m"
    return f"{hours}h {mins:02d}m"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    return _ttg(seconds / 60.0)


def _get(obj: object, name: str, default: Any = None) -> Any:
    """A field of a decoded record; the profile may grow, so absent fields show as '--'."""
    return getattr(obj, name, default)


def format_status(status: object) -> list[str]:
    """The status page [5.1] as lines for a person."""
    soc = _get(status, "soc")
    synced = _get(status, "soc_synchronised", True)
    soc_text = "unknown" if soc is None else f"{soc:.1f} %" + ("" if synced else " (estimated)")
    charge = _get(status, "allowed_to_charge", False)
    discharge = _get(status, "allowed_to_discharge", False)
    prealarm = bool(_get(_get(status, "outputs"), "prealarm", False))
    charge_reason = _get(status, "charge_reason")
    discharge_reason = _get(status, "discharge_reason")
    discharge_text = "pre-alarm" if (discharge and prealarm) else _yes_no(discharge)
    lines = [
        f"State of charge     {soc_text}",
        f"Voltage             {_num(_get(status, 'voltage'), ' V')}",
        f"Current             {_num(_get(status, 'current'), ' A')}",
        f"Power               {_num(_get(status, 'power'), ' W', 0)}",
        f"Consumed            {_num(_get(status, 'consumed_ah'), ' Ah', 1)}",
        f"Time to go          {_ttg(_get(status, 'ttg_min'))}",
        f"Temperature         {_num(_get(status, 'temperature'), ' °C', 1)}",
        f"Mode                {_on_off(bool(_get(status, 'mode', True)))}"
        f"   (remote {_on_off(bool(_get(status, 'remote', True)))})",
        "Allowed to charge   "
        + _yes_no(charge)
        + (f" ({_reason(charge_reason)})" if charge_reason else ""),
        "Allowed to discharge "
        + discharge_text
        + (f" ({_reason(discharge_reason)})" if discharge_reason else ""),
    ]
    for kind, label in (("warnings", "Warning"), ("alarms", "Alarm"), ("errors", "Error")):
        lines.extend(f"{label:<20}{_describe(code)}" for code in _get(status, kind, ()) or ())
    if not any(_get(status, k, ()) for k in ("warnings", "alarms", "errors")):
        lines.append("Warnings/alarms     none")
    return lines


def _describe(code: object) -> str:
    """The code with the manual's title and advice, e.g. "W-B07 Low SOC: Charge ..."."""
    try:
        return describe(Code(_reason(code)))
    except (ValueError, KeyError):
        return _reason(code)


def _reason(value: object) -> str:
    return str(value.value) if isinstance(value, Enum) else str(value)


def format_bank(bank: object) -> list[str]:
    """The bank page: topology, extremes, balancer and each battery with every cell."""
    lines = [
        f"Model               {_get(bank, 'model') or 'unknown'}",
        f"Batteries           {_get(bank, 'batteries')} "
        f"({_get(bank, 'series')} in series x {_get(bank, 'parallel')} in parallel)",
        f"Cells               {_get(bank, 'cells')}",
        f"Capacity            {_num(_get(bank, 'capacity_ah'), ' Ah', 0)}",
        f"Cell voltage        {_num(_get(bank, 'min_cell_voltage'), ' V', 3)} min / "
        f"{_num(_get(bank, 'max_cell_voltage'), ' V', 3)} max",
        f"Temperature         {_num(_get(bank, 'min_temperature'), ' °C', 1)} min / "
        f"{_num(_get(bank, 'max_temperature'), ' °C', 1)} max",
        f"Balancer            {_reason(_get(bank, 'balancer', 'unknown'))}",
    ]
    for index, battery in enumerate(_get(bank, "battery_list", ()) or (), start=1):
        cells = " ".join(f"{v:.3f}" for v in _get(battery, "cell_voltages", ()))
        lines.append(
            f"Battery {index:<3} serial {_get(battery, 'serial')}  "
            f"{_get(battery, 'model')} {_num(_get(battery, 'capacity_ah'), ' Ah', 0)}  "
            f"fw {_get(battery, 'firmware')}"
        )
        lines.append(
            f"  {_num(_get(battery, 'voltage'), ' V')}  {_num(_get(battery, 'current'), ' A')}  "
            f"{_num(_get(battery, 'temperature'), ' °C', 1)}  cells: {cells}"
        )
    return lines


_HISTORY_LABELS: tuple[tuple[str, str, str, int], ...] = (
    # field, label, unit, digits
    ("deepest_discharge_ah", "Deepest discharge", " Ah", 1),
    ("last_discharge_ah", "Last discharge", " Ah", 1),
    ("cumulative_ah_drawn", "Cumulative Ah drawn", " Ah", 1),
    ("discharged_energy_kwh", "Discharged energy", " kWh", 2),
    ("charged_energy_kwh", "Charged energy", " kWh", 2),
    ("synchronisations", "Synchronisations", "", 0),
    ("charge_cycles", "Charge cycles", "", 0),
    ("full_discharges", "Full discharges", "", 0),
    ("min_bank_voltage", "Min bank voltage", " V", 2),
    ("max_bank_voltage", "Max bank voltage", " V", 2),
    ("min_cell_voltage", "Min cell voltage", " V", 3),
    ("max_cell_voltage", "Max cell voltage", " V", 3),
    ("min_temperature", "Min temperature", " °C", 1),
    ("max_temperature", "Max temperature", " °C", 1),
)


def format_history(history: object) -> list[str]:
    """The history page [5.1]."""
    lines = []
    for name, label, unit, digits in _HISTORY_LABELS:
        value = _get(history, name)
        text = str(value) if digits == 0 and value is not None else _num(value, unit, digits)
        lines.append(f"{label:<24}{text}")
    since = _duration(_get(history, "seconds_since_full_charge"))
    lines.insert(8, f"{'Since last full charge':<24}{since}")
    return lines


def _setting_text(value: object) -> str:
    if isinstance(value, bool):
        return _on_off(value)
    if value is None:
        return "default"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


_SETTING_UNITS = {
    "charged_voltage": " V",
    "tail_current": " %",
    "charge_detection_time": " min",
    "low_soc_warning": " %",
    "discharge_floor": " %",
}


def format_settings(values: Mapping[str, object], *, assignment: bool = False) -> list[str]:
    """One line per setting with its unit: aligned columns, or ``name = value`` after a set."""
    def text(name: str, v: object) -> str:
        return _setting_text(v) + (_SETTING_UNITS.get(name, "") if v is not None else "")

    if assignment:
        return [f"{name} = {text(name, v)}" for name, v in values.items()]
    return [f"{name:<24}{text(name, v)}" for name, v in values.items()]


def format_scan(results: Sequence[ScanResult]) -> list[str]:
    """One line per device found, plus its decoded instant readout when there is one."""
    if not results:
        return ["no smallbms found"]
    lines = []
    for r in results:
        lines.append(f"{r.address}  {r.name or '(no name)':<20} RSSI {r.rssi} dBm")
        if r.readout is not None:
            lines.append("  readout: " + ", ".join(f"{k}={v}" for k, v in r.readout.items()))
        elif r.readout_note:
            lines.append(f"  readout: {r.readout_note}")
    return lines


def _print_lines(lines: Sequence[str], out: TextIO) -> None:
    out.write("\n".join(lines) + "\n")
    out.flush()


# --------------------------------------------------------------------------------------------
# subcommands
# --------------------------------------------------------------------------------------------
async def _cmd_status(client: SmallBmsClient, args: argparse.Namespace) -> int:
    status = await client.status()
    if args.json:
        _print_json(status, sys.stdout)
    else:
        _print_lines(format_status(status), sys.stdout)
    return EXIT_OK


async def _cmd_bank(client: SmallBmsClient, args: argparse.Namespace) -> int:
    bank = await client.bank()
    if args.json:
        _print_json(bank, sys.stdout)
    else:
        _print_lines(format_bank(bank), sys.stdout)
    return EXIT_OK


async def _cmd_history(client: SmallBmsClient, args: argparse.Namespace) -> int:
    history = await client.history()
    if args.json:
        _print_json(history, sys.stdout)
    else:
        _print_lines(format_history(history), sys.stdout)
    return EXIT_OK


async def _cmd_get(client: SmallBmsClient, args: argparse.Namespace) -> int:
    if args.name is not None:
        value = await client.get_setting(args.name)
        if args.json:
            _print_json(value, sys.stdout)
        else:
            _print_lines(format_settings({args.name: value}), sys.stdout)
        return EXIT_OK
    values = await client.settings()
    if args.json:
        _print_json(values, sys.stdout)
    else:
        _print_lines(format_settings(values), sys.stdout)
    return EXIT_OK


async def _cmd_set(client: SmallBmsClient, args: argparse.Namespace) -> int:
    values = await client.set_setting(args.name, args.value)
    shown = {args.name: values.get(args.name, args.value)}
    _print_lines(format_settings(shown, assignment=True), sys.stdout)
    return EXIT_OK


async def _cmd_command(client: SmallBmsClient, args: argparse.Namespace) -> int:
    result = await client.command(args.name, args.argument)
    print(result, flush=True)
    return EXIT_OK


async def _cmd_key(client: SmallBmsClient, args: argparse.Namespace) -> int:
    key = await client.readout_key()
    if args.json:
        _print_json({"key": key.hex()}, sys.stdout)
    else:
        print(key.hex(), flush=True)
    return EXIT_OK


async def _cmd_watch(client: SmallBmsClient, args: argparse.Namespace) -> int:
    tty = sys.stdout.isatty() and not args.json
    count = 0
    async for status in client.watch():
        if args.json:
            _print_json(status, sys.stdout)
        elif tty:
            sys.stdout.write(_ANSI_REDRAW)
            now = time.strftime("%H:%M:%S")
            header = f"{client.name}  {client.address}  {now}  (Ctrl-C to stop)"
            _print_lines([header, "", *format_status(status)], sys.stdout)
        else:
            print(_status_line(status), flush=True)
        count += 1
        if args.count and count >= args.count:
            break
    return EXIT_OK


def _status_line(status: object) -> str:
    """One line per status for logs and pipes (``watch`` when stdout is not a terminal)."""
    soc = _get(status, "soc")
    codes = [
        _reason(c) for k in ("warnings", "alarms", "errors") for c in (_get(status, k, ()) or ())
    ]
    return (
        f"soc={'--' if soc is None else f'{soc:.1f}'} "
        f"voltage={_num(_get(status, 'voltage'), '')} "
        f"current={_num(_get(status, 'current'), '')} "
        f"charge={_yes_no(_get(status, 'allowed_to_charge', False))} "
        f"discharge={_yes_no(_get(status, 'allowed_to_discharge', False))} "
        f"codes={','.join(codes) or '-'}"
    )


async def _run_scan(args: argparse.Namespace) -> int:
    key = _parse_key(args.key)
    results = await scan(duration=args.timeout, adapter=args.adapter, key=key, all_devices=args.all)
    if args.json:
        _print_json(results, sys.stdout)
    else:
        _print_lines(format_scan(results), sys.stdout)
    return EXIT_OK if results else 3


def _parse_key(text: str | None) -> bytes | None:
    if text is None:
        return None
    try:
        return readout.parse_key(text)
    except ValueError as exc:
        raise ClientError(f"--key: {exc}", exit_code=EXIT_USAGE) from None


_CONNECTED: dict[str, Callable[[SmallBmsClient, argparse.Namespace], Awaitable[int]]] = {
    "status": _cmd_status,
    "watch": _cmd_watch,
    "bank": _cmd_bank,
    "history": _cmd_history,
    "get": _cmd_get,
    "set": _cmd_set,
    "command": _cmd_command,
    "key": _cmd_key,
}


async def _run(args: argparse.Namespace) -> int:
    if args.adapter is None:
        args.adapter = await default_adapter()
    if args.subcommand == "scan":
        return await _run_scan(args)
    pin = args.pin if args.pin is not None else os.environ.get(PIN_ENV_VAR)
    async with SmallBmsClient(
        args.device, adapter=args.adapter, pin=pin, timeout=args.timeout
    ) as client:
        return await _CONNECTED[args.subcommand](client, args)


# --------------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------------
def _connection_options(default: object) -> argparse.ArgumentParser:
    """--device, --pin, --adapter, --timeout; accepted before or after the subcommand."""
    common = argparse.ArgumentParser(add_help=False, argument_default=default)
    common.add_argument(
        "--device",
        "-d",
        metavar="NAME|ADDRESS",
        help="the device's advertised name or its address AA:BB:CC:DD:EE:FF "
        "(default: the only smallbms in range)",
    )
    common.add_argument(
        "--pin",
        metavar="PIN",
        help=f"the device's 6-digit PIN (default: ${PIN_ENV_VAR}; the factory PIN is 000000)",
    )
    common.add_argument(
        "--adapter",
        metavar="HCI",
        help="local Bluetooth adapter, e.g. hci0 (default: bleak's choice, which is hci1, "
        "the central, on the virtual bus)",
    )
    common.add_argument(
        "--timeout",
        type=_positive_float,
        metavar="SECONDS",
        help=f"how long to look for the device (default: scan {SCAN_TIMEOUT_DEFAULT:g} s, "
        f"connect {CONNECT_TIMEOUT_DEFAULT:g} s)",
    )
    return common


def build_parser() -> argparse.ArgumentParser:
    """The ``smallbms-client`` parser: global connection options and one subcommand each."""
    common = _connection_options(argparse.SUPPRESS)
    json_opt = argparse.ArgumentParser(add_help=False, argument_default=argparse.SUPPRESS)
    json_opt.add_argument("--json", action="store_true", help="print JSON instead of text")

    parser = argparse.ArgumentParser(
        prog="smallbms-client",
        description="Read and configure a smallbms BMS over Bluetooth Low Energy.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[_connection_options(None)],
    )
    sub = parser.add_subparsers(dest="subcommand", metavar="COMMAND")

    def add(
        name: str, help_text: str, *parents: argparse.ArgumentParser
    ) -> argparse.ArgumentParser:
        return sub.add_parser(
            name,
            help=help_text,
            description=help_text,
            epilog=EXIT_STATUS_HELP,
            formatter_class=argparse.RawDescriptionHelpFormatter,
            parents=[common, *parents],
            argument_default=argparse.SUPPRESS,
        )

    p = add("scan", "list smallbms devices in range, with their instant readout", json_opt)
    p.add_argument(
        "--key",
        metavar="HEX",
        help="instant-readout key (32 hex digits, see `smallbms-client key`) to decrypt it",
    )
    p.add_argument("--all", action="store_true", help="list every BLE device, not only smallbms")
    add("status", "show the status page: SOC, voltage, current, outputs, codes", json_opt)
    p = add("watch", "show the status live, refreshed at each notification", json_opt)
    p.add_argument(
        "--count", type=int, metavar="N", help="stop after N updates (default: until Ctrl-C)"
    )
    add("bank", "show the bank: topology, balancer, every battery and cell", json_opt)
    add("history", "show the history counters", json_opt)
    p = add("get", "show all settings, or one", json_opt)
    p.add_argument("name", nargs="?", metavar="NAME", help="a setting's name, e.g. discharge_floor")
    p = add("set", "change one setting (validated by the device)")
    p.add_argument("name", metavar="NAME", help="a setting's name, e.g. discharge_floor")
    p.add_argument("value", metavar="VALUE", help="the new value, e.g. 15, 14.2, on, off")
    p = add(
        "command",
        "run a command: " + ", ".join(COMMANDS),
    )
    p.add_argument("name", metavar="NAME", choices=(*COMMANDS, "sync"), help="the command")
    p.add_argument(
        "argument",
        nargs="?",
        metavar="ARG",
        help="set_soc: the SOC in %% (0-100); mode: on or off; change_pin: the new 6-digit PIN",
    )
    add("key", "print the instant-readout key (needs the PIN)", json_opt)
    return parser


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds: {text!r}")
    return value


_DEFAULTS: dict[str, object] = {
    "device": None,
    "pin": None,
    "adapter": None,
    "timeout": None,
    "json": False,
    "key": None,
    "all": False,
    "count": None,
    "name": None,
    "argument": None,
}


def _quiet_libraries() -> None:
    """Keep library log records (bleak warnings, dbus-fast handler tracebacks when a bless
    server registers while we listen) off the user's terminal: every failure that matters
    reaches the user as one ClientError line.  SMALLBMS_CLIENT_DEBUG=1 shows them."""
    if os.environ.get("SMALLBMS_CLIENT_DEBUG"):
        logging.basicConfig(level=logging.DEBUG)
        return
    for name in ("bleak", "dbus_fast"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``smallbms-client``; returns the exit status (see the module docstring)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    for name, default in _DEFAULTS.items():
        if not hasattr(args, name):
            setattr(args, name, default)
    if args.subcommand is None:
        parser.print_help()
        return EXIT_USAGE
    _quiet_libraries()
    try:
        return asyncio.run(_run(args))
    except ClientError as exc:
        print(f"smallbms-client: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
