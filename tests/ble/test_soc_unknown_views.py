"""SOC unknown (a fresh daemon, never synchronised nor set), seen through every view: our own
tools say "unknown"; the formats without an "unknown" (SIG Battery Level, the instant readout
as others decode it) carry the one documented figure, 100 %."""

from __future__ import annotations

import json

import pytest
from ble_harness import CENTRAL, DaemonUnderTest

from gatt.client import scan
from gatt.codec import SOC_SENT_WHEN_UNKNOWN

pytestmark = pytest.mark.ble

DAEMON_SOURCE = {"soc": 60.0}  # a plain simulated bank: known_soc false, so SOC unknown


def test_every_view_of_an_unknown_soc(bms: DaemonUnderTest) -> None:
    with bms.session() as c:
        assert bms.run(c.status()).soc is None  # GATT status: n/a
        assert bms.run(c.battery_level()) == SOC_SENT_WHEN_UNKNOWN == 100  # as the readout
        key = bms.run(c.readout_key())
    status = bms.cli("--json", "status")
    assert json.loads(status.stdout)["soc"] is None
    assert "State of charge     unknown" in bms.cli("status").stdout
    watched = bms.cli("watch", "--count", "1")
    assert watched.stdout.startswith("soc=unknown "), watched.stdout
    found = bms.run(scan(duration=1.5, adapter=CENTRAL, key=key))
    ours = [r for r in found if r.address == bms.address]
    assert ours, found
    assert ours[0].readout is not None, ours[0].readout_note
    assert ours[0].readout["soc"] is None  # decoded by us: unknown, not 100
    scanned = bms.cli("scan", "--key", key.hex(), "--timeout", "1.5", device=False)
    assert "soc=unknown" in scanned.stdout, scanned.stdout
