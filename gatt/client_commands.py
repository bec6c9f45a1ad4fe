"""What each ``smallbms-client`` command does, once ``gatt.client_cli`` has parsed it.

Apart from the command line so that ``smallbms-client --help`` imports neither bleak nor
asyncio (a Pi takes a good part of a second for them): ``client_cli.main`` imports this module
only when a command runs.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Awaitable, Callable

from gatt import readout
from gatt.client import (
    ClientError,
    SmallBmsClient,
    default_adapter,
    scan,
)
from gatt.client_defaults import EXIT_OK, EXIT_USAGE
from gatt.client_format import (
    format_bank,
    format_history,
    format_scan,
    format_settings,
    format_status,
    print_json,
    print_lines,
    status_line,
)

# Live view (`watch`): ANSI "cursor home" + "clear to end of screen", so the view is redrawn
# in place without scrolling; plain lines are printed instead when stdout is not a terminal.
_ANSI_REDRAW = "\x1b[H\x1b[J"


# --------------------------------------------------------------------------------------------
# subcommands
# --------------------------------------------------------------------------------------------
def _show(
    value: object, formatter: Callable[[object], list[str]], args: argparse.Namespace
) -> int:
    """Print what a read command got: JSON with --json, the formatter's lines otherwise."""
    if args.json:
        print_json(value, sys.stdout)
    else:
        print_lines(formatter(value), sys.stdout)
    return EXIT_OK


async def _cmd_status(client: SmallBmsClient, args: argparse.Namespace) -> int:
    return _show(await client.status(), format_status, args)


async def _cmd_bank(client: SmallBmsClient, args: argparse.Namespace) -> int:
    return _show(await client.bank(), format_bank, args)


async def _cmd_history(client: SmallBmsClient, args: argparse.Namespace) -> int:
    return _show(await client.history(), format_history, args)


async def _cmd_get(client: SmallBmsClient, args: argparse.Namespace) -> int:
    if args.name is not None:
        value = await client.get_setting(args.name)
        return _show(value, lambda v: format_settings({args.name: v}), args)
    values = await client.settings()
    return _show(values, lambda v: format_settings(values), args)


async def _cmd_set(client: SmallBmsClient, args: argparse.Namespace) -> int:
    values = await client.set_setting(args.name, args.value)
    shown = {args.name: values.get(args.name, args.value)}
    return _show(shown, lambda v: format_settings(shown, assignment=True), args)


async def _cmd_command(client: SmallBmsClient, args: argparse.Namespace) -> int:
    result = await client.command(args.name, args.argument)
    return _show({"command": args.name, "result": result}, lambda v: [result], args)


async def _cmd_key(client: SmallBmsClient, args: argparse.Namespace) -> int:
    key = await client.readout_key()
    if args.json:
        print_json({"key": key.hex()}, sys.stdout)
    else:
        print(key.hex(), flush=True)
    return EXIT_OK


async def _cmd_watch(client: SmallBmsClient, args: argparse.Namespace) -> int:
    tty = sys.stdout.isatty() and not args.json
    count = 0
    async for status in client.watch():
        if args.json:
            print_json(status, sys.stdout)
        elif tty:
            sys.stdout.write(_ANSI_REDRAW)
            now = time.strftime("%H:%M:%S")
            header = f"{client.name}  {client.address}  {now}  (Ctrl-C to stop)"
            print_lines([header, "", *format_status(status)], sys.stdout)
        else:
            print(status_line(status), flush=True)
        count += 1
        if args.count and count >= args.count:
            break
    return EXIT_OK


async def _run_scan(args: argparse.Namespace) -> int:
    key = _parse_key(args.key)
    results = await scan(duration=args.timeout, adapter=args.adapter, key=key, all_devices=args.all)
    if args.json:
        print_json(results, sys.stdout)
    else:
        print_lines(format_scan(results), sys.stdout)
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


async def run(args: argparse.Namespace) -> int:
    """Run the parsed command; returns the exit status (raises ClientError)."""
    if args.adapter is None:
        args.adapter = await default_adapter()
    if args.subcommand == "scan":
        return await _run_scan(args)
    async with SmallBmsClient(  # args.pin: --pin or $SMALLBMS_PIN, checked by client_cli.main
        args.device, adapter=args.adapter, pin=args.pin, timeout=args.timeout
    ) as client:
        return await _CONNECTED[args.subcommand](client, args)
