"""The MQTT task: one connection to the broker, kept up with backoff, publishing the BMS.

The control loop's only contact with this module is ``on_status`` (a listener of the
controller): it stores the status and sets an event, nothing else.  Everything else happens in
``run``, a task of its own: connecting (aiomqtt does the blocking connect in a worker thread),
discovery, rendering payloads from the newest status, rate limiting, publishing, and commands.
While the broker is away nothing accumulates: on reconnection the newest state is rendered and
published (with discovery and ``online``), so what queues is bounded by the number of topics.

Connection problems are logged once per change (connected, lost, each new kind of failure), not
at every retry; retries back off from 1 s to a minute.  A clean stop publishes ``offline``
before disconnecting; any other end of the connection makes the broker publish the last will,
also ``offline``.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiomqtt
import structlog
from paho.mqtt.subscribeoptions import SubscribeOptions

from bms_daemon import __version__
from bms_daemon.core.types import Status
from bms_daemon.device import DeviceControl
from bms_daemon.mqtt import discovery, payloads
from bms_daemon.mqtt import topics as t
from bms_daemon.mqtt.config import MqttConfig
from bms_daemon.mqtt.control import CommandHandler
from bms_daemon.mqtt.outbox import Message, Outbox, Throttle
from bms_daemon.mqtt.topics import Topics

log = structlog.get_logger("smallbms.mqtt")

RETRY_FIRST_S = 1.0
RETRY_MAX_S = 60.0
OFFLINE_TIMEOUT_S = 2.0  # a clean stop waits this long for "offline" to be acknowledged
HISTORY_INTERVAL_S = 60.0  # the history counters at most once a minute
QOS = 1


def software_version() -> str:
    try:
        return importlib.metadata.version("smallbms")
    except importlib.metadata.PackageNotFoundError:
        return __version__


def intervals(topics: Topics, interval_s: float) -> dict[str, float]:
    """Per state topic: how often it may speak.  On/off states, codes and settings at once."""
    return {
        topics(t.STATE): interval_s,
        topics(t.CELLS): interval_s,
        topics(t.HISTORY): max(interval_s, HISTORY_INTERVAL_S),
    }


class MqttService:
    """Publishes the device on a broker; run ``run()`` as a task, ``stop()`` to end cleanly."""

    def __init__(
        self,
        config: MqttConfig,
        device: DeviceControl,
        serial: str,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.device = device
        self.clock = clock
        self.topics = Topics(config.base_topic or f"smallbms/{serial}", config.discovery_prefix)
        self.device_info = discovery.Device(
            serial=serial, name=config.device_name or f"smallBMS {serial}",
            sw_version=software_version())
        self.client_id = config.client_id or f"smallbms-{serial}"
        self.handler = CommandHandler(device, self.topics)
        self.outbox = Outbox()
        self.throttle = Throttle(intervals(self.topics, config.interval_s))
        self.connected = False
        self.connections = 0  # successful connections so far
        self.published = 0  # messages handed to the broker (discovery included)
        self._latest: Status | None = None
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._discovery_due = ""  # why discovery is to be sent again ("" = it is not)
        self._shape: tuple[int, ...] = ()
        self._series = 0
        self._problem: str | None = None
        self._sent: dict[str, dict[str, Any]] = {}  # topic -> the document last queued

    # --- the control loop's side: O(1), never blocks --------------------------------------------
    def on_status(self, status: Status) -> None:
        """Controller listener: remember the newest status, wake the MQTT task."""
        self._latest = status
        self._wake.set()

    def stop(self) -> None:
        """Ask ``run`` to publish ``offline`` and disconnect."""
        self._stop.set()
        self._wake.set()

    # --- the connection ----------------------------------------------------------------------
    async def run(self) -> None:
        """Connect, publish, reconnect with backoff; returns after ``stop()``."""
        delay = RETRY_FIRST_S
        while not self._stop.is_set():
            try:
                client = self._client()
                async with client:
                    self._connected()
                    delay = RETRY_FIRST_S
                    await self._session(client)
                    await client.publish(self.topics.availability, t.OFFLINE, qos=QOS,
                                         retain=True, timeout=OFFLINE_TIMEOUT_S)
                    log.info("mqtt_offline_published", topic=self.topics.availability)
            except aiomqtt.MqttError as exc:
                self._failed(str(exc) or type(exc).__name__)
            except OSError as exc:  # the password file, mostly
                self._failed(str(exc))
            else:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=delay)
            delay = min(delay * 2, RETRY_MAX_S)
        self.connected = False

    def _client(self) -> aiomqtt.Client:
        config = self.config
        password = None
        if config.password_file:
            try:
                lines = Path(config.password_file).read_text(encoding="utf-8").splitlines()
            except (OSError, UnicodeDecodeError) as exc:
                raise OSError(f"cannot read password_file {config.password_file}: "
                              f"{getattr(exc, 'strerror', None) or exc}") from None
            password = lines[0] if lines else ""
        tls = None
        if config.tls:
            tls = aiomqtt.TLSParameters(ca_certs=config.ca_file or None,
                                        certfile=config.cert_file or None,
                                        keyfile=config.key_file or None)
        return aiomqtt.Client(
            config.host, config.broker_port,
            username=config.username or None, password=password,
            identifier=self.client_id, keepalive=config.keepalive_s, tls_params=tls,
            will=aiomqtt.Will(self.topics.availability, t.OFFLINE, qos=QOS, retain=True),
            protocol=aiomqtt.ProtocolVersion.V5,
            timeout=10.0,
        )

    def _connected(self) -> None:
        self.connected = True
        self.connections += 1
        log.info("mqtt_connected", broker=f"{self.config.host}:{self.config.broker_port}",
                 topic=self.topics.base, client_id=self.client_id,
                 after_problem=self._problem)
        self._problem = None

    def _failed(self, problem: str) -> None:
        was_connected = self.connected
        self.connected = False
        if was_connected:
            log.warning("mqtt_disconnected", problem=problem, action="reconnecting with backoff")
        elif problem != self._problem:
            log.warning("mqtt_unreachable", broker=f"{self.config.host}:"
                        f"{self.config.broker_port}", problem=problem,
                        action="retrying with backoff (up to once a minute); protection is "
                               "not affected")
        self._problem = problem

    # --- one connected session ---------------------------------------------------------------
    async def _session(self, client: aiomqtt.Client) -> None:
        topics = self.topics
        if topics.discovery_prefix:
            await client.subscribe(topics.birth, qos=QOS)
        if self.config.allow_control:
            # MQTT 5's "retain as published": a command published retained while we are
            # subscribed still shows its retain flag, so it is refused like a stale one
            options = SubscribeOptions(qos=QOS, retainAsPublished=True)
            for pattern in topics.subscriptions:
                await client.subscribe(pattern, options=options)
        self._forget()  # the broker may have lost its retained messages: send all
        self._discovery_due = "connected" if topics.discovery_prefix else ""
        self.outbox.put(Message(topics.availability, t.ONLINE.encode()))
        receiver = asyncio.create_task(self._receive(client), name="mqtt-receive")
        try:
            await self._send(client, receiver)
        finally:
            receiver.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await receiver
        if receiver.done() and not receiver.cancelled():
            raise receiver.exception() or aiomqtt.MqttError("the broker ended the connection")

    async def _send(self, client: aiomqtt.Client, receiver: asyncio.Task[None]) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            if receiver.done():
                return
            self._render(self.clock())
            if self._discovery_due:
                why, self._discovery_due = self._discovery_due, ""
                await self._publish_discovery(client, why)
            while (message := self.outbox.pop()) is not None:
                try:
                    await client.publish(message.topic, message.payload, qos=message.qos,
                                         retain=message.retain)
                except aiomqtt.MqttError:
                    self.outbox.requeue(message)
                    raise
                self.published += 1
            timeout = self.throttle.next_due(self.clock())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=timeout)

    async def _receive(self, client: aiomqtt.Client) -> None:
        try:
            async for message in client.messages:
                self._received(str(message.topic), _bytes(message.payload),
                               retain=bool(message.retain))
        finally:
            self._wake.set()  # the sender notices the end of the connection at once

    def _received(self, topic: str, payload: bytes, *, retain: bool) -> None:
        if self.topics.discovery_prefix and topic == self.topics.birth:
            if payload.strip() == t.ONLINE.encode():
                log.info("mqtt_home_assistant_online", action="sending discovery again")
                self._discovery_due = "home_assistant_online"
                self._forget()
                self._wake.set()
            return
        if not self.config.allow_control:
            return
        answer = self.handler.handle(topic, payload, retain=retain, now=self.clock())
        if answer is not None:
            self.outbox.put(Message(self.topics(t.RESULT), payloads.encode(answer.as_dict()),
                                    retain=False))
            self._wake.set()

    # --- what is published -------------------------------------------------------------------
    def _forget(self) -> None:
        """Everything counts as never sent: the next render publishes every state topic."""
        self.throttle.forget()
        self._sent.clear()

    def _render(self, now: float) -> None:
        """Offer each state topic that may speak its newest payload; queue what changed."""
        status = self._latest
        if status is None:
            return
        bank = status.bank
        shape = tuple(len(b.cell_voltages) for b in bank.battery_list) if bank else ()
        grown = tuple(max(a, b) for a, b in zip(shape, self._shape, strict=False))
        grown += shape[len(grown):] + self._shape[len(grown):]
        series = payloads.cells_in_series(status)
        if grown != self._shape or (series and series != self._series):
            self._shape, self._series = grown, series or self._series
            if self.topics.discovery_prefix:
                self._discovery_due = self._discovery_due or "bank_grew"
        for name in t.STATE_TOPICS:
            topic = self.topics(name)
            if not self.throttle.due(topic, now):  # not even rendered before it may go
                continue
            document = payloads.render(name, status, self.device.history, self.device.settings)
            if document == self._sent.get(topic):  # unchanged: not even encoded
                continue
            payload = payloads.encode(document)
            if self.throttle.offer(topic, payload, now):
                self._sent[topic] = document
                self.outbox.put(Message(topic, payload))

    async def _publish_discovery(self, client: aiomqtt.Client, why: str) -> None:
        configs = discovery.configs(self.topics, self.device_info, self._shape,
                                    self.config.allow_control, self._series)
        for topic, config in configs.items():
            payload = b"" if config is None else payloads.encode(config)
            await client.publish(topic, payload, qos=QOS, retain=True)
            self.published += 1
        log.info("mqtt_discovery_published", why=why,
                 entities=sum(c is not None for c in configs.values()),
                 prefix=self.topics.discovery_prefix, device=self.device_info.name)


def _bytes(payload: Any) -> bytes:
    if isinstance(payload, bytes | bytearray):
        return bytes(payload)
    if payload is None:
        return b""
    return str(payload).encode()
