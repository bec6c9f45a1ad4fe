"""The readout key and the nonce window: never a repeated nonce, across restarts and kills."""

from __future__ import annotations

import itertools
import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from bms_daemon.store import FileStore, MemoryStore
from gatt.readout_keys import (
    DOCUMENT,
    NONCE_WINDOW,
    NonceWindowPendingError,
    ReadoutKeys,
    read_key,
)


class FailingStore(MemoryStore):
    """A store whose saves fail while ``broken`` is set (disk full, read-only card)."""

    def __init__(self) -> None:
        super().__init__()
        self.broken = False

    def save(self, name: str, data: dict[str, Any], *, secret: bool = False) -> None:
        if self.broken:
            raise OSError(28, "No space left on device")
        super().save(name, data, secret=secret)


def rigged_random(first_bytes: list[int]) -> Iterator[bytes]:
    for first in first_bytes:
        yield bytes([first]) + bytes(range(1, 16))


def test_first_start_makes_a_secret_key_file(tmp_path: Path) -> None:
    keys = ReadoutKeys(FileStore(tmp_path))
    path = tmp_path / "readout.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(keys.key) == 16
    assert read_key(FileStore(tmp_path)) == keys.key
    assert ReadoutKeys(FileStore(tmp_path)).key == keys.key  # kept across restarts


def test_keys_differ_between_devices() -> None:
    assert ReadoutKeys(MemoryStore()).key != ReadoutKeys(MemoryStore()).key


def test_nonce_steps_by_one_and_saves_once_per_window() -> None:
    store = MemoryStore()
    keys = ReadoutKeys(store, window=10)
    saves_after_creation = store.saves
    nonces = [keys.next_nonce() for _ in range(25)]
    assert nonces == list(range(25))
    assert store.saves - saves_after_creation == 3  # at 0, 10 and 20


def test_restart_continues_above_every_nonce_handed_out() -> None:
    store = MemoryStore()
    first = ReadoutKeys(store, window=16)
    used = [first.next_nonce() for _ in range(20)]
    second = ReadoutKeys(store, window=16)  # the first one vanished without saying goodbye
    after = second.next_nonce()
    assert after > max(used)
    assert after - max(used) <= 16
    assert second.key == first.key


@settings(max_examples=50, deadline=None)
@given(runs=st.lists(st.integers(0, 40), min_size=1, max_size=8), window=st.integers(1, 20))
def test_nonces_never_repeat_nor_step_back_over_many_restarts(
    runs: list[int], window: int
) -> None:
    store = MemoryStore()
    seen: list[int] = []
    for count in runs:
        keys = ReadoutKeys(store, window=window)
        seen.extend(keys.next_nonce() for _ in range(count))
    assert seen == sorted(set(seen))


def test_nonce_wraps_at_16_bits_with_the_same_key_by_default() -> None:
    store = MemoryStore()
    keys = ReadoutKeys(store)
    store.documents[DOCUMENT]["reserved"] = 0xFFFE
    store.documents[DOCUMENT]["key_since"] = 0
    keys = ReadoutKeys(store)
    key = keys.key
    assert [keys.next_nonce() for _ in range(3)] == [0xFFFE, 0xFFFF, 0]
    assert keys.key == key


def test_strict_policy_rotates_the_key_when_its_nonces_are_used_up() -> None:
    store = MemoryStore()
    ReadoutKeys(store)
    store.documents[DOCUMENT]["reserved"] = 0xFFFF
    keys = ReadoutKeys(store, rotate_on_wrap=True)
    old = keys.key
    assert keys.next_nonce() == 0xFFFF
    assert keys.key == old
    assert keys.next_nonce() == 0
    assert keys.key[0] != old[0]
    assert read_key(store) == keys.key  # saved before use
    # the new key gets a full 16-bit space of its own
    restarted = ReadoutKeys(store, rotate_on_wrap=True)
    assert restarted.key == keys.key


def test_pin_change_rotates_to_a_key_with_another_first_byte() -> None:
    source = rigged_random([0x42, 0x42, 0x42, 0x17])
    store = MemoryStore()
    keys = ReadoutKeys(store, random_bytes=lambda n: next(source))
    assert keys.key[0] == 0x42
    assert keys.sync_pin("000000") is False  # first sight of the PIN: remembered only
    assert keys.key[0] == 0x42
    assert keys.sync_pin("000000") is False
    assert keys.sync_pin("123456") is True
    assert keys.key[0] == 0x17  # 0x42 twice refused
    assert read_key(store) == keys.key


def test_pin_changed_while_stopped_rotates_at_next_start() -> None:
    store = MemoryStore()
    keys = ReadoutKeys(store)
    keys.sync_pin("000000")
    old = keys.key
    restarted = ReadoutKeys(store)
    assert restarted.sync_pin("000000") is False
    assert restarted.key == old
    assert restarted.sync_pin("654321") is True
    assert ReadoutKeys(store).key == restarted.key != old


