"""Persistence: small JSON documents in a state directory, written so a power cut cannot corrupt.

The BMS keeps settings, SOC and history (and the BLE side its readout key and nonce window)
across restarts and power cuts.  A Raspberry Pi loses power without warning, so every save is
atomic: the new content goes to a temporary file in the same directory, is flushed to the card
(fsync), renamed over the old file (atomic on POSIX), and the directory itself is fsynced so the
rename survives too.  A reader therefore always sees the old or the new version, never a mix.

A file that is nevertheless untrustworthy (a bad SD card, a hand edit, a hostile write) must
never stop the daemon from protecting the battery: ``load`` moves it aside as
``NAME.json.corrupt-<time>`` (kept for a human to look at), logs why, and returns ``None`` so the
caller starts from safe values.  "Untrustworthy" is anything but a small, plain JSON object: more
than ``MAX_DOCUMENT_BYTES``, not UTF-8, nested deeper than ``MAX_DEPTH``, ``NaN``/``Infinity``
or numbers beyond what a double holds, integers of more than ``MAX_INT_DIGITS`` digits.  A
UTF-8 byte-order mark (what some text editors add) is accepted and ignored.  The checks happen
before and during parsing, so a crafted file cannot exhaust the stack or the memory first.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any, Protocol

import structlog

log = structlog.get_logger("smallbms.store")

FILE_SUFFIX = ".json"
TEMP_PREFIX = "."  # temporary files are hidden: ".NAME.json.<random>.tmp"
TEMP_SUFFIX = ".tmp"
CORRUPT_MARK = ".corrupt-"
FILE_MODE = 0o644  # readable state (settings, SOC, history)
SECRET_MODE = 0o600  # the readout key: owner only, from the first byte written
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
MAX_DOCUMENT_BYTES = 256 * 1024  # our largest document (history, settings) is a few kB
MAX_DEPTH = 16  # our documents nest 4 levels at most
MAX_INT_DIGITS = 20  # 64-bit counters; more is not ours
_BOM = b"\xef\xbb\xbf"


class UntrustedContentError(ValueError):
    """The bytes of a state file are not a document we could have written."""


def parse_document(raw: bytes) -> dict[str, Any]:
    """The JSON object in ``raw``; ``UntrustedContentError`` saying why not (never anything else).

    Bounded work whatever the input: size first, then a bracket-depth scan before ``json``
    recurses, then the values (non-finite or oversized numbers) as the parser builds them.
    """
    if len(raw) > MAX_DOCUMENT_BYTES:
        raise UntrustedContentError(f"{len(raw)} bytes, more than the {MAX_DOCUMENT_BYTES} a state "
                               "file can hold")
    raw = raw.removeprefix(_BOM)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UntrustedContentError(f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    depth = _max_depth(text)
    if depth > MAX_DEPTH:
        raise UntrustedContentError(f"nested {depth} levels deep (at most {MAX_DEPTH})")
    try:
        data = json.loads(text, parse_constant=_refuse_constant, parse_int=_bounded_int,
                          parse_float=_finite_float)
    except UntrustedContentError:
        raise
    except (json.JSONDecodeError, ValueError, RecursionError) as exc:
        raise UntrustedContentError(f"not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise UntrustedContentError(f"expected a JSON object, found {type(data).__name__}")
    return data


def _max_depth(text: str) -> int:
    """How deep brackets nest outside strings (a linear scan: no recursion, no allocation)."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def _refuse_constant(name: str) -> Any:
    raise UntrustedContentError(f"{name} is not a number a state file may hold")


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise UntrustedContentError(f"an integer of {len(text)} digits")
    return int(text)


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise UntrustedContentError(f"{text[:20]} is beyond a double")
    return value


class StoreError(OSError):
    """A save failed (disk full, read-only file system); the old content is still in place."""


class Store(Protocol):
    """Named JSON documents that survive restarts."""

    def load(self, name: str) -> dict[str, Any] | None:
        """The document saved under ``name``, or ``None`` when absent or unreadable."""
        ...

    def save(self, name: str, data: dict[str, Any], *, secret: bool = False) -> None:
        """Replace the document atomically; ``secret`` = readable by the owner only."""
        ...


def _check_name(name: str) -> None:
    if not _NAME_RE.match(name) or name.endswith(TEMP_SUFFIX):
        raise ValueError(f"invalid store name {name!r}: use letters, digits, '_', '-' or '.'")


