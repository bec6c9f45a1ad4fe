"""A day of loads and charging for the simulated bank: what makes the embedded demo move.

Without it the default daemon shows a bank at rest (0.00 A, the same line forever).  The
``daily`` profile is the day of a small off-grid system, in C-rates of the bank so that it fits
any size: evening loads that take a low battery through the pre-alarm to the discharge floor,
a night at rest, morning loads, a daytime charger (solar) that fills the bank to a
synchronisation, a quiet afternoon.  Pure: the time of day is passed in.
"""

from __future__ import annotations

from dataclasses import dataclass

DAY_S = 86400.0
PROFILES = ("constant", "daily")  # constant = the table's `load` and `charge`, all day


@dataclass(frozen=True, slots=True)
class Period:
    """From ``start_h`` (hour of the day) to the next period's start."""

    start_h: float
    load_c: float  # loads, A per Ah of bank capacity (drawn while LOAD is high)
    charge_c: float  # the charger's CC current, A per Ah (offered while CHARGER is high)
    name: str


# Ours: a day that shows each output at work, and a full charge (so a sync) every day.
DAILY: tuple[Period, ...] = (
    Period(0.0, 0.005, 0.0, "night at rest"),
    Period(7.0, 0.06, 0.0, "morning loads"),
    Period(9.0, 0.02, 0.25, "daytime charger"),
    Period(16.0, 0.03, 0.0, "afternoon"),
    Period(18.0, 0.12, 0.0, "evening loads"),
    Period(23.0, 0.005, 0.0, "night at rest"),
)


# Loads are not a flat line: within a period they follow this pattern (mean 1), a step every
# LOAD_STEP_S, so the current moves every few minutes as appliances come and go.
LOAD_PATTERN = (1.0, 1.4, 0.8, 1.2, 0.6, 1.0)
LOAD_STEP_S = 300.0


def load_factor(seconds_of_day: float) -> float:
    """The loads' multiplier at ``seconds_of_day`` (LOAD_PATTERN, one step per LOAD_STEP_S)."""
    return LOAD_PATTERN[int(seconds_of_day // LOAD_STEP_S) % len(LOAD_PATTERN)]


def period_at(seconds_of_day: float, periods: tuple[Period, ...] = DAILY) -> Period:
    """The period in force at ``seconds_of_day`` (any number: taken modulo a day)."""
    hour = (seconds_of_day % DAY_S) / 3600.0
    current = periods[-1]
    for period in periods:
        if period.start_h > hour:
            break
        current = period
    return current


def parse_time_of_day(value: object) -> float:
    """Seconds after midnight from "HH:MM" (00:00-23:59); ValueError otherwise."""
    if isinstance(value, str):
        hours, _, minutes = value.strip().partition(":")
        if hours.isdigit() and minutes.isdigit() and len(minutes) == 2:
            h, m = int(hours), int(minutes)
            if h < 24 and m < 60:
                return h * 3600.0 + m * 60.0
    raise ValueError(f'must be a time of day "HH:MM" such as "18:00", not {value!r}')
