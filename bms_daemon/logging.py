"""Structured logs that read well on a terminal and filter well in the journal.

On a terminal: structlog's coloured console renderer.  Under systemd (or any pipe): one line per
event, logfmt (default) or JSON, no colours, no timestamp (journald adds its own), prefixed with a
kernel-style ``<N>`` priority that journald turns into the entry's priority, so
``journalctl -u smallbms -p warning`` shows warnings and worse.  Third-party libraries that use
the standard ``logging`` module (bless, bleak, dbus) go through the same renderer.

The daemon logs *events* (an output changed, a code appeared, a sync, a save failed), never one
line per sample: the SD card and journald's rate limit are both finite.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

LEVELS = ("debug", "info", "warning", "error", "critical")
FORMATS = ("auto", "console", "logfmt", "json")
# syslog priorities journald understands in a "<N>" prefix
_PRIORITY = {"debug": 7, "info": 6, "warning": 4, "warn": 4, "error": 3, "critical": 2,
             "exception": 3}
# quieter third-party libraries: their INFO chatter is not our events
THIRD_PARTY_LEVEL = logging.WARNING


class _PrefixedRenderer:
    """Render with ``inner`` and prepend the journald priority of the event's level."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __call__(self, logger: Any, method: str, event_dict: MutableMapping[str, Any]) -> str:
        level = str(event_dict.get("level", method)).lower()
        rendered = self.inner(logger, method, event_dict)
        return f"<{_PRIORITY.get(level, 6)}>{rendered}"


def choose_format(requested: str, stream: TextIO) -> str:
    """``auto`` = console on a terminal, logfmt otherwise (journald, pipes, files)."""
    if requested != "auto":
        return requested
    try:
        return "console" if stream.isatty() and "JOURNAL_STREAM" not in os.environ else "logfmt"
    except (AttributeError, ValueError):
        return "logfmt"


def configure(level: str = "info", fmt: str = "auto", stream: TextIO | None = None) -> str:
    """Set up structlog and the standard ``logging`` module; returns the format chosen."""
    out = stream if stream is not None else sys.stderr
    if level not in LEVELS:
        raise ValueError(f"log level must be one of {', '.join(LEVELS)}, not {level!r}")
    if fmt not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    chosen = choose_format(fmt, out)
    numeric = getattr(logging, level.upper())

    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
    ]
    renderer: Any
    if chosen == "console":
        shared.append(structlog.processors.TimeStamper(fmt="%H:%M:%S", utc=False))
        renderer = structlog.dev.ConsoleRenderer(colors=True)
    elif chosen == "json":
        shared.append(structlog.processors.dict_tracebacks)
        renderer = _PrefixedRenderer(structlog.processors.JSONRenderer(sort_keys=False))
    else:
        shared.append(structlog.processors.format_exc_info)
        renderer = _PrefixedRenderer(
            structlog.processors.LogfmtRenderer(key_order=["level", "event"], bool_as_flag=False)
        )

    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )

    # Route the standard library (bless, bleak, dbus, asyncio) through the same renderer.
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processor=renderer,
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(numeric, THIRD_PARTY_LEVEL) if numeric < THIRD_PARTY_LEVEL else numeric)
    return chosen


class EventLimiter:
    """Rate limit for repeated events of one kind (an attacker's refused writes and wrong PINs,
    a central's connection churn): the log of an SD card must not grow with an attack.

    Per kind, the first ``burst`` events of each ``window_s`` are logged as usual; the rest are
    only counted, and ``summaries`` (called periodically) yields one line per kind with the
    count once its window is over.  The first event of every kind is always logged.  Pure:
    time is passed in.
    """

    def __init__(self, *, burst: int = 5, window_s: float = 60.0) -> None:
        self.burst = burst
        self.window_s = window_s
        self._windows: dict[str, tuple[float, int, int]] = {}  # kind -> start, seen, hidden

    def allow(self, kind: str, now: float) -> bool:
        """Whether to log this event of ``kind`` (False: it is counted for the summary)."""
        start, seen, hidden = self._windows.get(kind, (now, 0, 0))
        if now - start >= self.window_s and not hidden:
            start, seen = now, 0
        seen += 1
        allowed = seen <= self.burst
        self._windows[kind] = (start, seen, hidden + (0 if allowed else 1))
        return allowed

    def summaries(self, now: float) -> list[tuple[str, int, float]]:
        """(kind, events not logged, seconds they span) for every window that is over."""
        done: list[tuple[str, int, float]] = []
        for kind, (start, _seen, hidden) in list(self._windows.items()):
            if now - start < self.window_s:
                continue
            if hidden:
                done.append((kind, hidden, now - start))
            del self._windows[kind]
        return done
