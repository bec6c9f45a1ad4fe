"""Each warning, alarm and error code with the manual's title and advice [5.2], in English.

The French manual is the source (rev 04, §5.2); the English wording is our translation, kept
close to the original so that a user comparing with VictronConnect recognises it.  The BLE
client and the command line show these texts next to the code.
"""

from __future__ import annotations

from bms_daemon.core.types import Code

_CHARGE_OR_REDUCE = "Charge the battery or reduce the load to avoid an imminent system shutdown."
_CHARGE_RECONNECT = (
    "Charge the battery. The system will reconnect the loads once the battery is sufficiently "
    "charged."
)
_CHECK_CABLES = "Check the cables between the BMS and the batteries."
_CONFIGURATION = (
    "See the Battery page for details. Check that all the batteries' BMS cables are connected."
)

TITLES: dict[Code, str] = {
    Code.W_B01: "Low cell voltage",
    Code.W_B05: "Battery communication lost",
    Code.W_B07: "Low SOC",
    Code.A_B01: "Low cell voltage",
    Code.A_B05: "Battery communication lost",
    Code.A_B07: "Low SOC",
    Code.A_B08: "Low pack voltage",
    Code.A_B09: "High battery temperature",
    Code.E_B01: "Invalid battery configuration",
    Code.E_B05: "Invalid battery configuration",
    Code.E_B09: "Battery voltage not allowed",
    Code.E_B11: "Hardware error",
}

ADVICE: dict[Code, str] = {
    Code.W_B01: _CHARGE_OR_REDUCE,
    Code.W_B05: _CHECK_CABLES,
    Code.W_B07: _CHARGE_OR_REDUCE,
    Code.A_B01: _CHARGE_RECONNECT,
    Code.A_B05: _CHECK_CABLES,
    Code.A_B07: _CHARGE_RECONNECT,
    Code.A_B08: _CHARGE_RECONNECT,
    Code.A_B09: (
        "The battery temperature is too high for charging. Try to reduce the ambient "
        "temperature."
    ),
    Code.E_B01: _CONFIGURATION,
    Code.E_B05: _CONFIGURATION,
    Code.E_B09: (
        "The battery voltage is too high or too low. Check the battery voltage and the battery "
        "settings."
    ),
    Code.E_B11: "Contact your Victron dealer.",
}


def describe(code: Code) -> str:
    """One line for a user: ``"W-B01 Low cell voltage: Charge the battery or ..."``."""
    return f"{code.value} {TITLES[code]}: {ADVICE[code]}"
