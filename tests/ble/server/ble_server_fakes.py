"""Fakes for the BLE server tests: a DeviceControl, a GATT server, a config and a clock."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bms_daemon.core.settings import SettingError, Settings
from bms_daemon.core.types import (
    BalancerState,
    BankStatus,
    BatteryStatus,
    Code,
    History,
    Leds,
    LedState,
    Outputs,
    Reason,
    Status,
)
from bms_daemon.device import StatusListener
from gatt import profile


def sample_status(**changes: Any) -> Status:
    """A plausible status of a 2S2P 12.8 V bank."""
    battery = BatteryStatus(serial="HQ2231ABCDE", model="12.8V-200Ah", capacity_ah=200.0,
                            firmware="v1.12", voltage=13.31, current=-2.5, temperature=21.5,
                            cell_voltages=(3.327, 3.329, 3.331, 3.323))
    bank = BankStatus(model="12.8V-200Ah", batteries=4, cells=16, series=2, parallel=2,
                      capacity_ah=400.0, min_cell_voltage=3.323, max_cell_voltage=3.331,
                      min_temperature=21.0, max_temperature=22.5,
                      balancer=BalancerState.BALANCED,
                      battery_list=tuple(dataclasses.replace(battery, serial=f"HQ2231ABC{i}")
                                         for i in range(4)))
    status = Status(t=100.0, soc=87.25, soc_synchronised=True, mode=True, remote=True,
                    voltage=26.62, current=-10.0, power=-266.2, consumed_ah=52.0, ttg_min=2400,
                    allowed_to_charge=True, charge_reason=None, allowed_to_discharge=True,
                    discharge_reason=Reason.LOW_SOC,
                    outputs=Outputs(load=True, charger=True, prealarm=True),
                    leds=Leds(blue=LedState.BLINK, red=LedState.BLINK),
                    warnings=(Code.W_B07,), bank=bank, temperature=22.5)
    return dataclasses.replace(status, **changes)


class FakeDevice:
    """A DeviceControl that keeps settings and records commands, validated like the core."""

    def __init__(self, status: Status | None = None) -> None:
        self._status = status or sample_status()
        self._settings = Settings()
        self._history = History(deepest_discharge_ah=120.5, charge_cycles=7,
                                seconds_since_full_charge=3600.0)
        self.listeners: list[StatusListener] = []
        self.commands: list[tuple[str, float | None]] = []

    def status(self) -> Status:
        return self._status

    def history(self) -> History:
        return dataclasses.replace(self._history)

    def settings(self) -> Settings:
        return self._settings

    def set_setting(self, name: str, value: object) -> Settings:
        self._settings = self._settings.with_value(name, value)
        return self._settings

    def command(self, name: str, argument: float | None = None) -> str:
        if name == "set_soc":
            if argument is None or not 0 <= argument <= 100:
                raise SettingError(f"SOC must be 0-100 %, not {argument}")
            self._status = dataclasses.replace(self._status, soc=argument)
        elif name not in ("synchronise", "reset_history", "factory_reset"):
            raise SettingError(f"unknown command {name}")
        self.commands.append((name, argument))
        return f"{name} done"

    def subscribe(self, listener: StatusListener) -> Callable[[], None]:
        self.listeners.append(listener)
        return lambda: self.listeners.remove(listener)

    def publish(self, status: Status) -> None:
        """What the control loop does after each step."""
        self._status = status
        for listener in list(self.listeners):
            listener(status)


@dataclass
class FakeConfig:
    enabled: bool = True
    adapter: str = "hci0"
    name: str = "smallBMS NG"
    product_id: int = 0xA3EC
    virtual: str = "auto"
    vereg: bool = True


@dataclass
class Clock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class FakeServer:
    """Stands in for gatt.server.GattServer: records what the service asks of BlueZ."""

    name: str
    adapter: str
    on_read: Callable[..., bytes]  # (key, central="")
    on_write: Callable[..., None]  # (key, data, central="")
    on_connections: Callable[[frozenset[str]], None]
    on_lost: Callable[[], None]
    services: tuple[profile.Service, ...] = profile.SERVICES
    advertising: bool = False
    stopped: bool = False
    notified: list[tuple[str, bytes]] = field(default_factory=list)
    manufacturer: list[tuple[int, bytes | None]] = field(default_factory=list)
    fail_start: bool = False

    async def start(self, manufacturer: tuple[int, bytes] | None = None) -> None:
        if self.fail_start:
            raise RuntimeError("org.bluez not on the bus")
        self.manufacturer.append(manufacturer if manufacturer else (0, None))
        self.advertising = True

    async def stop(self) -> None:
        self.stopped = True
        self.advertising = False

    def notify(self, key: str, value: bytes) -> None:
        self.notified.append((key, value))

    def set_manufacturer_data(self, company_id: int, data: bytes | None) -> None:
        self.manufacturer.append((company_id, data))


class ServerFactory:
    """Makes FakeServers and keeps them, so tests can reach the current one."""

    def __init__(self) -> None:
        self.servers: list[FakeServer] = []
        self.fail = False

    def __call__(self, **kwargs: Any) -> FakeServer:
        server = FakeServer(**kwargs, fail_start=self.fail)
        self.servers.append(server)
        return server

    @property
    def current(self) -> FakeServer:
        return self.servers[-1]
