"""Battery sources: where the BMS gets its battery data from (SPEC §7; docs/sources.md).

``create_source`` builds the source named by the configuration's ``[source]`` table:

* ``"simulated"`` (the default): the closed-loop simulated bank of SPEC §8;
* ``"can"``: a BMS on CAN bus (``sources.can``), cells, voltage and current;
* ``"vedirect"``: a SmartShunt / BMV (``sources.vedirect``): current and voltage only, so it
  is valid only as a feed of a combined source;
* ``"victron-ble"``: Victron Smart Lithium batteries and a SmartShunt / BMV heard over
  Bluetooth (``sources.victron``, docs/victron-bluetooth.md);
* ``"combined"``: several feeds, the configuration naming which provides the cells, the bank
  current and the bank voltage (``sources.spec``).

The contract every source follows is in ``sources.base``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bms_daemon.sources.base import BatterySource, LiveSource

SOURCE_TYPES = ("simulated", "can", "vedirect", "victron-ble", "combined")

__all__ = ["SOURCE_TYPES", "BatterySource", "LiveSource", "comms_delays", "create_source"]


def create_source(table: Mapping[str, Any]) -> BatterySource:
    """The battery source described by ``table`` (the ``[source]`` table of the config).

    Raises ValueError naming the bad key, e.g. "[source] soc: must be between 0 and 100, not
    120".  Modules are imported here, not at the top, so ``smallbms --help`` stays light.
    """
    source_type = table.get("type", "simulated")
    if source_type == "simulated":
        from bms_daemon.sources.config import SimulatedBankConfig  # noqa: PLC0415
        from bms_daemon.sources.simulated import SimulatedBank  # noqa: PLC0415

        config = SimulatedBankConfig.from_table(
            table, "[source]", ignore=frozenset({"type", "comms_warning", "comms_alarm"})
        )
        comms_delays(table)
        return SimulatedBank(config)
    if source_type in SOURCE_TYPES:
        from bms_daemon.sources.spec import create_real_source  # noqa: PLC0415

        return create_real_source(table)
    raise ValueError(
        f"[source] type: unknown source type {source_type!r}; known: {', '.join(SOURCE_TYPES)}"
    )


def comms_delays(table: Mapping[str, Any]) -> tuple[float, float]:
    """``[source] comms_warning`` and ``comms_alarm`` in seconds (defaults 5 s and 20 s)."""
    from bms_daemon.sources.spec import comms_delays as parse  # noqa: PLC0415

    delays = parse(table)
    return delays.warning_s, delays.alarm_s
