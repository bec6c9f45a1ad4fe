"""The rest voltage (open-circuit voltage, OCV) of one LiFePO4 cell as a function of its SOC.

Why a table: LFP's OCV curve is flat between about 20 % and 90 % (3.25-3.34 V) and steep at
both ends, so a formula either misses the knees or costs more than a lookup.  The simulated
cells need it every tick, so the breakpoints are resampled once, at import, onto an evenly
spaced grid; a lookup is then one multiplication and one interpolation, no search.

Source of the numbers (research/ecosystem.md §1.6): a generic 25 °C LFP pseudo-OCV, the mean
of the charge and discharge branches, shaped after published LFP cell data
such as the Lithium Werks APR18650M1B tables in ``soorajsunil/Piecewise-Battery-OCV`` and the
Victron figures of research/ng-manuals.md (2.8 V/cell end of discharge, 3.375 V float, about
3.55 V per cell at the 14.2 V absorption voltage).  The values are ours, rounded; they are meant
to put the BMS thresholds (pre-alarm 3.10 V, under-voltage 2.80 V, over-voltage 3.75 V) at the
SOCs where a real bank meets them, not to model one particular cell.  Beyond 100 % the curve
rises steeply so that an over-charged cell trips the cell over-voltage rule as a real one does.

Near full there are two curves.  Just after a charge (the *charge branch*, ``OCV_BREAKPOINTS``)
a full cell sits at the absorption voltage, which is what lets a CC/CV charge taper; after a rest
(the *rest branch*, ``OCV_REST_BREAKPOINTS``) the same cell has relaxed to about 3.45 V (13.8 V
per 12.8 V battery), as a full LFP battery does once the charger is off.  Below
``HYSTERESIS_BELOW_SOC`` the two curves are one; the physics moves each cell between them.
"""

from __future__ import annotations

import itertools

# (SOC %, rest voltage V) for one cell at 25 °C.
OCV_BREAKPOINTS: tuple[tuple[float, float], ...] = (
    (-1.0, 2.00),
    (0.0, 2.50),
    (0.5, 2.80),
    (1.0, 2.95),
    (2.0, 3.05),
    (5.0, 3.15),
    (10.0, 3.20),
    (15.0, 3.23),
    (20.0, 3.25),
    (30.0, 3.275),
    (40.0, 3.29),
    (50.0, 3.30),
    (60.0, 3.305),
    (70.0, 3.315),
    (80.0, 3.33),
    (90.0, 3.34),
    (95.0, 3.35),
    (97.5, 3.37),
    (99.0, 3.40),
    (99.5, 3.44),
    (99.8, 3.50),
    (100.0, 3.60),
    (100.5, 3.80),
    (101.0, 4.20),
)

# The rest branch: the same curve up to HYSTERESIS_BELOW_SOC, lower above it.
HYSTERESIS_BELOW_SOC = 99.0
OCV_REST_BREAKPOINTS: tuple[tuple[float, float], ...] = (
    *(p for p in OCV_BREAKPOINTS if p[0] <= HYSTERESIS_BELOW_SOC),
    (99.5, 3.42),
    (99.8, 3.44),
    (100.0, 3.45),
    (100.5, 3.70),
    (101.0, 4.20),
)

OCV_GRID_STEP = 0.05  # % between resampled points: fine enough for the 0.5 % knees
_SOC_MIN = OCV_BREAKPOINTS[0][0]
_SOC_MAX = OCV_BREAKPOINTS[-1][0]


def _interpolate(points: tuple[tuple[float, float], ...], soc: float) -> float:
    """Piecewise-linear OCV between the breakpoints (used only to build the grids)."""
    for (s0, v0), (s1, v1) in itertools.pairwise(points):
        if soc <= s1:
            return v0 + (v1 - v0) * (soc - s0) / (s1 - s0)
    return points[-1][1]


def _build_grid(points: tuple[tuple[float, float], ...]) -> tuple[float, ...]:
    count = round((_SOC_MAX - _SOC_MIN) / OCV_GRID_STEP) + 1
    return tuple(_interpolate(points, _SOC_MIN + i * OCV_GRID_STEP) for i in range(count))


_GRID = _build_grid(OCV_BREAKPOINTS)
_REST_GRID = _build_grid(OCV_REST_BREAKPOINTS)
_LAST = len(_GRID) - 2
_SCALE = 1.0 / OCV_GRID_STEP


def ocv(soc_percent: float, *, rested: bool = False) -> float:
    """Rest voltage of one cell at ``soc_percent`` (clamped to the table's ends), on the
    charge branch, or on the rest branch when ``rested``."""
    grid = _REST_GRID if rested else _GRID
    x = (soc_percent - _SOC_MIN) * _SCALE
    if x <= 0.0:
        return grid[0]
    i = int(x)
    if i > _LAST:
        return grid[-1]
    v0 = grid[i]
    return v0 + (grid[i + 1] - v0) * (x - i)


def ocv_many(socs: list[float], *, rested: bool = False) -> list[float]:
    """:func:`ocv` of many cells at once (the simulated bank's hot loop: one call per step)."""
    grid = _REST_GRID if rested else _GRID
    last = _LAST
    out: list[float] = []
    append = out.append
    for soc in socs:
        x = (soc - _SOC_MIN) * _SCALE
        if x <= 0.0:
            append(grid[0])
            continue
        i = int(x)
        if i > last:
            append(grid[-1])
            continue
        v0 = grid[i]
        append(v0 + (grid[i + 1] - v0) * (x - i))
    return out


def soc_at_rest(voltage: float) -> float:
    """Inverse of :func:`ocv` (rest branch) between 0 and 100 %: the SOC at ``voltage``.

    Used to start a bank from a cell voltage and by tests; the flat middle makes the answer
    very sensitive to millivolts there, which is exactly why the BMS must not rely on it.
    """
    points = [p for p in OCV_REST_BREAKPOINTS if 0.0 <= p[0] <= 100.0]
    if voltage <= points[0][1]:
        return 0.0
    for (s0, v0), (s1, v1) in itertools.pairwise(points):
        if voltage <= v1:
            return s0 + (s1 - s0) * (voltage - v0) / (v1 - v0)
    return 100.0
