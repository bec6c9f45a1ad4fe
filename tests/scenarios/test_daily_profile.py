"""The simulated bank's daily profile: the embedded demo's day, closed loop with the real core."""

from __future__ import annotations

import pytest

from bms_daemon.config import load
from bms_daemon.core.bms import Bms
from bms_daemon.core.types import Inputs
from bms_daemon.scenario import ScenarioError, parse_scenario
from bms_daemon.sources import create_source
from bms_daemon.sources.config import SimulatedBankConfig
from bms_daemon.sources.profile import DAILY, LOAD_PATTERN, parse_time_of_day, period_at
from bms_daemon.sources.simulated import SimulatedBank

HOUR = 3600.0


def test_periods_follow_the_clock_of_the_day() -> None:
    assert period_at(18 * HOUR).name == "evening loads"
    assert period_at(18 * HOUR - 1).name == "afternoon"
    assert period_at(3 * HOUR).name == "night at rest"
    assert period_at(10 * HOUR + 86400 * 5).name == "daytime charger"  # any day
    assert [p.start_h for p in DAILY] == sorted(p.start_h for p in DAILY)
    assert sum(LOAD_PATTERN) / len(LOAD_PATTERN) == pytest.approx(1.0)


@pytest.mark.parametrize("text", ["24:00", "18", "6:5", "noon", "18:60", ""])
def test_start_must_be_a_time_of_day(text: str) -> None:
    with pytest.raises(ValueError, match='"HH:MM"'):
        parse_time_of_day(text)
    with pytest.raises(ValueError, match=r"^\[source\] start: must be a time of day"):
        SimulatedBankConfig.from_table({"profile": "daily", "start": text}, "[source]")


def test_unknown_profile_names_the_choices() -> None:
    with pytest.raises(ValueError, match=r"\[source\] profile: must be one of constant, daily"):
        SimulatedBankConfig.from_table({"profile": "weekly"}, "[source]")


def test_a_scenario_refuses_the_daemon_profile() -> None:
    with pytest.raises(ScenarioError, match=r"\[bank\] profile: is for the daemon's \[source\]"):
        parse_scenario('[bank]\nprofile = "daily"\n[[step]]\nduration = "1h"\n', "s.toml")


def test_the_demo_day_shows_every_output_at_work() -> None:
    """A day and a half of the embedded default, with the real core, in 60 s steps: the
    evening takes the low battery through the pre-alarm to the load disconnect, the daytime
    charger brings it back and fills it to a synchronisation, and the day starts again."""
    source = create_source(load(None).source)
    assert isinstance(source, SimulatedBank)
    bms = Bms()
    assert source.initial_soc is not None
    bms.command("set_soc", source.initial_soc, 0.0)
    seen: list[tuple[float, bool, bool, bool, float | None, float]] = []
    t = 0.0
    while t <= 36 * HOUR:
        status = bms.step(source.read(t), Inputs(remote=True), t)
        source.apply_outputs(status.outputs)
        o = status.outputs
        seen.append((t, o.load, o.charger, o.prealarm, status.soc, source.true_current))
        t += 60.0

    def first(predicate: object, after: float = -1.0) -> float:
        return next(s[0] for s in seen if s[0] > after and predicate(s))  # type: ignore[operator]

    prealarm = first(lambda s: s[3])
    disconnect = first(lambda s: not s[1])
    charging = first(lambda s: s[5] > 1.0, after=disconnect)
    reconnect = first(lambda s: s[1], after=disconnect)
    full = first(lambda s: s[4] is not None and s[4] >= 99.9, after=charging)
    assert prealarm < 0.5 * HOUR  # from 22 % at the evening's 12 A
    assert prealarm < disconnect < 2 * HOUR  # the discharge floor, 10 %
    assert charging == pytest.approx((9 - 18 + 24) * HOUR, abs=120)  # 09:00, the charger
    assert charging <= reconnect < charging + HOUR
    assert full < (16 - 18 + 24) * HOUR  # synchronised before the afternoon
    assert bms.history().synchronisations >= 1
    assert all(s[2] for s in seen[1:])  # the charger is never disconnected on this day
    assert first(lambda s: s[5] < -5.0, after=20 * HOUR) == pytest.approx(24 * HOUR, abs=120)
