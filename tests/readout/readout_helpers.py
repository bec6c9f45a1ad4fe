"""Shared builders for the instant-readout tests: statuses, keys and a victron-ble decode."""

from __future__ import annotations

import dataclasses
from typing import Any

from victron_ble.devices import LynxSmartBMS, LynxSmartBMSData, detect_device_type

from bms_daemon.core.types import Code, Leds, Outputs, Reason, Status

KEY = bytes.fromhex("0df4d0395b7d1a876c0c33ecb9e70dcd")


def make_status(**changes: Any) -> Status:
    """A healthy discharging 12 V bank; ``changes`` override any field."""
    base = Status(
        t=100.0,
        soc=80.0,
        soc_synchronised=True,
        mode=True,
        remote=True,
        voltage=13.21,
        current=-5.0,
        power=-66.05,
        consumed_ah=20.0,
        ttg_min=840.0,
        allowed_to_charge=True,
        charge_reason=None,
        allowed_to_discharge=True,
        discharge_reason=None,
        outputs=Outputs(load=True, charger=True, prealarm=False),
        leds=Leds(),
        temperature=25.0,
    )
    return dataclasses.replace(base, **changes)


# The scenarios of the issue, as the core would report them (SPEC §1, §4, §5).
SCENARIOS: dict[str, Status] = {
    "normal": make_status(),
    "pre-alarm": make_status(
        warnings=(Code.W_B01,),
        discharge_reason=Reason.CELL_PRE_ALARM,
        outputs=Outputs(load=True, charger=True, prealarm=True),
    ),
    "load disconnect": make_status(
        soc=9.5,
        alarms=(Code.A_B07,),
        warnings=(Code.W_B07,),
        allowed_to_discharge=False,
        discharge_reason=Reason.DISCHARGE_FLOOR,
        outputs=Outputs(load=False, charger=True, prealarm=True),
        current=0.0,
        ttg_min=None,
    ),
    "cold": make_status(
        temperature=3.0,
        allowed_to_charge=False,
        charge_reason=Reason.COLD,
        outputs=Outputs(load=True, charger=False, prealarm=False),
    ),
    "comms lost": make_status(
        alarms=(Code.A_B05,),
        warnings=(Code.W_B05,),
        voltage=None,
        current=None,
        power=None,
        ttg_min=None,
        temperature=None,
        allowed_to_charge=False,
        charge_reason=Reason.COMMS_LOST,
        allowed_to_discharge=False,
        discharge_reason=Reason.COMMS_LOST,
        outputs=Outputs.safe(),
    ),
}


def victron_decode(data: bytes, key: bytes = KEY) -> LynxSmartBMSData:
    """Decode manufacturer data exactly as Home Assistant's parser does (victron-ble)."""
    parser_class = detect_device_type(data)
    assert parser_class is LynxSmartBMS
    result = parser_class(key.hex()).parse(data)
    assert isinstance(result, LynxSmartBMSData)
    return result
