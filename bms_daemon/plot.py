"""``smallbms simulate --plot FILE.png``: SOC, voltage, current and the three outputs over time.

matplotlib is optional (``pip install 'smallbms[plot]'``) and heavy, so it is imported only
here and only when a plot is asked for; ``check_plotting`` runs before the simulation so that a
missing matplotlib or an unwritable file is reported at once, not after a long run.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bms_daemon.simulate import Sample

PLOT_SIZE_IN = (11.0, 8.0)
PLOT_DPI = 100
_SUFFIXES = (".png", ".svg", ".pdf")


class PlotError(Exception):
    """The plot cannot be made; the message says what to do."""


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


def plot_run(samples: Sequence[Sample], path: Path, title: str = "") -> None:
    """Draw the samples into ``path`` (written atomically: a temporary file, then renamed)."""
    check_plotting(path)
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    hours = [s.t / 3600.0 for s in samples]
    fig, (ax_soc, ax_v, ax_i, ax_out) = plt.subplots(
        4, 1, sharex=True, figsize=PLOT_SIZE_IN,
        gridspec_kw={"height_ratios": [3, 2, 2, 2]},
    )
    ax_soc.plot(hours, [s.true_soc for s in samples], label="true SOC", color="0.6")
    ax_soc.plot(hours, [_nan(s.soc) for s in samples], label="BMS SOC", color="tab:blue")
    ax_soc.set_ylabel("SOC %")
    ax_soc.set_ylim(-2, 105)
    ax_soc.legend(loc="lower left")
    ax_v.plot(hours, [_nan(s.voltage) for s in samples], color="tab:red")
    ax_v.set_ylabel("bank V")
    ax_i.plot(hours, [_nan(s.current) for s in samples], color="tab:green")
    ax_i.axhline(0.0, color="0.8", linewidth=0.8)
    ax_i.set_ylabel("current A")
    for offset, (name, values) in enumerate(
        (
            ("LOAD", [s.load for s in samples]),
            ("CHARGER", [s.charger for s in samples]),
            ("PRE-ALARM", [s.prealarm for s in samples]),
        )
    ):
        base = 2 * (2 - offset)  # floating at base, high at base + 1
        ax_out.axhline(base, color="0.9", linewidth=0.8)
        ax_out.step(hours, [base + (1.0 if v else 0.0) for v in values], where="post", label=name)
    ax_out.set_yticks([0.5, 2.5, 4.5], ["PRE-ALARM", "CHARGER", "LOAD"])
    ax_out.set_ylim(-0.5, 5.5)
    ax_out.set_ylabel("up = high")
    ax_out.set_xlabel("time (h)")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    temporary = path.with_name(f".{path.name}.tmp{path.suffix}")
    try:
        fig.savefig(temporary, dpi=PLOT_DPI)
        temporary.replace(path)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise PlotError(f"--plot {path}: cannot write: {exc.strerror or exc}") from None
    finally:
        plt.close(fig)


def _nan(value: float | None) -> float:
    return float("nan") if value is None else value
