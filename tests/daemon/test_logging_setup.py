"""Log output: journald priority prefixes, logfmt/JSON off a terminal."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from bms_daemon import logging as smallbms_logging


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    structlog.reset_defaults()
    root.handlers[:] = handlers
    root.setLevel(level)


def test_logfmt_lines_carry_the_journald_priority() -> None:
    out = io.StringIO()
    assert smallbms_logging.configure("info", "auto", out) == "logfmt"
    log = structlog.get_logger("t")
    log.info("outputs", load="high")
    log.warning("code_raised", code="W-B01")
    log.error("hardware_error", code="E-B11")
    log.debug("not shown")
    lines = out.getvalue().splitlines()
    assert lines == [
        "<6>level=info event=outputs load=high",
        "<4>level=warning event=code_raised code=W-B01",
        "<3>level=error event=hardware_error code=E-B11",
    ]


def test_json_format() -> None:
    out = io.StringIO()
    smallbms_logging.configure("debug", "json", out)
    structlog.get_logger().debug("tick", n=1)
    line = out.getvalue().strip()
    assert line.startswith("<7>")
    assert json.loads(line[3:]) == {"event": "tick", "n": 1, "level": "debug"}


def test_console_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    assert smallbms_logging.configure("info", "auto", _Tty()) == "console"
    monkeypatch.setenv("JOURNAL_STREAM", "8:1234")
    assert smallbms_logging.configure("info", "auto", _Tty()) == "logfmt"


def test_standard_library_loggers_share_the_format() -> None:
    out = io.StringIO()
    smallbms_logging.configure("info", "logfmt", out)
    logging.getLogger("bless").warning("advert failed")
    logging.getLogger("bless").info("chatter")
    assert out.getvalue().splitlines() == ['<4>level=warning event="advert failed" logger=bless']


def test_bad_level_is_refused() -> None:
    with pytest.raises(ValueError, match="log level"):
        smallbms_logging.configure("loud", "auto", io.StringIO())
