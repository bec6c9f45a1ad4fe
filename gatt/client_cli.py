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
import math
import os
import sys
from collections.abc import Sequence

from gatt.client_defaults import (
    COMMANDS,
    CONNECT_TIMEOUT_DEFAULT,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    PIN_ENV_VAR,
    SCAN_TIMEOUT_DEFAULT,
)

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


def _json_option(default: object) -> argparse.ArgumentParser:
    """--json; accepted before or after the subcommand, like the connection options."""
    option = argparse.ArgumentParser(add_help=False, argument_default=default)
    option.add_argument("--json", action="store_true", default=default,
                        help="print JSON instead of text (one object per line for watch)")
    return option


def build_parser() -> argparse.ArgumentParser:
    """The ``smallbms-client`` parser: global connection options and one subcommand each."""
    common = _connection_options(argparse.SUPPRESS)
    json_opt = _json_option(argparse.SUPPRESS)

    parser = argparse.ArgumentParser(
        prog="smallbms-client",
        description="Read and configure a smallbms BMS over Bluetooth Low Energy.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[_connection_options(None), _json_option(False)],
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
    p = add("set", "change one setting (validated by the device)", json_opt)
    p.add_argument("name", metavar="NAME", help="a setting's name, e.g. discharge_floor")
    p.add_argument("value", metavar="VALUE", help="the new value, e.g. 15, 14.2, on, off")
    p = add(
        "command",
        "run a command: " + ", ".join(COMMANDS),
        json_opt,
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
    import logging  # noqa: PLC0415 (not for --help)

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
    import asyncio  # noqa: PLC0415 (the rest only when a command runs: `--help` stays fast)

    from gatt.client import check_pin  # noqa: PLC0415
    from gatt.client_commands import run  # noqa: PLC0415
    from gatt.client_errors import ClientError  # noqa: PLC0415

    try:
        if args.subcommand != "scan":
            pin = args.pin if args.pin is not None else os.environ.get(PIN_ENV_VAR)
            args.pin = None if pin is None else check_pin(pin)  # before any Bluetooth traffic
        return asyncio.run(run(args))
    except ClientError as exc:
        print(f"smallbms-client: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