def test_many_rotations_always_change_the_first_byte() -> None:
    keys = ReadoutKeys(MemoryStore())
    for index in range(200):
        before = keys.key
        keys.rotate(pin=f"{index:06d}")
        assert keys.key[0] != before[0]


def test_failed_save_changes_nothing_and_hands_out_no_nonce() -> None:
    store = FailingStore()
    keys = ReadoutKeys(store, window=2)
    assert [keys.next_nonce(), keys.next_nonce()] == [0, 1]
    store.broken = True
    with pytest.raises(OSError, match="No space"):
        keys.next_nonce()
    key = keys.key
    with pytest.raises(OSError, match="No space"):
        keys.rotate()
    assert keys.key == key
    store.broken = False
    assert keys.next_nonce() == 2
    assert ReadoutKeys(store).next_nonce() == 4


def test_truncated_file_gives_a_fresh_key_and_keeps_the_old_file_aside(tmp_path: Path) -> None:
    keys = ReadoutKeys(FileStore(tmp_path))
    path = tmp_path / "readout.json"
    text = path.read_bytes()
    path.write_bytes(text[: len(text) // 2])  # what a non-atomic write cut by a power cut leaves
    fresh = ReadoutKeys(FileStore(tmp_path))
    assert fresh.key != keys.key
    assert read_key(FileStore(tmp_path)) == fresh.key
    assert len(list(tmp_path.glob("readout.json.corrupt-*"))) == 1


@pytest.mark.parametrize(
    "change",
    [
        {"key": "not hex"},
        {"reserved": -1},
        {"reserved": "12"},
        {"version": 99},
        {"key_since": 10**9},
    ],
)
def test_invalid_content_is_set_aside_not_trusted(tmp_path: Path, change: dict[str, Any]) -> None:
    ReadoutKeys(FileStore(tmp_path))
    path = tmp_path / "readout.json"
    document = json.loads(path.read_text())
    document.update(change)
    path.write_text(json.dumps(document))
    assert read_key(FileStore(tmp_path)) is None
    keys = ReadoutKeys(FileStore(tmp_path))
    assert read_key(FileStore(tmp_path)) == keys.key
    assert len(list(tmp_path.glob("readout.json.corrupt-*"))) == 1


def test_leftover_temporary_file_of_an_interrupted_save_is_ignored(tmp_path: Path) -> None:
    keys = ReadoutKeys(FileStore(tmp_path), window=4)
    used = [keys.next_nonce() for _ in range(6)]
    (tmp_path / ".readout.json.abc123.tmp").write_text('{"key": "00')
    restarted = ReadoutKeys(FileStore(tmp_path), window=4)
    assert restarted.key == keys.key
    assert restarted.next_nonce() > max(used)


def test_the_key_never_reaches_the_logs_or_a_repr() -> None:
    store = MemoryStore()
    with capture_logs() as logs:
        keys = ReadoutKeys(store)
        keys.sync_pin("000000")
        seen = [keys.key]
        keys.sync_pin("111111")
        seen.append(keys.key)
        store.documents[DOCUMENT]["reserved"] = "bad"
        seen.append(ReadoutKeys(store).key)
    text = repr(logs) + repr(keys)
    assert logs  # creation and rotation are logged ...
    for key in seen:  # ... without the key
        assert key.hex() not in text
        assert key.hex().upper() not in text


KILL_AFTER = 300  # nonces read from the child before it is killed

CHILD = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    import structlog
    from bms_daemon.store import FileStore
    from gatt.readout_keys import ReadoutKeys

    structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=sys.stderr))
    keys = ReadoutKeys(FileStore(Path(sys.argv[1])), window=int(sys.argv[2]))
    while True:
        print(keys.next_nonce(), flush=True)
    """
)


@pytest.mark.parametrize("window", [4, NONCE_WINDOW])
def test_sigkill_while_allocating_never_repeats_a_nonce(tmp_path: Path, window: int) -> None:
    """A process handing out nonces as fast as it can (saving every few) is killed -9 at an
    arbitrary point, possibly mid-save; the next run starts above every nonce it printed."""
    printed: list[int] = []
    for _ in range(3):
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(tmp_path), str(window)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        assert child.stdout is not None
        run: list[int] = []
        for line in child.stdout:
            run.append(int(line))
            if len(run) == KILL_AFTER:
                break
        os.kill(child.pid, signal.SIGKILL)
        run.extend(int(line) for line in child.stdout.read().split())  # what it printed since
        child.wait(timeout=30)
        child.stdout.close()
        assert child.returncode == -signal.SIGKILL
        assert len(run) >= KILL_AFTER
        if printed:
            assert run[0] > printed[-1]
        assert run == sorted(set(run))
        printed.extend(run)
    restarted = ReadoutKeys(FileStore(tmp_path), window=window)
    assert restarted.next_nonce() > printed[-1]
    assert printed[-1] < 0x10000  # no wrap in this test, so order is the sequence order


# --- background mode (what the daemon uses): the fsync'd save off the event loop -----------

class GatedStore(MemoryStore):
    """Saves wait at a gate the test opens, and remember which thread made them."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.gate.set()
        self.threads: list[str] = []

    def save(self, name: str, data: dict[str, Any], *, secret: bool = False) -> None:
        self.threads.append(threading.current_thread().name)
        assert self.gate.wait(timeout=30)
        super().save(name, data, secret=secret)


