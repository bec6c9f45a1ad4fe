"""Command topics -> the same ``DeviceControl`` calls as Bluetooth, with every refusal explained.

Only subscribed when ``[mqtt] allow_control = true``.  A message is acted on only if it is live
(a retained command would otherwise be replayed at every reconnection, or by whoever left it
there long ago), short, valid UTF-8, for a known setting or command, and within the rate limit.
Values then go through ``DeviceControl.set_setting`` / ``command``: the validation is the one the
BLE side uses (``Settings.with_value``, ``Bms.command``), so MQTT cannot set what BLE may not.
The PIN is never settable over MQTT.  Pure apart from the device it calls: time is passed in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import structlog

from bms_daemon.core.bms import COMMANDS
from bms_daemon.core.settings import SettingError, Settings
from bms_daemon.device import DeviceControl, NotSavedError
from bms_daemon.mqtt import topics as t
from bms_daemon.mqtt.discovery import PRESS
from bms_daemon.mqtt.outbox import TokenBucket
from bms_daemon.mqtt.topics import Topics

log = structlog.get_logger("smallbms.mqtt")

MAX_PAYLOAD_BYTES = 64  # the longest legitimate value is a number or ON/OFF/PRESS
BURST = 20  # commands acted on at once ...
PER_SECOND = 2.0  # ... and then this many per second; the rest are refused
NOT_OVER_MQTT = frozenset({"pin"})
DEFAULT_WORDS = frozenset({"default", "none", "null"})  # charged_voltage back to 3.50 V/cell


@dataclass(frozen=True, slots=True)
class Answer:
    """What is published on ``<base>/result`` for one command message."""

    topic: str  # relative to the base topic, e.g. "set/tail_current"
    accepted: bool
    message: str
    value: str = ""  # the payload as received (cut to MAX_PAYLOAD_BYTES), for the log

    def as_dict(self) -> dict[str, object]:
        return {"topic": self.topic, "accepted": self.accepted, "message": self.message,
                "value": self.value}


class CommandHandler:
    """Turns one received message into at most one device call and an ``Answer``."""

    def __init__(self, device: DeviceControl, topics: Topics) -> None:
        self.device = device
        self.topics = topics
        self.bucket = TokenBucket(BURST, PER_SECOND)
        self.refused = 0
        self.accepted = 0

    def handle(self, topic: str, payload: bytes, *, retain: bool, now: float) -> Answer | None:
        """The answer to a message on a command topic; None for a topic that is not one."""
        relative = self.topics.relative(topic)
        if relative is None or not relative.startswith((t.SET + "/", t.COMMAND + "/")):
            return None
        value = payload[:MAX_PAYLOAD_BYTES].decode("utf-8", "replace")
        answer = self._answer(relative, payload, retain=retain, now=now, value=value)
        if answer.accepted:
            self.accepted += 1
            log.info("mqtt_command", topic=relative, result=answer.message)
        else:
            self.refused += 1
            log.warning("mqtt_command_refused", topic=relative, value=value,
                        reason=answer.message)
        return answer

    def _answer(self, relative: str, payload: bytes, *, retain: bool, now: float,
                value: str) -> Answer:
        def refuse(message: str) -> Answer:
            return Answer(relative, False, message, value)

        if retain:
            return refuse("ignored: a retained command is never acted on; publish it without "
                          "the retain flag (and clear the retained one with an empty message)")
        if not self.bucket.allow(now):
            return refuse(f"ignored: more than {BURST} commands in a burst (at most "
                          f"{PER_SECOND:g} per second)")
        if len(payload) > MAX_PAYLOAD_BYTES:
            return refuse(f"payload too long ({len(payload)} bytes, at most {MAX_PAYLOAD_BYTES})")
        try:
            text = payload.decode("utf-8").strip()
        except UnicodeDecodeError:
            return refuse("payload is not UTF-8 text")
        kind, _, name = relative.partition("/")
        try:
            message = self._set(name, text) if kind == t.SET else self._command(name, text)
        except SettingError as exc:
            return refuse(str(exc))
        except NotSavedError as exc:  # in force, but lost at the next restart: say so
            return refuse(f"in force but {exc}")
        except Exception as exc:  # a bug must not end the MQTT task; nothing was promised
            log.exception("mqtt_command_failed", topic=relative)
            return refuse(f"internal error: {type(exc).__name__}")
        return Answer(relative, True, message, value)

    def _set(self, name: str, text: str) -> str:
        if name in NOT_OVER_MQTT:
            raise SettingError(f"{name} cannot be changed over MQTT (use Bluetooth)")
        if name not in Settings.names():
            known = ", ".join(n for n in Settings.names() if n not in NOT_OVER_MQTT)
            raise SettingError(f"unknown setting {name!r}; known settings: {known}")
        value: object = text
        if name == "charged_voltage" and text.lower() in DEFAULT_WORDS:
            value = None
        new = self.device.set_setting(name, value)
        shown = getattr(new, name)
        if isinstance(shown, bool):
            return f"{name} set to {'on' if shown else 'off'}"
        return f"{name} set to {'default' if shown is None else f'{shown:g}'}"

    def _command(self, name: str, text: str) -> str:
        if name not in COMMANDS:
            raise SettingError(f"unknown command {name!r}; known commands: {', '.join(COMMANDS)}")
        if name == "set_soc":
            try:
                number = float(text.rstrip("%").strip())
            except ValueError:
                raise SettingError(f"set_soc needs a number 0-100, not {text!r}") from None
            if not math.isfinite(number):
                raise SettingError(f"set_soc needs a finite number 0-100, not {text!r}")
            return self.device.command("set_soc", number)
        if text.upper() != PRESS:
            raise SettingError(f"{name} runs only with the payload {PRESS} (got {text!r})")
        return self.device.command(name)
