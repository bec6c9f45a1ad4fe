"""The ``smallbms`` command: one entry point, one subcommand per job.

Each subcommand lives in the module that does the work; that module exposes
``configure(parser: argparse.ArgumentParser) -> None`` (adds its options) and
``main(args: argparse.Namespace) -> int`` (runs, returns the exit status).  This file only
lists them, so adding a subcommand never means editing another one.

Only the chosen subcommand's module is imported (``smallbms --help`` imports none): start-up
matters on a Raspberry Pi, where importing every subcommand's dependencies (bleak, D-Bus, the
core) for a usage line took seven times as long as starting Python.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from typing import Protocol, cast

from bms_daemon import __version__


class _Subcommand(Protocol):
    def configure(self, parser: argparse.ArgumentParser) -> None: ...
    def main(self, args: argparse.Namespace) -> int: ...


# name, module, one-line help (shown by `smallbms --help`)
SUBCOMMANDS: tuple[tuple[str, str, str], ...] = (
    ("run", "bms_daemon.daemon", "run the BMS daemon (defaults: simulated bank, in-memory GPIO)"),
    ("simulate", "bms_daemon.simulate", "run a scenario file faster than real time"),
    ("check-config", "bms_daemon.config", "validate a configuration file and print the result"),
    ("source-check", "bms_daemon.sources.check",
     "connect to the configured battery source and show live what the BMS would see"),
    ("key", "bms_daemon.keycmd", "print the instant-readout key (hex) from the state directory"),
    ("virtual-bus", "gatt.virtual.cli", "start a private D-Bus with a virtual BlueZ"),
    ("float-outputs", "bms_daemon.floatcmd", "release every output of a stopped daemon"),
    ("reset-pin", "bms_daemon.state.resetpin",
     "set a new Bluetooth PIN (a lost or forgotten PIN; restart the daemon after)"),
    ("install-service", "bms_daemon.install.command",
     "write the systemd unit and the example configuration (/etc)"),
)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; only ``command``'s module is imported and configures its options (a module
    that fails to import is reported, not hidden).  The others are listed with their help."""
    parser = argparse.ArgumentParser(
        prog="smallbms",
        description="A Raspberry Pi emulation of the Victron smallBMS NG BMS.",
    )
    parser.add_argument("--version", action="version", version=f"smallbms {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name, help_text in SUBCOMMANDS:
        sp = sub.add_parser(name, help=help_text, description=help_text)
        if name == command:
            module = cast(_Subcommand, importlib.import_module(module_name))
            module.configure(sp)
            sp.set_defaults(_main=module.main)
    return parser


def _command(argv: Sequence[str]) -> str | None:
    """The subcommand named on the command line: the first argument that is not an option
    (the top-level options take no value)."""
    return next((arg for arg in argv if not arg.startswith("-")), None)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and run the chosen subcommand; returns the exit status."""
    if argv is None:
        argv = sys.argv[1:]
    parser = build_parser(_command(argv))
    args = parser.parse_args(argv)
    run = cast(Callable[[argparse.Namespace], int] | None, getattr(args, "_main", None))
    if run is None:
        parser.print_help()
        return 2
    try:
        return run(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