class FileStore:
    """Documents as ``DIRECTORY/NAME.json``; the directory is created (mode 0700) if missing."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def path(self, name: str) -> Path:
        """Where the document ``name`` lives."""
        _check_name(name)
        return self.directory / f"{name}{FILE_SUFFIX}"

    def load(self, name: str) -> dict[str, Any] | None:
        path = self.path(name)
        try:
            with path.open("rb") as handle:  # never more than the limit into memory
                raw = handle.read(MAX_DOCUMENT_BYTES + 1)
        except FileNotFoundError:
            return None
        except OSError as exc:
            problem = str(exc)
        else:
            problem = ""
        if problem:
            # unreadable but present (permissions, I/O error): leave it where it is
            log.error("state_unreadable", file=str(path), error=problem)
            return None
        try:
            return parse_document(raw)
        except UntrustedContentError as exc:
            self._set_aside(path, str(exc))
            return None

    def exists(self, name: str) -> bool:
        """A document ``name`` is present (trustworthy or not)."""
        return self.path(name).exists()

    def set_aside(self, name: str, why: str) -> Path | None:
        """Move a document whose content the caller rejected out of the way (see ``load``)."""
        return self._set_aside(self.path(name), why)

    def _set_aside(self, path: Path, why: str) -> Path | None:
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        target = path.with_name(f"{path.name}{CORRUPT_MARK}{stamp}")
        counter = 1
        while target.exists():
            target = path.with_name(f"{path.name}{CORRUPT_MARK}{stamp}-{counter}")
            counter += 1
        try:
            path.rename(target)
        except OSError as exc:
            failure = str(exc)
        else:
            failure = ""
        if failure:
            log.error("state_corrupt", file=str(path), problem=why, kept_aside=None,
                      error=failure)
            return None
        log.error("state_corrupt", file=str(path), problem=why, kept_aside=str(target),
                  action="starting from safe values")
        return target

    def save(self, name: str, data: dict[str, Any], *, secret: bool = False) -> None:
        path = self.path(name)
        text = json.dumps(data, indent=1, sort_keys=True, allow_nan=False) + "\n"
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(
                prefix=f"{TEMP_PREFIX}{path.name}.", suffix=TEMP_SUFFIX, dir=self.directory
            )
        except OSError as exc:
            raise StoreError(f"cannot write {path}: {exc.strerror or exc}") from exc
        try:
            with os.fdopen(fd, "wb") as handle:
                os.fchmod(handle.fileno(), SECRET_MODE if secret else FILE_MODE)
                handle.write(text.encode("utf-8"))
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp_name, path)
            _fsync_directory(self.directory)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp_name)
            raise StoreError(f"cannot write {path}: {exc.strerror or exc}") from exc

    def remove_temporaries(self) -> int:
        """Delete temporary files left by a save that a crash interrupted; returns how many.

        Call it once at start-up, before any save: a leftover is never a valid document (the
        rename did not happen), only litter.
        """
        removed = 0
        try:
            candidates = list(self.directory.glob(f"{TEMP_PREFIX}*{FILE_SUFFIX}.*{TEMP_SUFFIX}"))
        except OSError:
            return 0
        for leftover in candidates:
            with contextlib.suppress(OSError):
                leftover.unlink()
                removed += 1
        return removed


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself durable (the directory entry lives in the directory's blocks)."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class MemoryStore:
    """A Store in a dict, for tests and for running without a writable disk."""

    def __init__(self) -> None:
        self.documents: dict[str, dict[str, Any]] = {}
        self.secret: set[str] = set()
        self.saves = 0
        self.aside: list[tuple[str, str, dict[str, Any]]] = []

    def exists(self, name: str) -> bool:
        return name in self.documents

    def set_aside(self, name: str, why: str) -> None:
        """Forget a document the caller rejected (``aside`` keeps it, with the reason)."""
        document = self.documents.pop(name, None)
        if document is not None:
            self.aside.append((name, why, document))

    def load(self, name: str) -> dict[str, Any] | None:
        _check_name(name)
        document = self.documents.get(name)
        return copy.deepcopy(document) if document is not None else None

    def save(self, name: str, data: dict[str, Any], *, secret: bool = False) -> None:
        _check_name(name)
        # Round-trip through JSON so a test notices data a FileStore could not write.
        self.documents[name] = json.loads(json.dumps(data, allow_nan=False))
        if secret:
            self.secret.add(name)
        else:
            self.secret.discard(name)
        self.saves += 1
