"""Battery sources: where the BMS gets its battery data from (SPEC §7).

``create_source`` builds the source named by the configuration's ``[source]`` table.  Today
there is one type, ``"simulated"`` (the closed-loop simulated bank of SPEC §8); a reader for real
Lithium NG batteries would be another module here and one more entry in ``SOURCE_TYPES``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bms_daemon.sources.base import BatterySource

SOURCE_TYPES = ("simulated",)

__all__ = ["SOURCE_TYPES", "BatterySource", "create_source"]


def create_source(table: Mapping[str, Any]) -> BatterySource:
    """The battery source described by ``table`` (the ``[source]`` table of the config).

    Raises ValueError naming the bad key, e.g. "[source] soc: must be between 0 and 100, not
    120".  Modules are imported here, not at the top, so ``smallbms --help`` stays light.
    """
    source_type = table.get("type", "simulated")
    if source_type == "simulated":
        from bms_daemon.sources.config import SimulatedBankConfig  # noqa: PLC0415
        from bms_daemon.sources.simulated import SimulatedBank  # noqa: PLC0415

        config = SimulatedBankConfig.from_table(table, "[source]", ignore=frozenset({"type"}))
        return SimulatedBank(config)
    raise ValueError(
        f"[source] type: unknown source type {source_type!r}; known: {', '.join(SOURCE_TYPES)}"
    )
