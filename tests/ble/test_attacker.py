"""A hostile central with raw bleak against the real daemon on the virtual BlueZ (issue 16).

Not our client: bleak calls as an attacker's script would make them, from several centrals,
with connection churn, restarts between guesses, and the owner logging in meanwhile.  Each test
has a daemon of its own: wrong PINs spend its global budget for five minutes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Callable
from pathlib import Path

import pytest
from ble_harness import (
    CENTRAL,
    SECOND_CENTRAL,
    SHARED_CENTRAL,
    THIRD_CENTRAL,
    running_daemon,
)
from bleak import BleakClient
from bleak.exc import BleakError, BleakGATTProtocolError

from gatt import codec, profile, security

pytestmark = pytest.mark.ble
PIN = "000000"
WAIT_S = 20.0


async def guess(address: str, adapter: str, pin: str) -> int:
    """One PIN guess on a fresh connection, as a churning attacker makes it: connect, pair,
    read the challenge, answer, disconnect.  The ATT code of the answer (0 = accepted)."""
    async with BleakClient(address, bluez={"adapter": adapter}, timeout=WAIT_S) as client:
        await client.pair()
        challenge = security.decode_challenge(
            await client.read_gatt_char(profile.uuid_of("auth")))
        response, _ = security.answer_challenge(pin, challenge)
        try:
            await client.write_gatt_char(profile.uuid_of("auth"), response, response=True)
        except BleakGATTProtocolError as err:
            return int(err.code)
        return 0


def test_churning_centrals_riding_the_owners_logins_get_three_guesses(tmp_path: Path) -> None:
    """Finding 1: several centrals, a connection per guess, the owner logging in between
    guesses: the wrong PINs evaluated stay within the global budget."""
    with running_daemon(tmp_path) as bms:
        codes: list[int] = []
        for round_ in range(4):
            codes.extend(bms.run(guess(bms.address, adapter, f"{round_:03d}999"))
                         for adapter in (CENTRAL, SECOND_CENTRAL, THIRD_CENTRAL))
            owner = bms.run(guess(bms.address, SHARED_CENTRAL, PIN))
            assert owner in (0, profile.ATT_LOCKED_OUT)
        evaluated = codes.count(profile.ATT_WRONG_PIN)
        assert evaluated == security.FREE_ATTEMPTS, codes
        assert codes.count(profile.ATT_LOCKED_OUT) == len(codes) - evaluated
        bms.assert_alive()


def test_a_restart_between_guesses_gives_no_new_guess(tmp_path: Path) -> None:
    """Finding 1: the lock-out survives SIGKILL (a power cut) and SIGTERM."""
    wrong = 0
    for sig in (signal.SIGKILL, signal.SIGTERM, None):
        with running_daemon(tmp_path) as bms:
            codes = [bms.run(guess(bms.address, adapter, "999999"))
                     for adapter in (CENTRAL, SECOND_CENTRAL, THIRD_CENTRAL)]
            wrong += codes.count(profile.ATT_WRONG_PIN)
            assert set(codes) <= {profile.ATT_WRONG_PIN, profile.ATT_LOCKED_OUT}, codes
            if sig is None:  # after two restarts: still nothing, even the right PIN
                assert bms.run(guess(bms.address, SHARED_CENTRAL, PIN)) == (
                    profile.ATT_LOCKED_OUT)
            else:
                os.kill(bms.proc.pid, sig)
                bms.run(bms.proc.wait())
    assert wrong == security.FREE_ATTEMPTS
    assert (tmp_path / "state" / "lockout.json").exists()


def _collector(sink: list[bytes]) -> Callable[[object, bytearray], None]:
    def collect(_char: object, data: bytearray) -> None:
        sink.append(bytes(data))

    return collect


def test_an_unpaired_or_pinless_central_receives_nothing_protected(tmp_path: Path) -> None:
    """Finding 2: an unpaired central cannot subscribe; a paired one without the PIN gets no
    status while the owner's session is open, and cannot read the owner's command results."""
    with running_daemon(tmp_path) as bms:
        owner = bms.connected(adapter=SHARED_CENTRAL)
        bms.run(owner.status())  # authenticated

        async def eavesdrop() -> tuple[str, dict[str, list[bytes]]]:
            got: dict[str, list[bytes]] = {"status": [], "bank": [], "control_point": []}
            async with BleakClient(bms.address, bluez={"adapter": CENTRAL},
                                   timeout=WAIT_S) as spy:
                unpaired = "subscribed"
                try:
                    await spy.start_notify(profile.uuid_of("status"), lambda _c, _d: None)
                except BleakError as exc:
                    unpaired = f"refused: {exc}"
                await spy.pair()
                for key, sink in got.items():
                    await spy.start_notify(profile.uuid_of(key), _collector(sink))
                await owner.command("set_soc", 42.42)
                await asyncio.sleep(2.0)  # several 5 Hz status changes would arrive meanwhile
                with contextlib.suppress(BleakError):
                    await spy.stop_notify(profile.uuid_of("status"))
            return unpaired, got

        unpaired, got = bms.run(eavesdrop())
        assert unpaired.startswith("refused"), unpaired
        assert got["status"] == []
        assert got["bank"] == []
        for raw in got["control_point"]:  # the owner's result reaches the spy masked only
            assert b"42.42" not in codec.decode_result(raw).data
        bms.assert_alive()
