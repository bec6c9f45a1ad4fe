"""``smallbms reset-pin``: the operator's way back when the PIN state is lost (or forgotten).

When ``settings.json`` is missing or damaged on a daemon that ran before, the daemon does not
fall back to the public factory PIN: Bluetooth refuses every PIN (docs/security.md).  Only
someone with a shell on the machine (who can read the state directory) can open it again, with
this command: it writes a new PIN into the settings document, keeping the other settings when
they can be trusted, and the daemon takes it at its next start.
"""

from __future__ import annotations

import argparse
import secrets
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bms_daemon.core.settings import Settings

EXIT_FAILED = 1
EXIT_BAD_CONFIG = 2


def configure(parser: argparse.ArgumentParser) -> None:
    """Options of ``smallbms reset-pin``."""
    parser.description = (
        "Set a new Bluetooth PIN in the state directory. Use it when the daemon logs "
        "'pin_state_lost' (its settings file was lost or damaged: Bluetooth then refuses every "
        "PIN) or when the PIN is forgotten. Without --pin a random 6-digit PIN is drawn and "
        "printed. Run it with the daemon stopped (it refuses while a daemon holds the state "
        "directory): sudo systemctl stop smallbms, then reset-pin, then sudo systemctl start "
        "smallbms."
    )
    parser.add_argument("-c", "--config", type=Path, metavar="FILE",
                        help="the daemon's TOML configuration (default: the embedded defaults)")
    parser.add_argument("--state-directory", "--state-dir", dest="state_dir", type=Path,
                        metavar="DIR",
                        help="the daemon's state directory (overrides [bms] state_directory)")
    parser.add_argument("--pin", metavar="NNNNNN",
                        help="the new PIN, exactly 6 digits (default: a random one, printed)")


def main(args: argparse.Namespace) -> int:
    """Run ``smallbms reset-pin``."""
    from bms_daemon import config as config_module  # noqa: PLC0415 (keep --help light)
    from bms_daemon.core.settings import SettingError, Settings  # noqa: PLC0415
    from bms_daemon.state.lock import StateDirectoryBusyError, StateLock  # noqa: PLC0415

    pin = args.pin if args.pin is not None else f"{secrets.randbelow(10**6):06d}"
    try:
        config = config_module.load(args.config)
        seeds = Settings().with_values(dict(config.settings))
        new = seeds.with_values({"pin": pin})
    except config_module.ConfigError as exc:
        _error(str(exc))
        return EXIT_BAD_CONFIG
    except SettingError as exc:
        _error(f"--pin: {exc}")
        return EXIT_BAD_CONFIG
    directory = (Path(args.state_dir).expanduser() if args.state_dir is not None
                 else config.state_directory())
    lock = StateLock(directory)
    try:
        lock.acquire("smallbms reset-pin")
    except StateDirectoryBusyError as exc:
        _error(f"{exc}")
        return EXIT_FAILED
    except OSError:
        pass  # no state directory yet: the save below says what is wrong
    try:
        return _reset(directory, new, pin, print_pin=args.pin is None)
    finally:
        lock.release()


def _reset(directory: Path, new: Settings, pin: str, *, print_pin: bool) -> int:
    """Write ``new`` (the new PIN, the other settings kept when trusted) into the settings."""
    from bms_daemon.core.settings import SettingError, Settings  # noqa: PLC0415
    from bms_daemon.state.layout import SETTINGS_NAME, settings_document  # noqa: PLC0415
    from bms_daemon.store import FileStore, StoreError  # noqa: PLC0415

    store = FileStore(directory)
    kept = "the configuration's settings"
    document = store.load(SETTINGS_NAME)  # a damaged file is moved aside, as the daemon would
    if document is not None and isinstance(document.get("settings"), dict):
        try:
            new = Settings().with_values({**document["settings"], "pin": pin})
            kept = "the other settings"
        except (SettingError, ValueError, TypeError):
            pass
    try:
        store.save(SETTINGS_NAME, settings_document(new), secret=True)
    except StoreError as exc:
        _error(f"{exc} (run it as the daemon's user, e.g. with sudo)")
        return EXIT_FAILED
    print(f"new PIN saved in {store.path(SETTINGS_NAME)} ({kept} kept); start the daemon "
          "to use it (sudo systemctl start smallbms)", file=sys.stderr)
    if print_pin:
        print(pin)
    return 0


def _error(message: str) -> None:
    print(f"smallbms reset-pin: {message}", file=sys.stderr)
