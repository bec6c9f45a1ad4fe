"""``smallbms key``: print the instant-readout key, locally, for a phone or Home Assistant.

Readers of the encrypted instant readout (VictronConnect, Home Assistant's Victron BLE
integration, ESPHome, Venus OS) need the device's 16-byte key as 32 hex digits.  The key never
leaves the machine otherwise: it is not logged and not readable over Bluetooth, so printing it
here, to whoever can read the state directory, is the way to hand it over.  The command only
reads: the daemon makes the key when its Bluetooth side first starts and rotates it when the
PIN changes.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

EXIT_NO_KEY = 1
EXIT_BAD_CONFIG = 2


def configure(parser: argparse.ArgumentParser) -> None:
    """Options of ``smallbms key``."""
    parser.description = (
        "Print the instant-readout key (32 hex digits) that Home Assistant, VictronConnect, "
        "ESPHome or Venus OS need to decode this BMS's advertisements. The daemon creates the "
        "key when Bluetooth first starts and replaces it when the PIN changes; run this "
        "command again after changing the PIN."
    )
    parser.epilog = (
        "The key is read from the state directory of the daemon (the file readout.json). "
        "Give the same --config (and --state-directory) as `smallbms run`, e.g. "
        "`sudo smallbms key --state-directory /var/lib/smallbms` for a systemd service."
    )
    parser.add_argument("-c", "--config", type=Path, metavar="FILE",
                        help="the daemon's TOML configuration (default: the embedded defaults)")
    parser.add_argument("--state-directory", "--state-dir", dest="state_dir", type=Path,
                        metavar="DIR",
                        help="the daemon's state directory (overrides [bms] state_directory)")


def main(args: argparse.Namespace) -> int:
    """Run ``smallbms key``; the key alone goes to stdout so it can be piped."""
    from bms_daemon.store import FileStore  # noqa: PLC0415  (keep `smallbms --help` light)
    from gatt.readout_keys import DOCUMENT, key_from_document  # noqa: PLC0415

    found = _state_directory(args)
    if found is None:
        return EXIT_BAD_CONFIG
    directory, origin = found
    store = FileStore(directory)
    path = store.path(DOCUMENT)
    try:
        # read the file ourselves: the store's load would move a damaged file aside, and this
        # command only reads
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        _error(f"no instant-readout key in {directory} ({origin}): the daemon creates it when its "
               "Bluetooth side first starts. If the daemon runs elsewhere (e.g. as a systemd "
               "service), give its --config or --state-directory.")
        return EXIT_NO_KEY
    except PermissionError:
        _error(f"{path}: permission denied; the key is readable by the daemon's user only "
               "(try sudo)")
        return EXIT_NO_KEY
    except (OSError, UnicodeDecodeError) as exc:
        _error(f"{path}: cannot read: {exc}")
        return EXIT_NO_KEY
    try:
        key = key_from_document(json.loads(text))
    except json.JSONDecodeError:
        key = None
    if key is None:
        _error(f"{path} does not hold a valid key; the daemon replaces it with a new one at its "
               "next start (the old file is kept aside)")
        return EXIT_NO_KEY
    print(key.hex())
    # which daemon's key this is: the trap is another daemon's (Home Assistant: "key does not
    # match"); on stderr, so that `$(smallbms key)` stays the key alone
    _error(f"read from {path} ({origin})")
    return 0


def _state_directory(args: argparse.Namespace) -> tuple[Path, str] | None:
    """The directory and why it is that one; None (after saying why) for a bad config."""
    if args.state_dir is not None:
        return Path(args.state_dir).expanduser(), "--state-directory"
    from bms_daemon import config  # noqa: PLC0415

    try:
        loaded = config.load(args.config)
    except config.ConfigError as exc:
        _error(str(exc))
        return None
    return loaded.state_directory(), loaded.state_directory_origin()


def _error(message: str) -> None:
    print(f"smallbms key: {message}", file=sys.stderr)
