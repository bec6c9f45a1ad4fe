"""An acknowledged setting survives a kill at any moment after the acknowledgement (issue 16,
finding 4): hundreds of rounds, SIGKILL 0-1 s after an acknowledgement, nothing acknowledged lost.

Each round forks a writer (the real Controller -> SettingsFile -> FileStore chain that answers a
Bluetooth write; the answer goes out when ``set_setting`` returns) that changes a setting again
and again and reports every acknowledged value on a pipe; the test kills it with SIGKILL at a
random time 0-1 s after an acknowledgement, then restores the state directory as the daemon
would at its next start.  Rounds run 25 at a time so that the suite stays fast.
"""

from __future__ import annotations

import os
import random
import select
import signal
import time
from pathlib import Path

import pytest

from bms_daemon.controller import Controller
from bms_daemon.core.bms import Bms
from bms_daemon.state.layout import SettingsFile, restore
from bms_daemon.store import FileStore

ROUNDS = 200
AT_ONCE = 25
VALUES = [round(0.5 + 0.1 * i, 1) for i in range(90)]  # tail_current 0.5 .. 9.4 A


def _writer(directory: Path, out: int) -> None:  # pragma: no cover - runs in the child
    store = FileStore(directory)
    controller = Controller(Bms(), time.monotonic, save_settings=SettingsFile(store).save)
    i = 0
    while True:
        i += 1
        controller.set_setting("tail_current", VALUES[i % len(VALUES)])
        os.write(out, f"{i}\n".encode())  # the acknowledgement


def _start(directory: Path) -> tuple[int, int]:
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(read_end)
        try:
            _writer(directory, write_end)
        finally:
            os._exit(0)
    os.close(write_end)
    return pid, read_end


@pytest.mark.parametrize("batch", range(ROUNDS // AT_ONCE))
def test_no_acknowledged_setting_is_lost_when_killed_after_the_ack(tmp_path: Path,
                                                                  batch: int) -> None:
    rng = random.Random(batch)
    rounds = []
    for n in range(AT_ONCE):
        directory = tmp_path / f"r{n}"
        pid, pipe = _start(directory)
        rounds.append((directory, pid, pipe, rng.uniform(0.0, 1.0)))
    acked: dict[int, int] = {}
    buffers: dict[int, bytes] = {}
    first_ack: dict[int, float] = {}
    alive = {pid for _, pid, _, _ in rounds}
    by_pipe = {pipe: (pid, delay) for _, pid, pipe, delay in rounds}
    while alive:
        ready, _, _ = select.select(list(by_pipe), [], [], 0.01)
        now = time.monotonic()
        for pipe in ready:
            pid, _ = by_pipe[pipe]
            buffers[pid] = buffers.get(pid, b"") + os.read(pipe, 65536)
            lines = buffers[pid].split(b"\n")
            buffers[pid] = lines[-1]
            if lines[:-1]:
                acked[pid] = int(lines[-2])
                first_ack.setdefault(pid, now)
        for pipe, (pid, delay) in list(by_pipe.items()):
            if pid in first_ack and now - first_ack[pid] >= delay:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                # what it acknowledged before dying (the pipe keeps what was written)
                rest = buffers.get(pid, b"") + _drain(pipe)
                done = [line for line in rest.split(b"\n")[:-1] if line]
                if done:
                    acked[pid] = int(done[-1])
                os.close(pipe)
                del by_pipe[pipe]
                alive.discard(pid)
    for directory, pid, _, _ in rounds:
        last = acked[pid]
        restored = restore(FileStore(directory), {}).bms.settings.tail_current
        # the last acknowledged value, or the next one (written, killed before its ACK)
        allowed = {VALUES[last % len(VALUES)], VALUES[(last + 1) % len(VALUES)]}
        assert restored in allowed, (directory, last, restored)


def _drain(pipe: int) -> bytes:
    data = b""
    while select.select([pipe], [], [], 0)[0]:
        chunk = os.read(pipe, 65536)
        if not chunk:
            break
        data += chunk
    return data
