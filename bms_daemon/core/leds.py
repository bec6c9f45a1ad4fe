"""The two LEDs of the manual [5.2], derived from the BLE state and the active codes.

Blue shows Bluetooth: off (disabled or not advertising), blinking (advertising, nobody
connected), solid (a central is connected).  Red shows trouble: off (nothing), blinking (at
least one warning), solid (an alarm or an error; they outrank warnings).
"""

from __future__ import annotations

from bms_daemon.core.types import Code, Inputs, Leds, LedState

# The nine possible LED pairs, built once: the control loop calls leds() every step.
_LEDS = {(blue, red): Leds(blue, red) for blue in LedState for red in LedState}


def blue_led(inputs: Inputs) -> LedState:
    """Solid when connected, blinking while advertising, otherwise off."""
    if inputs.ble_connected:
        return LedState.ON
    if inputs.ble_advertising:
        return LedState.BLINK
    return LedState.OFF


def red_led(warnings: tuple[Code, ...], alarms: tuple[Code, ...], errors: tuple[Code, ...]) -> (
    LedState
):
    """Solid for any alarm or error, blinking for warnings only, otherwise off."""
    if alarms or errors:
        return LedState.ON
    if warnings:
        return LedState.BLINK
    return LedState.OFF


def leds(
    inputs: Inputs, warnings: tuple[Code, ...], alarms: tuple[Code, ...], errors: tuple[Code, ...]
) -> Leds:
    """Both LEDs at once (a shared, immutable instance)."""
    return _LEDS[(blue_led(inputs), red_led(warnings, alarms, errors))]
