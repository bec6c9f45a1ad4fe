"""``smallbms float-outputs``: release LOAD, CHARGER, PRE-ALARM and the LEDs of a stopped daemon.

systemd runs it as ``ExecStopPost=`` after every stop, including a crash, a SIGKILL from the
watchdog or the OOM killer: whatever level a kernel that keeps outputs (Raspberry Pi kernels
without ``dtparam=strict_gpiod``) left on the pins, they end released, i.e. loads and chargers
disconnected.  It reads the same configuration as ``smallbms run`` to know which lines.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bms_daemon.config import EXIT_BAD_CONFIG, load_or_report
from bms_daemon.gpio import GpioError, float_outputs
from bms_daemon.state.lock import StateDirectoryBusyError, StateLock

EXIT_GPIO_FAILED = 1


def configure(parser: argparse.ArgumentParser) -> None:
    """Options of ``smallbms float-outputs``."""
    parser.description = (
        "Release every output line (LOAD, CHARGER, PRE-ALARM, LEDs) of a stopped daemon, so "
        "loads and chargers are disconnected. For systemd's ExecStopPost; refuses while a running "
        "daemon holds the lines or the state directory."
    )
    parser.add_argument("-c", "--config", type=Path, metavar="FILE",
                        help="the configuration file `smallbms run` uses")
    parser.add_argument("--state-directory", type=Path, metavar="DIR",
                        help="override [bms] state_directory (memory backend only)")


def main(args: argparse.Namespace) -> int:
    """Run ``smallbms float-outputs``."""
    config = load_or_report(args.config)
    if config is None:
        return EXIT_BAD_CONFIG
    state_directory = args.state_directory or config.state_directory()
    lock = StateLock(state_directory)
    try:
        lock.acquire("smallbms float-outputs")
    except StateDirectoryBusyError as exc:  # a running daemon: its outputs are its own
        print(f"smallbms: error: {exc}", file=sys.stderr)
        return EXIT_GPIO_FAILED
    except OSError:
        pass  # no state directory (yet): nothing else can be writing there
    try:
        float_outputs(config.gpio, state_directory)
    except GpioError as exc:
        print(f"smallbms: error: {exc}", file=sys.stderr)
        return EXIT_GPIO_FAILED
    finally:
        lock.release()
    names = ", ".join(config.gpio.outputs())
    where = f", state directory {state_directory}" if config.gpio.backend == "memory" else ""
    print(f"outputs floating ({config.gpio.backend} backend{where}): {names}")
    return 0
