"""Topic names under one base topic (``smallbms/<serial>`` by default), in one place.

State topics carry JSON and are retained (a new subscriber gets the last value at once);
``result`` is an event (not retained).  Commands arrive on ``set/<setting>`` and
``command/<name>``.  docs/mqtt.md lists them with their payloads.
"""

from __future__ import annotations

from dataclasses import dataclass

# State topics, each a JSON object (bms_daemon.mqtt.payloads), in publishing order.
STATE = "state"  # measurements: SOC, voltage, current, power, temperatures, TTG, consumed Ah
OUTPUTS = "outputs"  # LOAD, CHARGER, PRE-ALARM, allowed to charge/discharge, reasons, Mode
CODES = "codes"  # active warnings, alarms and errors with the manual's title and advice
CELLS = "cells"  # each battery's voltage, current, temperature and cell voltages
HISTORY = "history"  # the history counters (energy in kWh)
SETTINGS = "settings"  # the settings in force (never the PIN)
STATE_TOPICS = (STATE, OUTPUTS, CODES, CELLS, HISTORY, SETTINGS)

AVAILABILITY = "status"  # "online" / "offline" (retained; "offline" is also the last will)
RESULT = "result"  # the answer to each command message
SET = "set"  # set/<setting>
COMMAND = "command"  # command/<name>
ONLINE = "online"
OFFLINE = "offline"


@dataclass(frozen=True, slots=True)
class Topics:
    """Full topic names for one device."""

    base: str
    discovery_prefix: str = ""  # "" = no Home Assistant discovery

    def __call__(self, name: str) -> str:
        """``base/name``."""
        return f"{self.base}/{name}"

    @property
    def availability(self) -> str:
        return self(AVAILABILITY)

    def setting(self, name: str) -> str:
        """Where a new value for the setting ``name`` is published."""
        return self(f"{SET}/{name}")

    def command(self, name: str) -> str:
        """Where a command is published."""
        return self(f"{COMMAND}/{name}")

    @property
    def subscriptions(self) -> tuple[str, ...]:
        """Command wildcards (only subscribed when control is allowed)."""
        return (self(f"{SET}/+"), self(f"{COMMAND}/+"))

    @property
    def birth(self) -> str:
        """Home Assistant's birth topic: "online" there means "send discovery again"."""
        return f"{self.discovery_prefix}/status"

    def relative(self, topic: str) -> str | None:
        """``set/mode`` for ``base/set/mode``; None for a topic outside the base."""
        prefix = self.base + "/"
        return topic[len(prefix):] if topic.startswith(prefix) else None
