"""Settings of the virtual BlueZ (no D-Bus imports: the CLI's --help reads them)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

PAIRING_MODES = ("just-works", "authenticated", "reject")


@dataclass(frozen=True)
class WorldConfig:
    """Choices of the emulated controllers; every number here is ours, not BlueZ's."""

    adapters: int = 2
    mtu: int = 247
    """ATT MTU of every link (a phone typically negotiates 185-517; 247 = one LE data PDU)."""
    report_interval: float = 0.1
    """Seconds between advertising reports while a central discovers."""
    rssi: int = -50
    pairing: str = "just-works"
    """What Device1.Pair achieves: an encrypted link (just-works), an authenticated one, or
    a refusal (reject)."""
    experimental: bool = False
    """bluetoothd ``--experimental``: adapters offer AdvertisementMonitorManager1 (passive
    scanning), which BlueZ 5.66 creates only then."""

    def __post_init__(self) -> None:
        if not 1 <= self.adapters <= 16:
            raise ValueError(f"adapters must be 1..16, not {self.adapters}")
        if not 23 <= self.mtu <= 517:
            raise ValueError(f"mtu must be 23..517 (ATT limits), not {self.mtu}")
        if self.report_interval <= 0:
            raise ValueError("report_interval must be positive")
        if not -127 <= self.rssi <= 20:
            raise ValueError(f"rssi must be -127..20 dBm, not {self.rssi}")
        if self.pairing not in PAIRING_MODES:
            raise ValueError(
                f"pairing must be one of {', '.join(PAIRING_MODES)}, not {self.pairing!r}"
            )


def add_world_options(parser: argparse.ArgumentParser) -> None:
    """The options shared by ``smallbms virtual-bus`` and ``python -m gatt.virtual.service``."""
    defaults = WorldConfig()
    parser.add_argument(
        "--adapters",
        type=int,
        default=defaults.adapters,
        help="number of adapters hci0..hciN-1 (default %(default)s: hci0 peripheral, hci1 central)",
    )
    parser.add_argument(
        "--mtu", type=int, default=defaults.mtu, help="ATT MTU of every link (default %(default)s)"
    )
    parser.add_argument(
        "--pairing",
        choices=PAIRING_MODES,
        default=defaults.pairing,
        help="what Device1.Pair achieves (default %(default)s)",
    )
    parser.add_argument(
        "--report-interval",
        type=float,
        default=defaults.report_interval,
        help="seconds between advertising reports while scanning (default %(default)s)",
    )
    parser.add_argument(
        "--rssi",
        type=int,
        default=defaults.rssi,
        help="RSSI (dBm) of the advertising reports, give or take 2 (default %(default)s)",
    )
    parser.add_argument(
        "--experimental",
        action="store_true",
        help="offer BlueZ's experimental interfaces, as bluetoothd --experimental "
        "(AdvertisementMonitorManager1: passive scanning)",
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log every registration and link"
    )


def config_from(args: argparse.Namespace) -> WorldConfig:
    """Raises ValueError with a user-facing message for out-of-range values."""
    return WorldConfig(
        adapters=args.adapters,
        mtu=args.mtu,
        report_interval=args.report_interval,
        rssi=args.rssi,
        pairing=args.pairing,
        experimental=args.experimental,
    )
