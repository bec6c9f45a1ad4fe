"""The state directory's BMS documents: settings apart from counters, each trusted on its own.

Two documents, because they have different lives and different owners:

- ``settings.json`` (mode 0600: it holds the PIN): the settings a person changed, over
  Bluetooth or the configuration's first-start seeds.  Saved *at once* and synchronously on
  every change (``SettingsFile.save``), so a setting acknowledged over Bluetooth is on disk
  (fsynced) before the acknowledgement; a failed save is reported to the caller, who tells the
  user the change was not saved.
- ``bms.json``: the counters (SOC, history, balancer, protection memory, the remembered bank),
  which change at every tick and are saved by the persistence policy
  (bms_daemon/persistence.py, SD-card wear).

Restoring trusts each part on its own: a bad history costs the history, not the SOC, and never
the settings or the PIN.  A file that cannot be trusted at all is moved aside by the store
(``NAME.json.corrupt-<time>``).  Older daemons kept everything in ``bms.json``; its settings are
taken over once (migration) and then live in ``settings.json``.

A lost PIN state (``settings.json`` missing or untrustworthy while the directory shows the daemon
ran before) is loud and never falls back to the public factory PIN: unless the configuration
names a PIN in ``[settings]``, ``pin_lost`` is set and the Bluetooth side refuses every PIN until
the operator runs ``smallbms reset-pin`` (docs/security.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import structlog

from bms_daemon.core.bms import SNAPSHOT_VERSION, Bms
from bms_daemon.core.settings import SettingError, Settings
from bms_daemon.device import NotSavedError

log = structlog.get_logger("smallbms.store")

SETTINGS_NAME = "settings"
COUNTERS_NAME = "bms"  # bms_daemon.persistence.STATE_NAME
SETTINGS_VERSION = 1
COUNTER_PARTS = ("soc", "history", "balancer", "protection", "bank")  # bank: remembered batteries
# documents whose presence shows the daemon ran here before (a first start has none)
EARLIER_RUN_MARKS = (COUNTERS_NAME, "ble", "readout")


class DocumentStore(Protocol):
    """What this module needs of bms_daemon.store.FileStore / MemoryStore."""

    def load(self, name: str) -> dict[str, Any] | None: ...

    def save(self, name: str, data: dict[str, Any], *, secret: bool = False) -> None: ...

    def set_aside(self, name: str, why: str) -> object: ...

    def exists(self, name: str) -> bool: ...


def counters_of(snapshot: Mapping[str, Any]) -> dict[str, Any]:
    """The counters document of a ``Bms.snapshot()`` (everything but the settings)."""
    return {key: value for key, value in snapshot.items() if key != "settings"}


def settings_document(settings: Settings) -> dict[str, Any]:
    """The settings document for ``settings``."""
    return {"version": SETTINGS_VERSION, "settings": settings.as_dict()}


class SettingsFile:
    """Saves the settings at once; ``save`` raises ``NotSavedError`` when the disk refuses."""

    def __init__(self, store: DocumentStore, *, pin_lost: bool = False) -> None:
        self.store = store
        self.saves = 0
        # while the PIN state is lost, the settings in force carry the factory PIN: writing
        # them would make it the trusted PIN at the next start
        self.pin_lost = pin_lost

    def save(self, settings: Settings) -> None:
        if self.pin_lost:
            raise NotSavedError("not saved: the PIN state is lost; run `smallbms reset-pin`")
        try:
            self.store.save(SETTINGS_NAME, settings_document(settings), secret=True)
        except (OSError, ValueError, TypeError) as exc:
            log.error("settings_not_saved", error=str(exc),  # noqa: TRY400
                      action="in force until the next restart only")
            raise NotSavedError(f"not saved ({exc}); the change is lost at the next "
                                "restart") from None
        self.saves += 1


@dataclass(slots=True)
class Restored:
    """What ``restore`` found: the core, the counters on disk, whether the PIN state is lost."""

    bms: Bms
    counters: dict[str, Any] | None
    pin_lost: bool = False
    settings_on_disk: bool = False  # settings.json holds these settings already


def _load_settings(store: DocumentStore) -> Settings | None:
    document = store.load(SETTINGS_NAME)
    if document is None:
        return None
    version = document.get("version")
    values = document.get("settings")
    problem = ""
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        problem = f"no usable version ({version!r})"
    elif version > SETTINGS_VERSION:
        problem = f"version {version} is newer than this daemon's {SETTINGS_VERSION}"
    elif not isinstance(values, dict):
        problem = "settings must be a table"
    elif "pin" not in values:
        problem = "no PIN in the settings"  # we always write one: this file is not ours
    else:
        try:
            return Settings().with_values(values)
        except (SettingError, ValueError, TypeError) as exc:
            problem = f"settings: {exc}"
    store.set_aside(SETTINGS_NAME, problem)
    return None


def _restore_counters(store: DocumentStore,
                      settings: Settings) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The counter parts that can be trusted (each alone), and the old-format settings table."""
    document = store.load(COUNTERS_NAME)
    if document is None:
        return {}, None
    version = document.get("version", SNAPSHOT_VERSION)
    if not isinstance(version, int) or isinstance(version, bool) or not (
        1 <= version <= SNAPSHOT_VERSION
    ):
        store.set_aside(COUNTERS_NAME, f"unsupported version {version!r}")
        return {}, None
    good: dict[str, Any] = {"version": version}
    bad: list[str] = []
    for part in COUNTER_PARTS:
        if part not in document:
            continue
        try:
            Bms(settings=settings, saved={"version": version, part: document[part]})
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError,
                RecursionError) as exc:
            bad.append(f"{part} ({exc})")
        else:
            good[part] = document[part]
    if bad:
        # the file goes aside as it was (for a human); the good parts are saved again soon
        store.set_aside(COUNTERS_NAME, "untrustworthy part(s): " + "; ".join(bad))
        log.warning("state_partly_restored", kept=sorted(set(good) - {"version"}),
                    dropped=[b.split(" ", 1)[0] for b in bad])
    old_settings = document.get("settings")
    return good, old_settings if isinstance(old_settings, dict) else None


