"""Fixtures of the BLE integration tests: one daemon per test module (see ble_harness).

A module may set ``DAEMON_SOURCE`` / ``DAEMON_SETTINGS`` (dicts) to shape its daemon's
simulated bank and seed settings.  Tests must leave the daemon as they found it (restore what
they change), so that they pass in any order.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from ble_harness import DaemonUnderTest, running_daemon


@pytest.fixture(scope="module")
def bms(request: pytest.FixtureRequest,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonUnderTest]:
    directory = tmp_path_factory.mktemp("smallbms")
    with running_daemon(
        directory,
        source=getattr(request.module, "DAEMON_SOURCE", None),
        settings=getattr(request.module, "DAEMON_SETTINGS", None),
    ) as daemon:
        yield daemon
        daemon.assert_alive()
