"""The guest-side programs of tests/e2e/guest are plain scripts (they run inside qemu guests
with the script's folder on sys.path); the virtual-bus agreement tests import them the same way,
and run the daemon on the virtual bus with tests/ble's harness."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent / "guest"))
sys.path.insert(0, str(Path(__file__).parent.parent / "ble"))  # ble_harness: daemon on the bus
