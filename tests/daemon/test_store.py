"""The state store: atomic saves, corrupt files kept aside, never a crash on bad content."""

from __future__ import annotations

import json
import os
import random
import signal
import stat
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bms_daemon.store import FileStore, MemoryStore, StoreError

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=20)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


def test_missing_document_loads_as_none(tmp_path: Path) -> None:
    assert FileStore(tmp_path / "absent").load("bms") is None


def test_save_creates_directory_and_round_trips(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "state")
    store.save("bms", {"soc": 55.5, "history": {"cycles": 3}})
    assert FileStore(tmp_path / "state").load("bms") == {"soc": 55.5, "history": {"cycles": 3}}
    assert stat.S_IMODE((tmp_path / "state").stat().st_mode) == 0o700


@settings(max_examples=40, deadline=None)
@given(data=st.dictionaries(st.text(max_size=10), json_values, max_size=6))
def test_any_json_document_round_trips(tmp_path_factory: pytest.TempPathFactory,
                                       data: dict[str, object]) -> None:
    store = FileStore(tmp_path_factory.mktemp("s"))
    store.save("doc", data)
    assert store.load("doc") == data


def test_secret_document_is_owner_only(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    store.save("readout_key", {"key": "00" * 16}, secret=True)
    store.save("bms", {"soc": 1})
    assert stat.S_IMODE(store.path("readout_key").stat().st_mode) == 0o600
    assert stat.S_IMODE(store.path("bms").stat().st_mode) == 0o644


@pytest.mark.parametrize(
    "content",
    [b'{"soc": 5', b"", b"\xff\xfe garbage", b"[1, 2, 3]", b'"just a string"'],
    ids=["truncated", "empty", "binary", "list", "string"],
)
def test_corrupt_document_is_kept_aside_and_loads_as_none(tmp_path: Path, content: bytes) -> None:
    store = FileStore(tmp_path)
    store.path("bms").write_bytes(content)
    assert store.load("bms") is None
    assert not store.path("bms").exists()
    aside = list(tmp_path.glob("bms.json.corrupt-*"))
    assert len(aside) == 1
    assert aside[0].read_bytes() == content
    # the next save works and the bad file stays for a human to look at
    store.save("bms", {"soc": 1})
    assert store.load("bms") == {"soc": 1}
    assert aside[0].exists()


def test_two_corrupt_files_in_the_same_second_are_both_kept(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    for content in (b"{", b"{{"):
        store.path("bms").write_bytes(content)
        assert store.load("bms") is None
    assert sorted(p.read_bytes() for p in tmp_path.glob("bms.json.corrupt-*")) == [b"{", b"{{"]


def test_unserialisable_save_raises_and_keeps_the_old_document(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    store.save("bms", {"soc": 1})
    with pytest.raises(ValueError, match="JSON"):
        store.save("bms", {"soc": float("nan")})  # not JSON: refused before touching the disk
    assert store.load("bms") == {"soc": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["bms.json"]


def test_unwritable_location_raises_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StoreError, match="cannot write"):
        FileStore(blocker / "state").save("bms", {"soc": 1})


def test_bad_names_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="invalid store name"):
        FileStore(tmp_path).save("../escape", {})
    with pytest.raises(ValueError, match="invalid store name"):
        MemoryStore().load("a/b")


def test_memory_store_copies_and_counts() -> None:
    store = MemoryStore()
    data = {"a": [1, 2]}
    store.save("x", data, secret=True)
    data["a"].append(3)
    loaded = store.load("x")
    assert loaded == {"a": [1, 2]}
    assert loaded is not None
    loaded["a"].append(4)
    assert store.load("x") == {"a": [1, 2]}
    assert store.secret == {"x"}
    assert store.saves == 1
    assert store.load("y") is None


def test_interrupted_save_leftovers_are_removed(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    store.save("bms", {"soc": 1})
    (tmp_path / ".bms.json.abc123.tmp").write_text('{"so')
    assert store.remove_temporaries() == 1
    assert [p.name for p in tmp_path.iterdir()] == ["bms.json"]


def _writer(directory: Path, first: int, progress: int) -> None:
    """Child process: save increasing versions forever, reporting each completed save."""
    store = FileStore(directory)
    rng = random.Random(first)
    seq = first
    while True:
        size = rng.randrange(1, 8_000)  # sizes vary (up to two pages) so a torn write would show
        store.save("bms", {"seq": seq, "blob": str(seq % 10) * size, "size": size})
        os.write(progress, seq.to_bytes(8, "big"))
        seq += 1


def test_sigkill_during_saves_never_corrupts(tmp_path: Path) -> None:
    """Hundreds of writers killed at random moments: the state is always the old or new one."""
    rng = random.Random(20261125)
    last_completed = 0
    for _ in range(200):
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # child
            os.close(read_end)
            try:
                _writer(tmp_path, last_completed + 1, write_end)
            finally:
                os._exit(0)
        os.close(write_end)
        # let a random number of saves complete, then kill during the next one(s)
        wanted = rng.randrange(1, 4)
        completed = last_completed
        with os.fdopen(read_end, "rb") as progress:
            for _ in range(wanted):
                record = progress.read(8)
                assert len(record) == 8
                completed = int.from_bytes(record, "big")
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        loaded = FileStore(tmp_path).load("bms")
        assert loaded is not None, "a completed save was lost"
        assert loaded["seq"] >= completed  # the last reported save, or a newer complete one
        assert loaded["blob"] == str(loaded["seq"] % 10) * loaded["size"]
        last_completed = loaded["seq"]
        FileStore(tmp_path).remove_temporaries()
    assert not list(tmp_path.glob("*corrupt*"))
    assert json.loads((tmp_path / "bms.json").read_text())["seq"] == last_completed
