"""The real daemon on the virtual bus answers an invalid write exactly as it did on real BlueZ
in the e2e tier (guest/real_bluez.py): same exit status, same message for the user."""

from __future__ import annotations

from pathlib import Path

import pytest
from ble_harness import running_daemon
from real_bluez import INVALID_WRITE_ARGS, INVALID_WRITE_EXIT, INVALID_WRITE_MESSAGE

pytestmark = pytest.mark.ble


def test_invalid_write_is_rejected_as_on_real_bluez(tmp_path: Path) -> None:
    with running_daemon(tmp_path) as bms:
        refused = bms.cli(*INVALID_WRITE_ARGS)
        assert (refused.returncode, refused.stderr.strip()) == (
            INVALID_WRITE_EXIT, INVALID_WRITE_MESSAGE)
