"""``smallbms simulate --plot FILE.png``: what happened over a run, and why, on one page.

Panels, top to bottom, on one time axis (hours, or days for runs longer than two days):

* **SOC**: the BMS's SOC (what the device shows, counted from the measured current) against
  the simulator's true SOC, with the low-SOC warning and the discharge floor, and a dot at each
  synchronisation (where the BMS's SOC is set right again);
* **cells**: the lowest and highest cell, with the thresholds the protection acts on
  (pre-alarm, under-voltage, over-voltage);
* **current**;
* **outputs**: LOAD, CHARGER, PRE-ALARM, up = high;
* **codes** (when any was raised): one bar per warning, alarm or error while it was active.

A thin vertical line across every panel marks each switch of an output, so a cause (a cell
under the pre-alarm line, SOC at the floor) and its effect line up.

matplotlib is optional (``pip install 'smallbms[plot]'``) and heavy, so it is imported only
here and only when a plot is asked for; ``check_plotting`` runs before the simulation so that a
missing matplotlib or an unwritable file is reported at once, not after a long run.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bms_daemon.core.codes import TITLES
from bms_daemon.core.protection import CELL_OV_V, CELL_PREALARM_V, CELL_UV_V
from bms_daemon.core.settings import Settings
from bms_daemon.core.types import Code

if TYPE_CHECKING:
    from bms_daemon.simulate import Sample

PLOT_WIDTH_IN = 12.0
PLOT_DPI = 100
DAYS_FROM_S = 2 * 86400.0  # runs longer than this are drawn in days
MAX_OUTPUT_MARKS = 60  # more output switches than this: the vertical marks would hide the data
_SUFFIXES = (".png", ".svg", ".pdf")
_OUTPUTS = (("LOAD", "load", "tab:blue"), ("CHARGER", "charger", "tab:orange"),
            ("PRE-ALARM", "prealarm", "tab:red"))
_SOC_LEGEND = (
    "BMS SOC: counted from the measured current (what the device shows)",
    "true SOC: the simulated bank's real charge",
    "the gap: sensor error, Peukert, efficiency; a sync closes it",
)


class PlotError(Exception):
    """The plot cannot be made; the message says what to do."""


@dataclass(frozen=True, slots=True)
class _Axis:
    """Time in the unit the run is drawn in."""

    scale: float  # seconds per unit
    label: str

    @classmethod
    def for_run(cls, seconds: float) -> _Axis:
        if seconds > DAYS_FROM_S:
            return cls(86400.0, "time (days)")
        return cls(3600.0, "time (h)")


def check_plotting(path: Path) -> None:
    """Raise PlotError now if ``path`` cannot be drawn later."""
    if path.suffix.lower() not in _SUFFIXES:
        raise PlotError(f"--plot {path}: use a .png, .svg or .pdf file name")
    directory = path.parent if str(path.parent) else Path()
    if not directory.is_dir() or not os.access(directory, os.W_OK):
        raise PlotError(f"--plot {path}: directory {directory} does not exist or is not writable")
    try:
        import matplotlib  # noqa: PLC0415, F401
    except ImportError:
        raise PlotError(
            "--plot needs matplotlib, which is not installed: pip install 'smallbms[plot]' "
            "(or pip install matplotlib)"
        ) from None


def plot_run(
    samples: Sequence[Sample], path: Path, title: str = "", settings: Settings | None = None
) -> None:
    """Draw the samples into ``path`` (written atomically: a temporary file, then renamed)."""
    check_plotting(path)
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig = figure(samples, title, settings)
    temporary = path.with_name(f".{path.name}.tmp{path.suffix}")
    try:
        fig.savefig(temporary, dpi=PLOT_DPI)
        temporary.replace(path)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise PlotError(f"--plot {path}: cannot write: {exc.strerror or exc}") from None
    finally:
        plt.close(fig)


def figure(samples: Sequence[Sample], title: str = "", settings: Settings | None = None) -> Any:
    """The matplotlib figure of a run (the caller closes it)."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    settings = settings or Settings()
    duration = samples[-1].t if samples else 0.0
    axis = _Axis.for_run(duration)
    x = [s.t / axis.scale for s in samples]
    codes = _code_spans(samples, axis)
    ratios = [3, 2, 2, 2] + ([0.6 + 0.35 * len(codes)] if codes else [])
    fig, axes = plt.subplots(
        len(ratios), 1, sharex=True, figsize=(PLOT_WIDTH_IN, 1.2 + 0.8 * sum(ratios)),
        gridspec_kw={"height_ratios": ratios},
    )
    ax_soc, ax_cell, ax_i, ax_out = axes[:4]

    _soc_panel(ax_soc, samples, x, settings)
    _cell_panel(ax_cell, samples, x)
    ax_i.plot(x, [_nan(s.current) for s in samples], color="tab:green", linewidth=1.0)
    ax_i.axhline(0.0, color="0.7", linewidth=0.8)
    ax_i.set_ylabel("current (A)\n+ charging")
    _outputs_panel(ax_out, samples, x)
    if codes:
        _codes_panel(axes[4], codes)
    switches = _output_switches(samples, axis)
    if len(switches) <= MAX_OUTPUT_MARKS:
        for when in switches:
            for ax in axes:
                ax.axvline(when, color="0.55", linewidth=0.6, linestyle=":", zorder=0)
    for ax in axes:
        ax.set_axisbelow(True)
        ax.grid(axis="x", color="0.92", linewidth=0.6)
        ax.margins(x=0.01)
    if axis.scale == 86400.0:
        axes[-1].xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    axes[-1].set_xlabel(axis.label)
    if title:
        fig.suptitle(title)
    fig.align_ylabels(axes)
    fig.tight_layout()
    return fig


