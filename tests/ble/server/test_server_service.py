"""BleService behaviour against a fake GATT server: what a central would see, without D-Bus."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import pytest
from ble_server_fakes import Clock, FakeConfig, FakeDevice, FakeServer, ServerFactory, sample_status
from hypothesis import given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from bms_daemon.core.settings import Settings
from bms_daemon.device import NotSavedError
from bms_daemon.store import MemoryStore
from gatt import codec, profile, security
from gatt.broadcaster import ReadoutBroadcaster
from gatt.server import AttError
from gatt.service import BLUETOOTH_ON_AT_START_S, BLUETOOTH_WINDOW_GRACE_S, BleService

PIN = "000000"


async def until(predicate: Callable[[], bool], within: float = 5.0) -> None:
    """Wait for a condition the service reaches by itself (polled, bounded; no fixed sleeps)."""
    async with asyncio.timeout(within):
        while not predicate():  # noqa: ASYNC110 - the fakes have no event to wait on
            await asyncio.sleep(0.005)


def unmasked(indicated: bytes, key: bytes) -> codec.CommandResult:
    """A result as the session that asked reads it."""
    result = codec.decode_result(indicated)
    return dataclasses.replace(result, data=security.mask_result(key, result.seq, result.data))


@dataclass
class Rig:
    device: FakeDevice
    service: BleService
    factory: ServerFactory
    clock: Clock
    store: MemoryStore

    @property
    def server(self) -> FakeServer:
        return self.factory.current

    def read(self, key: str, central: str = "") -> bytes:
        return self.server.on_read(key, central)

    def write(self, key: str, data: bytes, central: str = "") -> None:
        self.server.on_write(key, data, central)

    def login(self, pin: str = PIN, central: str = "") -> Session:
        challenge = security.decode_challenge(self.read("auth", central))
        response, session = security.answer_challenge(pin, challenge)
        self.write("auth", response, central)
        return Session(self, session.key, central)

    def tick(self) -> None:
        """What the control loop does: a new status wakes the service."""
        self.device.publish(self.device.status())


class Session:
    def __init__(self, rig: Rig, key: bytes, central: str = "") -> None:
        self.rig, self.key, self.seq, self.central = rig, key, 0, central

    def sealed(self, key: str, body: bytes) -> bytes:
        self.seq += 1
        return security.seal(self.key, profile.uuid_of(key), self.seq, body)

    def write(self, key: str, body: bytes) -> None:
        self.rig.write(key, self.sealed(key, body), self.central)

    def set(self, name: str, value: object) -> None:
        self.write(f"setting.{name}", codec.SETTING_CODECS[name].encode(value))

    def command(self, body: bytes) -> codec.CommandResult:
        before = len(self.rig.server.notified)
        self.write("control_point", body)
        sent = [v for k, v in self.rig.server.notified[before:] if k == "control_point"]
        assert len(sent) == 1
        result = unmasked(sent[0], self.key)
        assert result.seq == self.seq
        return result


@contextlib.asynccontextmanager
async def running(device: FakeDevice | None = None, *, fail: bool = False,
                  broadcaster: bool = True) -> AsyncIterator[Rig]:
    device = device or FakeDevice()
    factory, clock, store = ServerFactory(), Clock(), MemoryStore()
    factory.fail = fail
    bc = ReadoutBroadcaster.from_store(store, device.settings) if broadcaster else None
    service = BleService(device, FakeConfig(), store, clock=clock, wall_clock=clock,
                         server_factory=factory, broadcaster=bc)
    task = asyncio.create_task(service.run())
    rig = Rig(device, service, factory, clock, store)
    try:
        if not fail:
            await until(lambda: bool(factory.servers) and factory.current.advertising)
        yield rig
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def att(code: int) -> pytest.RaisesExc[AttError]:
    return pytest.raises(AttError, check=lambda e: e.code == code)


async def test_starts_advertising_with_the_instant_readout_and_the_leds_follow() -> None:
    async with running() as rig:
        company, payload = rig.server.manufacturer[0]
        assert company == 0x02E1
        assert payload is not None
        assert payload[:2] == b"\x10\x02"
        assert rig.service.advertising
        assert not rig.service.connected
        rig.server.on_connections(frozenset({"/org/bluez/hci0/dev_AA"}))
        assert rig.service.connected
        rig.server.on_connections(frozenset())
        assert not rig.service.connected


async def test_device_information_and_battery_level_need_no_pin() -> None:
    async with running() as rig:
        assert codec.decode_text(rig.read("model")) == "smallBMS NG"
        assert codec.decode_text(rig.read("serial")).startswith("SB")
        assert "profile 1" in codec.decode_text(rig.read("firmware"))
        assert codec.decode_battery_level(rig.read("battery_level")) == 87


@pytest.mark.parametrize("key", ["status", "bank", "battery", "history", "setting.mode"])
async def test_protected_reads_need_a_pin_session(key: str) -> None:
    async with running() as rig:
        with att(profile.ATT_INSUFFICIENT_AUTHORIZATION):
            rig.read(key)
        rig.login()
        assert rig.read(key)


async def test_status_bank_and_history_read_what_the_bms_reports() -> None:
    async with running() as rig:
        rig.login()
        view = codec.decode_status(rig.read("status"))
        assert view.soc == 87.25
        assert view.discharge_reason is not None
        bank = codec.decode_bank(rig.read("bank"))
        assert bank is not None
        assert (bank.series, bank.parallel, bank.batteries) == (2, 2, 4)
        assert codec.decode_history(rig.read("history")).charge_cycles == 7


async def test_the_battery_sources_own_alarms_are_readable_with_a_pin() -> None:
    notes = ("alarm: battery low voltage", "request: charge not allowed")
    async with running(FakeDevice(sample_status(source_notes=notes))) as rig:
        with att(profile.ATT_INSUFFICIENT_AUTHORIZATION):
            rig.read("source_notes")
        rig.login()
        assert codec.decode_source_notes(rig.read("source_notes")) == notes
    async with running() as rig:
        rig.login()
        assert codec.decode_source_notes(rig.read("source_notes")) == ()


def test_source_notes_that_do_not_fit_one_read_say_how_many_were_left_out() -> None:
    notes = tuple(f"alarm: flag number {i} of a chatty BMS" for i in range(12))
    data = codec.encode_source_notes(notes)
    assert len(data) <= codec.SOURCE_NOTES_MAX
    decoded = codec.decode_source_notes(data)
    assert decoded[:-1] == notes[: len(decoded) - 1]
    assert decoded[-1] == f"(+{len(notes) - len(decoded) + 1} more)"


async def test_every_battery_and_every_cell_can_be_read_one_by_one() -> None:
    async with running() as rig:
        s = rig.login()
        serials = []
        for i in range(4):
            s.write("battery_select", codec.encode_battery_select(i))
            record = codec.decode_battery(rig.read("battery"))
            assert record.index == i
            assert record.battery is not None
            assert len(record.battery.cell_voltages) == 4
            serials.append(record.battery.serial)
        assert len(set(serials)) == 4


async def test_a_valid_setting_changes_and_reads_back() -> None:
    async with running() as rig:
        s = rig.login()
        s.set("tail_current", 2.5)
        assert rig.device.settings().tail_current == 2.5
        assert codec.SETTING_CODECS["tail_current"].decode(rig.read("setting.tail_current")) == 2.5


async def test_an_out_of_range_setting_is_refused_explained_and_changes_nothing() -> None:
    async with running() as rig:
        s = rig.login()
        before = rig.device.settings()
        with att(profile.ATT_VALUE_REJECTED):
            s.set("tail_current", 25.0)
        assert rig.device.settings() == before
        seen = codec.decode_result(rig.server.notified[-1][1])
        assert "tail_current" not in seen.message  # masked for every other central
        explained = unmasked(rig.server.notified[-1][1], s.key)
        assert explained.opcode == codec.OP_SETTING_REJECTED
        assert explained.seq == s.seq
        assert "tail_current" in explained.message


async def test_a_setting_of_the_wrong_length_is_a_length_error() -> None:
    async with running() as rig:
        s = rig.login()
        with att(profile.ATT_INVALID_VALUE_LENGTH):
            s.write("setting.tail_current", b"\x01\x02\x03")
        with att(profile.ATT_INVALID_VALUE_LENGTH):
            rig.write("setting.mode", b"\x00")  # shorter than any envelope


async def test_writes_without_pin_or_with_a_wrong_pin_change_nothing() -> None:
    async with running() as rig:
        before = rig.device.settings()
        raw = codec.SETTING_CODECS["mode"].encode(False)
        with att(profile.ATT_INSUFFICIENT_AUTHORIZATION):
            rig.write("setting.mode", raw)
        with att(profile.ATT_WRONG_PIN):
            rig.login("123456")
        forged = security.seal(b"k" * 32, profile.uuid_of("setting.mode"), 1, raw)
        with att(profile.ATT_INSUFFICIENT_AUTHORIZATION):
            rig.write("setting.mode", forged)
        assert rig.device.settings() == before


async def test_wrong_pins_lock_out_per_central_and_globally_across_restarts() -> None:
    async with running() as rig:
        with att(profile.ATT_WRONG_PIN):
            rig.login("999999", "A")
        with att(profile.ATT_LOCKED_OUT):
            rig.login(PIN, "A")  # even the right PIN, from the central that just failed
        rig.login(PIN, "owner")  # another central is not held up by A's lock
        for central in ("B", "C"):
            with att(profile.ATT_WRONG_PIN):
                rig.login("999999", central)
        # the global budget is spent: any central, any address, waits
        with att(profile.ATT_LOCKED_OUT):
            rig.login(PIN, "D")
        # and a restart remembers it (the state is saved before the answer)
        again = BleService(rig.device, FakeConfig(), rig.store, server_factory=rig.factory,
                           clock=rig.clock, wall_clock=rig.clock, broadcaster=None)
        with att(profile.ATT_LOCKED_OUT):
            again.handle_write("auth", b"\x00" * security.RESPONSE_SIZE, "E")
        rig.clock.now += security.GLOBAL_INTERVAL_S
        rig.login(PIN, "owner")  # once the attacker stops, the owner is in within 5 min


async def test_a_session_belongs_to_its_central_and_ends_with_its_link() -> None:
    async with running() as rig:
        a, b = "/org/bluez/hci0/dev_A", "/org/bluez/hci0/dev_B"
        rig.server.on_connections(frozenset({a}))
        rig.login(PIN, a)
        rig.read("status", a)
        rig.server.on_connections(frozenset({a, b}))
        rig.read("status", a)  # a newcomer does not end A's session...
        with att(profile.ATT_INSUFFICIENT_AUTHORIZATION):
            rig.read("status", b)  # ...nor share it
        rig.server.on_connections(frozenset({b}))
        with att(profile.ATT_INSUFFICIENT_AUTHORIZATION):
            rig.read("status", a)  # A left: its session is gone


async def test_protected_notifications_stop_while_a_central_without_the_pin_is_connected() -> None:
    async with running() as rig:
        a, b = "/org/bluez/hci0/dev_A", "/org/bluez/hci0/dev_B"
        rig.server.on_connections(frozenset({a, b}))
        session = rig.login(PIN, a)
        rig.server.notified.clear()
        rig.device.publish(sample_status(soc=42.0))
        await until(lambda: ("battery_level", bytes([42])) in rig.server.notified)
        assert not [k for k, _ in rig.server.notified if k in ("status", "bank")]
        result = session.command(codec.encode_set_soc(43.0))  # results go out, masked
        assert result.message == "set_soc done"
        rig.login(PIN, b)  # every connected central holds a session: the stream opens
        rig.device.publish(sample_status(soc=44.0))
        await until(lambda: any(k == "status" for k, _ in rig.server.notified))


async def test_commands_act_on_the_bms_and_answer_by_indication() -> None:
    async with running() as rig:
        s = rig.login()
        assert s.command(codec.encode_set_soc(42.5)).ok
        assert rig.device.status().soc == 42.5
        for op, name in ((codec.OP_SYNCHRONISE, "synchronise"),
                         (codec.OP_RESET_HISTORY, "reset_history"),
                         (codec.OP_FACTORY_RESET, "factory_reset")):
            assert s.command(codec.encode_command(op)).ok
            assert rig.device.commands[-1][0] == name
        assert s.command(codec.encode_command(codec.OP_MODE, b"\x00")).ok
        assert rig.device.settings().mode is False
        refused = s.command(codec.encode_command(codec.OP_MODE, b"\x07"))
        assert refused.result == codec.RESULT_REJECTED
        assert rig.device.settings().mode is False


async def test_unknown_commands_and_bad_arguments_are_att_errors() -> None:
    async with running() as rig:
        s = rig.login()
        with att(profile.ATT_UNKNOWN_COMMAND):
            s.write("control_point", b"\x55")
        with att(profile.ATT_INVALID_VALUE_LENGTH):
            s.write("control_point", codec.encode_command(codec.OP_SET_SOC, b"\x01"))


async def test_change_pin_closes_sessions_rotates_the_readout_key_and_needs_the_new_pin() -> None:
    async with running() as rig:
        s = rig.login()
        key_before = s.command(codec.encode_command(codec.OP_READ_KEY))
        old_key = security.unmask_key(s.key, s.seq, key_before.data)
        s.seq += 1
        masked = security.mask_pin(s.key, s.seq, "246810")
        s.seq -= 1
        result = s.command(codec.encode_command(codec.OP_CHANGE_PIN, masked))
        assert result.ok, result.message
        assert rig.device.settings().pin == "246810"
        with att(profile.ATT_INSUFFICIENT_AUTHORIZATION):
            rig.read("status")
        with att(profile.ATT_WRONG_PIN):
            rig.login(PIN)
        rig.clock.now += security.FIRST_LOCKOUT_S  # this central's wait after a wrong PIN
        s2 = rig.login("246810")
        new = s2.command(codec.encode_command(codec.OP_READ_KEY))
        new_key = security.unmask_key(s2.key, s2.seq, new.data)
        assert new_key != old_key
        assert new_key[0] != old_key[0]


async def test_an_invalid_new_pin_is_refused() -> None:
    async with running() as rig:
        s = rig.login()
        masked = security.mask_pin(s.key, s.seq + 1, "12a456")
        result = s.command(codec.encode_command(codec.OP_CHANGE_PIN, masked))
        assert result.result == codec.RESULT_REJECTED
        assert rig.device.settings().pin == PIN


async def test_the_readout_key_only_unmasks_for_the_session_that_asked() -> None:
    async with running() as rig:
        s = rig.login()
        other = rig.login(central="/org/bluez/hci0/dev_OTHER")
        result = s.command(codec.encode_command(codec.OP_READ_KEY))
        mine = security.unmask_key(s.key, s.seq, result.data)
        theirs = security.unmask_key(other.key, s.seq, result.data)
        assert mine != theirs
        assert len(mine) == 16


async def test_bluetooth_off_waits_for_the_start_up_window_then_stops_and_can_restart() -> None:
    async with running() as rig:
        s = rig.login()
        result = s.command(codec.encode_command(codec.OP_BLUETOOTH_OFF))
        assert result.ok
        assert "stays on" in result.message
        first = rig.server
        rig.tick()
        await until(lambda: rig.service.advertising)
        assert not first.stopped
        rig.clock.now += BLUETOOTH_ON_AT_START_S
        rig.tick()
        await until(lambda: first.stopped)
        assert not rig.service.advertising
        rig.device.set_setting("bluetooth", True)
        rig.tick()
        await until(lambda: rig.service.advertising)
        assert rig.server is not first


async def test_bluetooth_off_in_the_settings_at_start_still_gives_the_window() -> None:
    device = FakeDevice()
    device.set_setting("bluetooth", False)
    async with running(device) as rig:
        assert rig.service.advertising
        rig.clock.now += BLUETOOTH_ON_AT_START_S + 1
        rig.tick()
        await until(lambda: not rig.service.advertising)


async def settled(rig: Rig, soc: float) -> None:
    """Publish a status with a new SOC and wait until the service has handled it (its Battery
    Level went out), so what the service decided at that time can be checked."""
    rig.device.command("set_soc", soc)
    rig.tick()
    level = codec.encode_battery_level(soc)
    await until(lambda: ("battery_level", level) in rig.server.notified)


async def test_the_window_opens_when_bluetooth_first_becomes_available_not_at_start() -> None:
    """bluetoothd up 40 s after the daemon: the 30 s window starts then, not at start-up."""
    device = FakeDevice()
    device.set_setting("bluetooth", False)
    async with running(device, fail=True) as rig:
        await until(lambda: len(rig.factory.servers) >= 2, within=5)
        rig.clock.now += 40  # bluetoothd still missing
        rig.factory.fail = False
        await until(lambda: rig.service.advertising, within=10)
        rig.clock.now += BLUETOOTH_ON_AT_START_S - 1
        await settled(rig, 51.0)
        assert rig.service.advertising
        rig.clock.now += 1
        rig.tick()
        await until(lambda: not rig.service.advertising)


async def test_a_central_connected_within_the_window_may_finish_the_job() -> None:
    device = FakeDevice()
    device.set_setting("bluetooth", False)
    async with running(device) as rig:
        server = rig.server
        server.on_connections(frozenset({"/org/bluez/hci0/dev_A"}))
        rig.clock.now += BLUETOOTH_ON_AT_START_S + 60  # the window is over: still connected
        await settled(rig, 52.0)
        assert not server.stopped
        session = rig.login()
        session.set("bluetooth", True)  # the job: Bluetooth on again
        assert device.settings().bluetooth
        server.on_connections(frozenset())
        await settled(rig, 53.0)
        assert rig.service.advertising  # on for good now
        assert rig.server is server


async def test_the_window_central_is_dropped_when_it_leaves_or_after_the_grace() -> None:
    device = FakeDevice()
    device.set_setting("bluetooth", False)
    async with running(device) as rig:
        first = rig.server
        first.on_connections(frozenset({"dev_A"}))
        rig.clock.now += BLUETOOTH_ON_AT_START_S + BLUETOOTH_WINDOW_GRACE_S
        rig.tick()
        await until(lambda: first.stopped)  # a central cannot hold Bluetooth on for ever
    async with running(device) as rig:
        second = rig.server
        second.on_connections(frozenset({"dev_A"}))
        rig.clock.now += BLUETOOTH_ON_AT_START_S + 1
        rig.tick()
        second.on_connections(frozenset())  # it leaves without switching Bluetooth on
        await until(lambda: second.stopped)
        assert not rig.service.advertising


async def test_a_central_connecting_after_the_window_gets_no_grace() -> None:
    device = FakeDevice()
    async with running(device) as rig:
        server = rig.server
        rig.clock.now += BLUETOOTH_ON_AT_START_S + 1
        server.on_connections(frozenset({"dev_A"}))
        device.set_setting("bluetooth", False)
        rig.tick()
        await until(lambda: server.stopped)


async def test_bluez_going_away_makes_a_fresh_registration() -> None:
    async with running() as rig:
        first = rig.server
        rig.login()
        first.on_lost()
        await until(lambda: rig.server is not first and rig.server.advertising)
        assert first.stopped
        with att(profile.ATT_INSUFFICIENT_AUTHORIZATION):
            rig.read("status")


async def test_a_start_failure_is_retried_and_never_raises() -> None:
    async with running(fail=True) as rig:
        await until(lambda: len(rig.factory.servers) >= 2, within=5)
        assert not rig.service.advertising
        rig.factory.fail = False
        await until(lambda: rig.service.advertising, within=10)


async def test_status_notifications_only_flow_during_a_session() -> None:
    async with running() as rig:
        rig.device.publish(sample_status(soc=50.0))
        await until(lambda: any(k == "battery_level" and v == b"\x32"
                                for k, v in rig.server.notified))
        assert not any(k == "status" for k, _ in rig.server.notified)
        rig.login()
        rig.device.publish(sample_status(soc=51.0))
        await until(lambda: any(k == "status" for k, _ in rig.server.notified))
        last = [v for k, v in rig.server.notified if k == "status"][-1]
        assert codec.decode_status(last).soc == 51.0


async def test_unchanged_values_are_not_notified_again() -> None:
    async with running() as rig:
        rig.device.publish(sample_status(soc=50.0))
        await until(lambda: ("battery_level", bytes([50])) in rig.server.notified)
        count = len(rig.server.notified)
        rig.device.publish(sample_status(soc=50.0))
        rig.device.publish(sample_status(soc=50.2))  # same battery level
        rig.device.publish(sample_status(soc=61.0))
        await until(lambda: any(k == "battery_level" and v == bytes([61])
                                for k, v in rig.server.notified))
        levels = [v for k, v in rig.server.notified[count:] if k == "battery_level"]
        assert levels == [bytes([61])]


async def test_every_published_status_is_notified_even_when_they_come_in_a_burst() -> None:
    async with running() as rig:
        rig.login()
        for i in range(1, 21):  # faster than the service task can run in between
            rig.device.publish(sample_status(consumed_ah=i / 10))
        await until(lambda: len([k for k, _ in rig.server.notified if k == "status"]) >= 20)
        sent = [codec.decode_status(v).consumed_ah for k, v in rig.server.notified
                if k == "status"]
        assert sent[-20:] == [i / 10 for i in range(1, 21)]


async def test_vereg_notifications_follow_the_keep_alive() -> None:
    def voltages() -> list[float | None]:
        return [codec.decode_vereg("h", 0.01, v) for k, v in rig.server.notified
                if k == "vereg.voltage"]

    def level_sent(level: int) -> bool:
        return ("battery_level", bytes([level])) in rig.server.notified

    async with running() as rig:
        rig.server.on_connections(frozenset({"/org/bluez/hci0/dev_A"}))
        rig.device.publish(sample_status(voltage=26.0, soc=30.0))
        await until(lambda: level_sent(30))
        assert voltages()[-1] == 26.0
        rig.clock.now += 61  # no keep-alive within a minute of connecting
        rig.device.publish(sample_status(voltage=26.5, soc=31.0))
        await until(lambda: level_sent(31))
        assert 26.5 not in voltages()
        rig.write("vereg.keep_alive", b"\xff\xff")  # forever
        rig.device.publish(sample_status(voltage=27.0, soc=32.0))
        await until(lambda: level_sent(32))
        assert voltages()[-1] == 27.0
        assert codec.decode_vereg("h", 0.01, rig.read("vereg.voltage")) == 27.0


async def test_vereg_reads_the_same_figures_as_the_status() -> None:
    async with running() as rig:
        rig.login()
        view = codec.decode_status(rig.read("status"))
        figures = {
            key: codec.decode_vereg(fmt, scale, rig.read(key))
            for key, _reg, _d, _p, fmt, scale in profile.VEREG_REGISTERS
        }
        assert figures["vereg.soc"] == view.soc
        assert figures["vereg.voltage"] == view.voltage
        assert figures["vereg.current"] == view.current
        assert figures["vereg.ttg"] == view.ttg_min
        assert figures["vereg.consumed_ah"] == -view.consumed_ah  # type: ignore[operator]
        assert figures["vereg.temperature"] == pytest.approx(view.temperature + 273.15)  # type: ignore[operator]
        assert figures["vereg.power"] == pytest.approx(view.power, abs=0.5)


async def test_the_salt_and_serial_survive_a_restart() -> None:
    device = FakeDevice()
    async with running(device) as rig:
        serial = rig.read("serial")
        salt = security.decode_challenge(rig.read("auth")).salt
    assert "ble" in rig.store.secret
    again = BleService(device, FakeConfig(), rig.store, server_factory=rig.factory,
                       clock=rig.clock, broadcaster=None)
    task = asyncio.create_task(again.run())
    try:
        await until(lambda: rig.factory.current.advertising)
        assert rig.read("serial") == serial
        assert security.decode_challenge(rig.read("auth")).salt == salt
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


WRITABLE = [c.key for c in profile.CHARACTERISTICS.values() if c.writable]
FUZZ_DEVICE = FakeDevice()
FUZZ = BleService(FUZZ_DEVICE, FakeConfig(), MemoryStore(), server_factory=ServerFactory(),
                  clock=Clock(), broadcaster=None)
_challenge = security.decode_challenge(FUZZ.handle_read("auth"))
FUZZ.handle_write("auth", security.answer_challenge(PIN, _challenge)[0])  # a session is open


@settings(max_examples=1500, deadline=None)
@given(st.sampled_from(WRITABLE), st.binary(max_size=48))
def test_random_writes_never_crash_and_never_change_a_setting(key: str, data: bytes) -> None:
    # with a session open, only the envelope's tag stands between random bytes and the BMS
    before = FUZZ_DEVICE.settings()
    with contextlib.suppress(AttError):
        FUZZ.handle_write(key, data)
    assert FUZZ_DEVICE.settings() == before
    assert FUZZ_DEVICE.commands == []


@pytest.mark.parametrize("vereg", [True, False])
async def test_the_vereg_service_is_offered_unless_the_config_turns_it_off(vereg: bool) -> None:
    factory = ServerFactory()
    service = BleService(FakeDevice(), FakeConfig(vereg=vereg), MemoryStore(), clock=Clock(),
                         server_factory=factory)
    task = asyncio.create_task(service.run())
    try:
        await until(lambda: bool(factory.servers) and factory.current.advertising)
        offered = factory.current.services
        assert (profile.VEREG in offered) is vereg
        assert profile.SMALLBMS in offered
        assert profile.BATTERY_SERVICE in offered
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_a_flood_of_refused_writes_is_logged_first_then_summarised() -> None:
    async with running() as rig:
        raw = codec.SETTING_CODECS["mode"].encode(False)
        with capture_logs() as logs:
            for _ in range(500):
                with att(profile.ATT_INSUFFICIENT_AUTHORIZATION):
                    rig.write("setting.mode", raw, "/org/bluez/hci0/dev_ATTACKER")
            with att(profile.ATT_WRONG_PIN):
                rig.login("999999", "/org/bluez/hci0/dev_ATTACKER")  # a new kind: logged
            rig.clock.now += 61
            rig.tick()
            await until(lambda: any(e["event"] == "ble_events_not_logged" for e in logs))
        refused = [e for e in logs if e["event"] == "ble_write_refused"]
        assert 1 <= len(refused) <= 5
        assert any(e["event"] == "ble_auth_refused" for e in logs)
        summary = next(e for e in logs if e["event"] == "ble_events_not_logged")
        assert summary["count"] == 500 - len(refused)


class FullDiskDevice(FakeDevice):
    """The daemon's controller on a full or read-only disk: in force, not saved."""

    def set_setting(self, name: str, value: object) -> Settings:
        super().set_setting(name, value)
        raise NotSavedError("not saved (No space left on device); the change is lost at the "
                            "next restart")


async def test_a_full_disk_is_answered_not_saved_never_set() -> None:
    async with running(FullDiskDevice()) as rig:
        s = rig.login()
        with att(profile.ATT_NOT_SAVED):
            s.set("tail_current", 6.0)
        explained = unmasked(rig.server.notified[-1][1], s.key)
        assert "not saved" in explained.message
        result = s.command(codec.encode_command(codec.OP_MODE, b"\x00"))
        assert result.result == codec.RESULT_FAILED
        assert "not saved" in result.message