def restore(store: DocumentStore, seeds: Mapping[str, Any]) -> Restored:
    """The core from the state directory, trusting each part on its own (module docstring).

    ``seeds`` is the configuration's ``[settings]`` table: used on a first start, and for the
    PIN when the PIN state is lost and the configuration names one.
    """
    ran_before = any(store.exists(name) for name in EARLIER_RUN_MARKS)
    had_settings = store.exists(SETTINGS_NAME)
    settings = _load_settings(store)
    from_file = settings is not None
    seed_settings = Settings().with_values(dict(seeds))
    counters, old_settings = _restore_counters(store, settings or seed_settings)
    pin_lost = False
    if settings is None and old_settings is not None and not had_settings:
        try:
            settings = Settings().with_values(old_settings)
            log.info("settings_migrated", to=SETTINGS_NAME,
                     why="settings now live apart from SOC and history")
        except (SettingError, ValueError, TypeError) as exc:
            log.error("state_settings_untrustworthy", problem=str(exc))  # noqa: TRY400
    if settings is None:
        settings = seed_settings
        if had_settings or ran_before:
            if "pin" in seeds:
                log.error("pin_state_lost", action="the PIN of the configuration's [settings] "
                          "is in force", settings="configuration seeds")
            else:
                pin_lost = True
                log.error("pin_state_lost",
                          action="Bluetooth refuses every PIN until the operator runs "
                                 "`smallbms reset-pin` (docs/security.md)",
                          settings="configuration seeds")
        else:
            log.info("state_fresh", soc="unknown", settings_seeded=sorted(seeds))
    elif seeds:
        log.info("settings_seeds_ignored", seeds=sorted(seeds),
                 why="stored settings win after the first start")
    kept = counters if len(counters) > 1 else None
    return Restored(bms=Bms(settings=settings, saved=kept), counters=kept, pin_lost=pin_lost,
                    settings_on_disk=from_file)