def test_background_mode_never_makes_the_caller_wait_for_the_disk() -> None:
    store = GatedStore()
    keys = ReadoutKeys(store, window=8, background=True)
    start_saves = len(store.threads)
    store.gate.clear()  # the disk is slow from now on
    handed = []
    for _ in range(100):
        try:
            handed.append(keys.next_nonce())
        except NonceWindowPendingError:
            break
    # the whole saved window was usable while the next one was being saved
    assert handed == list(range(8))
    assert all(name.startswith("readout-save") for name in store.threads[start_saves:])
    store.gate.set()
    keys.flush()
    assert keys.next_nonce() == 8
    assert store.documents[DOCUMENT]["reserved"] > 8


def test_background_mode_never_repeats_across_restarts() -> None:
    store = MemoryStore()
    seen: list[int] = []
    for _ in range(5):
        keys = ReadoutKeys(store, window=6, background=True)
        for _ in range(40):
            try:
                seen.append(keys.next_nonce())
            except NonceWindowPendingError:
                keys.flush()  # a real caller simply tries again on its next tick
        keys.flush()  # the process ends: its save is either done or never happened
    assert seen == sorted(set(seen))
    assert len(seen) >= 5 * 30
    # a restart skips at most 1.5 windows (the mark saved ahead), as documented
    assert max(b - a for a, b in itertools.pairwise(seen)) <= 6 * 1.5 + 1


def test_background_save_failure_is_logged_once_and_recovers() -> None:
    store = FailingStore()
    keys = ReadoutKeys(store, window=4, background=True)
    store.broken = True
    got = []
    with capture_logs() as logs:
        for _ in range(20):
            try:
                got.append(keys.next_nonce())
            except NonceWindowPendingError:
                keys.flush()
    assert got == [0, 1, 2, 3]  # the saved window, then nothing while saves fail
    failures = [entry for entry in logs if entry["event"] == "readout_nonce_window_not_saved"]
    assert len(failures) == 1
    store.broken = False
    with pytest.raises(NonceWindowPendingError):
        keys.next_nonce()  # starts the retry
    keys.flush()
    assert keys.next_nonce() == 4


def test_key_rotation_waits_for_a_background_save_so_the_file_keeps_the_new_key() -> None:
    store = GatedStore()
    keys = ReadoutKeys(store, window=4, background=True)
    store.gate.clear()
    for _ in range(3):
        keys.next_nonce()  # starts the background save of the next window
    rotation = threading.Thread(target=keys.rotate, args=("111111",))
    rotation.start()
    store.gate.set()
    rotation.join(timeout=30)
    assert not rotation.is_alive()
    assert read_key(store) == keys.key


BACKGROUND_CHILD = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    import structlog
    from bms_daemon.store import FileStore
    from gatt.readout_keys import NonceWindowPendingError, ReadoutKeys

    structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=sys.stderr))
    keys = ReadoutKeys(FileStore(Path(sys.argv[1])), window=int(sys.argv[2]), background=True)
    while True:
        try:
            print(keys.next_nonce(), flush=True)
        except NonceWindowPendingError:
            keys.flush()
    """
)


def test_sigkill_in_background_mode_never_repeats_a_nonce(tmp_path: Path) -> None:
    printed: list[int] = []
    for _ in range(3):
        child = subprocess.Popen(
            [sys.executable, "-c", BACKGROUND_CHILD, str(tmp_path), "6"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        assert child.stdout is not None
        run: list[int] = []
        for line in child.stdout:
            run.append(int(line))
            if len(run) == KILL_AFTER:
                break
        os.kill(child.pid, signal.SIGKILL)
        run.extend(int(line) for line in child.stdout.read().split())
        child.wait(timeout=30)
        child.stdout.close()
        if printed:
            assert run[0] > printed[-1]
        assert run == sorted(set(run))
        printed.extend(run)
    assert ReadoutKeys(FileStore(tmp_path)).next_nonce() > printed[-1]
