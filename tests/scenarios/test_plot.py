"""What the plot shows a person: events, thresholds, days on long runs, SOC vs true SOC."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import matplotlib.pyplot as plt
import pytest

from bms_daemon.core.settings import Settings
from bms_daemon.plot import figure
from bms_daemon.simulate import Sample

HOUR = 3600.0


def sample(t: float, **changes: Any) -> Sample:
    values: dict[str, Any] = {
        "t": t, "soc": 50.0, "true_soc": 52.0, "voltage": 13.2, "current": -10.0,
        "load": True, "charger": True, "prealarm": False, "min_cell": 3.3, "max_cell": 3.31,
        "codes": (), "synchronisations": 0,
    }
    values.update(changes)
    return Sample(**values)


@pytest.fixture
def drawn() -> Iterator[list[Any]]:
    figures: list[Any] = []
    yield figures
    for fig in figures:
        plt.close(fig)


def _draw(drawn: list[Any], samples: list[Sample], **kwargs: Any) -> Any:
    fig = figure(samples, "t", **kwargs)
    drawn.append(fig)
    return fig


def _hlines(ax: Any) -> set[float]:
    return {round(line.get_ydata()[0], 3) for line in ax.get_lines()
            if len(set(line.get_ydata())) == 1 and line.get_linestyle() == "--"}


def test_thresholds_are_drawn_and_labelled(drawn: list[Any]) -> None:
    fig = _draw(drawn, [sample(0.0), sample(HOUR)],
                settings=Settings().with_values({"low_soc_warning": 30, "discharge_floor": 15}))
    ax_soc, ax_cell = fig.axes[:2]
    assert _hlines(ax_soc) == {30.0, 15.0}
    assert _hlines(ax_cell) == {3.75, 3.1, 2.8}
    labels = [text.get_text() for ax in fig.axes[:2] for text in ax.texts]
    assert "floor 15 %: LOAD floats" in labels
    assert any(label.startswith("under-voltage 2.80 V") for label in labels)


def test_legend_explains_bms_soc_against_true_soc(drawn: list[Any]) -> None:
    fig = _draw(drawn, [sample(0.0, soc=None), sample(HOUR, synchronisations=1, soc=100.0)])
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert any(text.startswith("BMS SOC: counted from the measured current") for text in legend)
    assert any(text.startswith("true SOC") for text in legend)
    assert any("sync closes it" in text for text in legend)
    assert any(text.startswith("synchronisation") for text in legend)  # it happened
    assert any("SOC unknown" in text for text in legend)  # the first sample had none


def test_codes_and_output_switches_are_marked(drawn: list[Any]) -> None:
    samples = [
        sample(0.0),
        sample(HOUR, prealarm=True, codes=("W-B07",)),
        sample(2 * HOUR, prealarm=True, load=False, codes=("A-B07",)),
        sample(3 * HOUR, prealarm=True, load=False, codes=("A-B07",)),
    ]
    fig = _draw(drawn, samples)
    assert len(fig.axes) == 5  # a codes panel, because codes were raised
    codes = fig.axes[4]
    assert [t.get_text() for t in codes.get_yticklabels()] == ["W-B07 Low SOC", "A-B07 Low SOC"]
    bars = [bar.get_paths() for bar in codes.collections]
    assert len(bars) == 2
    switches = {line.get_xdata()[0] for line in fig.axes[2].get_lines()
                if line.get_linestyle() == ":"}
    assert switches == {1.0, 2.0}  # hours: pre-alarm rose, LOAD floated


def test_a_quiet_run_has_no_codes_panel(drawn: list[Any]) -> None:
    assert len(_draw(drawn, [sample(0.0), sample(HOUR)]).axes) == 4


def test_long_runs_are_drawn_in_days(drawn: list[Any]) -> None:
    month = [sample(day * 86400.0) for day in range(31)]
    fig = _draw(drawn, month)
    assert fig.axes[-1].get_xlabel() == "time (days)"
    assert fig.axes[0].get_lines()[0].get_xdata()[-1] == 30.0
    assert _draw(drawn, [sample(0.0), sample(47 * HOUR)]).axes[-1].get_xlabel() == "time (h)"