def _soc_panel(ax: Any, samples: Sequence[Sample], x: list[float], settings: Settings) -> None:
    ax.plot(x, [_nan(s.soc) for s in samples], color="tab:blue", linewidth=1.0,
            label=_SOC_LEGEND[0], zorder=3)  # on top: where they agree, the BMS's line shows
    ax.plot(x, [s.true_soc for s in samples], color="0.7", linewidth=2.4, label=_SOC_LEGEND[1],
            zorder=2)
    ax.plot([], [], " ", label=_SOC_LEGEND[2])
    _threshold(ax, settings.low_soc_warning, "tab:orange",
               f"low SOC {settings.low_soc_warning:g} %: PRE-ALARM")
    _threshold(ax, settings.discharge_floor, "tab:red",
               f"floor {settings.discharge_floor:g} %: LOAD floats")
    syncs = [(xi, s.soc) for xi, s, before in zip(x[1:], samples[1:], samples, strict=False)
             if s.synchronisations > before.synchronisations]
    if syncs:
        ax.plot([p[0] for p in syncs], [_nan(p[1]) for p in syncs], "o", color="tab:green",
                markersize=4, label="synchronisation: BMS SOC set to 100 %")
    if any(s.soc is None for s in samples):
        ax.plot([], [], " ", label="no blue line: SOC unknown (never synchronised nor set)")
    ax.set_ylabel("SOC (%)")
    ax.set_ylim(-2, 112)
    ax.legend(loc="best", fontsize=7.5, framealpha=0.9)


def _cell_panel(ax: Any, samples: Sequence[Sample], x: list[float]) -> None:
    low = [_nan(s.min_cell) for s in samples]
    high = [_nan(s.max_cell) for s in samples]
    ax.fill_between(x, low, high, color="tab:purple", alpha=0.25, linewidth=0)
    ax.plot(x, low, color="tab:purple", linewidth=1.0, label="lowest / highest cell")
    ax.plot(x, high, color="tab:purple", linewidth=0.6)
    _threshold(ax, CELL_OV_V, "tab:red", f"over-voltage {CELL_OV_V:.2f} V\n(CHARGER floats)")
    _threshold(ax, CELL_PREALARM_V, "tab:orange", f"pre-alarm {CELL_PREALARM_V:.2f} V")
    _threshold(ax, CELL_UV_V, "tab:red", f"under-voltage {CELL_UV_V:.2f} V\n(LOAD floats)")
    ax.set_ylabel("cell (V)")
    ax.set_ylim(2.6, 3.9)
    ax.legend(loc="lower left", fontsize=7.5, framealpha=0.9)


def _outputs_panel(ax: Any, samples: Sequence[Sample], x: list[float]) -> None:
    for row, (_, attribute, color) in enumerate(_OUTPUTS):
        base = 2 * (len(_OUTPUTS) - 1 - row)  # floating at base, high at base + 1
        ax.axhline(base, color="0.9", linewidth=0.8)
        levels = [base + (1.0 if getattr(s, attribute) else 0.0) for s in samples]
        ax.step(x, levels, where="post", color=color, linewidth=1.2)
    ax.set_yticks([2 * i + 0.5 for i in range(len(_OUTPUTS))],
                  [name for name, _, _ in reversed(_OUTPUTS)])
    ax.set_ylim(-0.5, 2 * len(_OUTPUTS) - 0.5)
    ax.set_ylabel("outputs\nup = high")


def _codes_panel(ax: Any, codes: dict[str, list[tuple[float, float]]]) -> None:
    names = sorted(codes, key=_code_order)
    for row, code in enumerate(names):
        color = {"W": "tab:orange", "A": "tab:red"}.get(code[0], "black")
        ax.broken_barh([(start, max(end - start, 0.0)) for start, end in codes[code]],
                       (row - 0.35, 0.7), color=color)
    ax.set_yticks(range(len(names)),
                  [f"{code} {TITLES.get(Code(code), '')}" for code in names], fontsize=8)
    ax.set_ylim(len(names) - 0.5, -0.5)
    ax.set_ylabel("codes")


def _threshold(ax: Any, value: float, color: str, label: str) -> None:
    """A dashed line, labelled beyond the panel's right edge (never over the data)."""
    if value <= 0:
        return  # a disabled SOC rule (0 %) has no line
    ax.axhline(value, color=color, linestyle="--", linewidth=0.9)
    ax.annotate(label, xy=(1.0, value), xycoords=("axes fraction", "data"),
                xytext=(4, 0), textcoords="offset points", ha="left", va="center",
                fontsize=7.5, color=color)


def _code_spans(samples: Sequence[Sample], axis: _Axis) -> dict[str, list[tuple[float, float]]]:
    """Each code's active intervals, in axis units."""
    spans: dict[str, list[tuple[float, float]]] = {}
    since: dict[str, float] = {}
    for s in samples:
        t = s.t / axis.scale
        for code in s.codes:
            since.setdefault(code, t)
        for code in [c for c in since if c not in s.codes]:
            spans.setdefault(code, []).append((since.pop(code), t))
    end = samples[-1].t / axis.scale if samples else 0.0
    for code, start in since.items():
        spans.setdefault(code, []).append((start, end))
    return spans


def _output_switches(samples: Sequence[Sample], axis: _Axis) -> list[float]:
    return [
        s.t / axis.scale
        for s, before in zip(samples[1:], samples, strict=False)
        if (s.load, s.charger, s.prealarm) != (before.load, before.charger, before.prealarm)
    ]


def _code_order(code: str) -> tuple[int, str]:
    return ("WAE".find(code[0]), code)


def _nan(value: float | None) -> float:
    return float("nan") if value is None else value
