"""The history page and its counting rules (SPEC §2)."""

from __future__ import annotations

import pytest
from core_helpers import Driver, bank

from bms_daemon.core.history import HistoryTracker
from bms_daemon.core.types import History


def walk(tracker: HistoryTracker, *socs: float) -> History:
    for soc in socs:
        tracker.soc(soc, None)
    return tracker.history


@pytest.mark.parametrize(
    ("socs", "cycles"),
    [
        ((100, 60, 95), 1),
        ((100, 70, 95), 0),  # never under 65 %
        ((100, 60, 85, 60, 89), 0),  # never back above 90 %
        ((100, 60, 85, 60, 95), 1),  # one dip, one cycle
        ((100, 60, 95, 60, 95), 2),
        ((60, 90, 90.1), 1),  # "above 90": 90 itself does not count
    ],
)
def test_a_cycle_is_under_65_then_above_90(socs: tuple[float, ...], cycles: int) -> None:
    assert walk(HistoryTracker(), *socs).charge_cycles == cycles


def test_a_synchronisation_counts_only_after_a_dip_under_90() -> None:
    tracker = HistoryTracker()
    tracker.synchronised()
    assert tracker.history.synchronisations == 1  # the first one counts
    walk(tracker, 100, 95, 91)
    tracker.synchronised()
    assert tracker.history.synchronisations == 1
    walk(tracker, 89.9, 100)
    tracker.synchronised()
    tracker.synchronised()
    assert tracker.history.synchronisations == 2


def test_a_full_discharge_counts_once_when_soc_reaches_0() -> None:
    tracker = HistoryTracker()
    assert walk(tracker, 5, 0.1).full_discharges == 0
    assert walk(tracker, 0.0, 0.0, 3, 0.0).full_discharges == 1  # not re-armed under 10 %
    assert walk(tracker, 11, 0.0).full_discharges == 2


def test_deepest_and_last_discharge() -> None:
    tracker = HistoryTracker()
    tracker.soc(70, 30.0)
    tracker.soc(80, 20.0)
    assert tracker.history.deepest_discharge_ah == 30.0
    assert tracker.history.last_discharge_ah == 30.0
    tracker.synchronised()
    assert tracker.history.last_discharge_ah == 0.0
    tracker.soc(90, 10.0)
    assert tracker.history.last_discharge_ah == 10.0
    assert tracker.history.deepest_discharge_ah == 30.0


def test_energy_ah_drawn_and_extremes_through_the_bms() -> None:
    d = Driver(soc=50, tick=10)
    d.prime(bank(cell=3.2, current=10.0))
    d.run(bank(cell=3.2, current=10.0), 3600)  # 12.8 V x 10 A x 1 h
    d.run(bank(cell=3.3, current=-20.0, temperature=30), 1800)  # 13.2 V x 20 A x 0.5 h
    d.run(bank(cell=3.25, temperature=10, faults={(0, 1): 3.0, (0, 2): 3.4}), 60)
    h = d.bms.history()
    assert h.charged_energy_kwh == pytest.approx(0.128)
    assert h.discharged_energy_kwh == pytest.approx(0.132)
    assert h.cumulative_ah_drawn == pytest.approx(10.0)
    assert h.min_bank_voltage == pytest.approx(12.8)
    assert h.max_bank_voltage == pytest.approx(13.2)
    assert h.min_cell_voltage == pytest.approx(3.0)
    assert h.max_cell_voltage == pytest.approx(3.4)
    assert (h.min_temperature, h.max_temperature) == (10, 30)


def test_time_since_full_charge_accumulates_from_the_sync() -> None:
    d = Driver(soc=95)
    d.run(bank(current=-5.0), 100)
    assert d.bms.history().seconds_since_full_charge is None
    d.run_until(bank(cell=3.5, current=1.0), lambda s: s.soc == 100.0, 600)
    d.run(bank(current=-5.0), 3600)
    d.run(None, 60)  # time passes without data too
    since = d.bms.history().seconds_since_full_charge
    assert since == pytest.approx(3660.0)


def test_reset_history_command() -> None:
    d = Driver(soc=50)
    d.run(bank(current=-30.0), 600)
    assert d.bms.history().cumulative_ah_drawn > 0
    assert d.bms.command("reset_history", None, d.now) == "history reset"
    assert d.bms.history() == History()
    assert d.bms.status.soc is not None  # SOC is kept


def test_history_returns_a_copy() -> None:
    d = Driver(soc=50)
    d.run(bank(current=-30.0), 60)
    copy = d.bms.history()
    copy.charge_cycles = 99
    copy.extra["x"] = 1.0
    assert d.bms.history().charge_cycles == 0
    assert d.bms.history().extra == {}
