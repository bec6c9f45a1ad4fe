"""An async client for smallbms over BLE, on bleak.

It speaks the profile of ``docs/gatt-profile.md`` through the same codecs as the server
(:mod:`gatt.profile`, :mod:`gatt.codec`, :mod:`gatt.security`), so the two sides cannot drift.
This module is the connected client (``SmallBmsClient``); finding devices is in
:mod:`gatt.client_scan` and the typed errors in :mod:`gatt.client_errors`, all re-exported
here.  Every failure a user can meet is one of those errors: bleak's and D-Bus's own
exceptions never escape.

Typical use::

    async with SmallBmsClient("smallBMS NG", pin="000000") as bms:
        status = await bms.status()
        await bms.set_setting("discharge_floor", 15)
        async for status in bms.watch():
            ...
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import math
import re
import secrets
import struct
from collections.abc import AsyncIterator, Callable
from types import TracebackType
from typing import Any, Self, TypeVar

from bleak import BleakClient
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.device import BLEDevice
from bleak.exc import (
    BleakDBusError,
    BleakError,
    BleakGATTProtocolError,
)

from bms_daemon.core.types import BankStatus, BatteryStatus, History
from gatt import codec, profile, security
from gatt.agent import optional_just_works_agent
from gatt.client_defaults import (
    COMMANDS,
    CONNECT_TIMEOUT_DEFAULT,
    PIN_ENV_VAR,
    SCAN_TIMEOUT_DEFAULT,
)
from gatt.client_errors import (
    ClientError,
    DeviceNotFound,
    LinkLost,
    NoBluetooth,
    NotAuthenticated,
    NotSmallBms,
    PairingFailed,
    RejectedValue,
    WrongPin,
    translate,
    translating,
)
from gatt.client_scan import (
    ScanResult,
    bluez_args,
    default_adapter,
    find_device,
    scan,
)

__all__ = [
    "COMMANDS",
    "CONNECT_TIMEOUT_DEFAULT",
    "PIN_ENV_VAR",
    "PIN_FORMAT",
    "SCAN_TIMEOUT_DEFAULT",
    "ClientError",
    "DeviceNotFound",
    "LinkLost",
    "NoBluetooth",
    "NotAuthenticated",
    "NotSmallBms",
    "PairingFailed",
    "RejectedValue",
    "ScanResult",
    "SmallBmsClient",
    "WrongPin",
    "check_pin",
    "default_adapter",
    "find_device",
    "scan",
    "translate",
]

_T = TypeVar("_T")

# Our own choices, in one place (documented in docs/client.md).
REPLY_TIMEOUT = 5.0  # s to wait for a control-point indication or an auth answer
SENT_KEYS_KEPT = 64  # session keys of our last writes, to unmask their results
REASON_TIMEOUT = 1.0  # s to wait for the reason of a refused setting after the ATT error
WATCH_REFRESH_S = 2.0  # s without a status notification before `watch` reads it itself
BATTERY_SELECT_ATTEMPTS = 3  # another central may move the shared battery selection
FIRST_SEQ_RANGE = 1 << 30  # sessions start at a random sequence number (see _next_seq)
ATT_TIMEOUT_S = 30.0  # s for one read or write (the ATT transaction timeout of the spec)


# --------------------------------------------------------------------------------------------
# the connected client
# --------------------------------------------------------------------------------------------
SettingValue = bool | float | None


def _parse_setting(name: str, value: object) -> SettingValue:
    """A user's value (``"15"``, ``"14.2V"``, ``"on"``, ``"auto"``) as the setting's type.

    Only the type is checked here; ranges and consistency are the BMS's to judge, so the
    client never disagrees with the device it talks to."""
    codec_ = codec.SETTING_CODECS[name]
    if codec_.fmt == "B":
        if isinstance(value, bool):
            return value
        word = str(value).strip().lower()
        if word in _BOOL_WORDS:
            return _BOOL_WORDS[word]
        raise RejectedValue(f"{name} must be on or off, not {value!r}", reason="not on/off")
    if value is None or (codec_.zero_is_none and str(value).strip().lower() in _AUTO_WORDS):
        if codec_.zero_is_none:
            return None
        raise RejectedValue(f"{name} needs a value", reason="empty")
    if isinstance(value, bool):
        raise RejectedValue(f"{name} must be a number, not {value!r}", reason="not a number")
    if isinstance(value, int | float):
        number = float(value)
    else:
        try:
            number = float(str(value).strip().rstrip("%VvAamin ").strip())
        except ValueError:
            raise RejectedValue(
                f"{name} must be a number, not {value!r}", reason="not a number"
            ) from None
    if not math.isfinite(number):
        raise RejectedValue(f"{name} must be a finite number", reason="not a number")
    return number


_LINK_GONE_ERRORS = frozenset({
    "org.freedesktop.DBus.Error.UnknownObject",
    "org.freedesktop.DBus.Error.UnknownMethod",
    "org.freedesktop.DBus.Error.ServiceUnknown",
    "org.freedesktop.DBus.Error.NoReply",
    "org.bluez.Error.NotConnected",
})
_BOOL_WORDS = {"on": True, "off": False, "true": True, "false": False, "1": True, "0": False,
               "yes": True, "no": False}
_AUTO_WORDS = {"auto", "default", "none", "0"}


PIN_FORMAT = re.compile(r"[0-9]{6}")  # what the device's PIN is: exactly 6 digits


def check_pin(pin: str) -> str:
    """``pin`` if it has the PIN's form (6 digits); else ``ClientError`` (exit status 2).

    Checked before anything is sent: a malformed PIN can never be right, and sending it would
    only count as one more wrong answer against the device's lock-out.
    """
    if not PIN_FORMAT.fullmatch(pin):
        raise ClientError(
            f"the PIN is exactly 6 digits (the factory PIN is 000000), not {pin!r}; "
            "nothing was sent to the device",
            exit_code=2,
        )
    return pin


class SmallBmsClient:
    """One connection to one smallbms; use as ``async with``.

    Protected operations authenticate on first use with the PIN given here (the PIN never
    crosses the air: gatt/security.py).  The server closes every PIN session whenever any
    central connects or disconnects, so an operation refused for authorisation is retried
    once after authenticating again; only a second refusal reaches the caller.
    """

    def __init__(
        self,
        device: str | BLEDevice | None = None,
        *,
        adapter: str | None = None,
        pin: str | None = None,
        timeout: float | None = None,
    ) -> None:
        self._device = device
        self._adapter = adapter
        self._pin = None if pin is None else check_pin(pin)
        self._timeout = timeout
        self._client: BleakClient | None = None
        self._session: security.ClientSession | None = None
        self._lost = asyncio.Event()
        self._results: dict[int, codec.CommandResult] = {}
        self._sent_with: dict[int, bytes] = {}  # seq -> session key of our protected writes
        self._result_arrived = asyncio.Event()
        self._control_subscribed = False
        self.name = "smallbms"
        self.address = ""

    # --- life cycle ---------------------------------------------------------------------------
    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.disconnect()

    async def connect(self) -> None:
        """Find the device, connect and check it offers the smallbms service."""
        if isinstance(self._device, BLEDevice):
            target = self._device
        else:
            target = await find_device(self._device, wait_s=self._timeout, adapter=self._adapter)
        self.name = target.name or target.address
        self.address = target.address
        client = BleakClient(
            target,
            disconnected_callback=self._on_disconnected,
            timeout=self._timeout if self._timeout is not None else CONNECT_TIMEOUT_DEFAULT,
            bluez=bluez_args(self._adapter),  # type: ignore[arg-type]
        )
        self._lost.clear()
        self._control_subscribed = False  # subscriptions do not survive a new connection
        self._results.clear()
        async with translating(f"connecting to {self.name}"):
            try:
                await client.connect()
            except TimeoutError as exc:
                raise DeviceNotFound(
                    f"{self.name} did not accept the connection within the timeout"
                ) from exc
        self._client = client
        await self._pair(client)
        if client.services.get_service(profile.SMALLBMS.uuid) is None:
            await self.disconnect()
            raise NotSmallBms(
                f"{self.name} does not offer the smallbms service "
                f"({profile.SMALLBMS.uuid}); is it a smallbms?"
            )

    async def _pair(self, client: BleakClient) -> None:
        """Pair (just-works; no-op when already bonded): every characteristic beyond Device
        Information and Battery Level demands an encrypted link (docs/security.md)."""
        try:
            # A headless central has no BlueZ agent, and real BlueZ then refuses Just Works
            # pairing (gatt/agent.py); ours is registered for the pairing only.
            async with optional_just_works_agent():
                await client.pair()
        except BleakDBusError as exc:
            if exc.dbus_error == "org.bluez.Error.AlreadyExists":
                return  # bonded already (a race with bleak's own check): the link is encrypted
            await self.disconnect()
            if exc.dbus_error in (
                "org.bluez.Error.AuthenticationFailed",
                "org.bluez.Error.AuthenticationRejected",
                "org.bluez.Error.AuthenticationCanceled",
                "org.bluez.Error.AuthenticationTimeout",
            ):
                raise PairingFailed(
                    f"{self.name} refused to pair ({exc.dbus_error.rsplit('.', 1)[-1]}); "
                    "remove the old bond (`bluetoothctl remove ADDRESS`) and try again"
                ) from exc
            raise translate(exc, doing=f"pairing with {self.name}") from exc
        except (BleakError, OSError, EOFError, TimeoutError) as exc:
            await self.disconnect()
            raise translate(exc, doing=f"pairing with {self.name}") from exc

    async def disconnect(self) -> None:
        """Close the link (idempotent, never raises)."""
        client, self._client = self._client, None
        self._session = None
        if client is not None:
            with contextlib.suppress(Exception):
                await client.disconnect()

    @property
    def connected(self) -> bool:
        """The link is up."""
        return self._client is not None and self._client.is_connected and not self._lost.is_set()

    def _on_disconnected(self, _client: BleakClient) -> None:
        self._lost.set()
        self._session = None

    def _bleak(self) -> BleakClient:
        if self._client is None or self._lost.is_set():
            raise LinkLost(f"the Bluetooth link to {self.name} is lost")
        return self._client

    @contextlib.asynccontextmanager
    async def _link_errors(self, doing: str) -> AsyncIterator[None]:
        """``_errors`` for an operation on an established link: BlueZ answering that the
        object or method is gone means the link went with it (bluetoothd restarted, the
        device was removed), which bleak does not always report as a disconnection."""
        try:
            yield
        except LinkLost as exc:
            # raised by a nested step (the PIN proof, a read): same words, naming the link
            self._lost.set()
            self._session = None
            if self.name in str(exc):
                raise
            raise LinkLost(f"the Bluetooth link to {self.name} was lost while {doing}") from exc
        except ClientError:
            raise
        except (BleakError, OSError, EOFError, TimeoutError) as exc:
            if isinstance(exc, BleakDBusError) and exc.dbus_error in _LINK_GONE_ERRORS:
                error: ClientError = LinkLost(
                    f"the Bluetooth link to {self.name} was lost while {doing} "
                    "(BlueZ restarted or forgot the device)"
                )
            elif isinstance(exc, TimeoutError):
                error = LinkLost(f"the Bluetooth link to {self.name} was lost while {doing} "
                                 "(no answer, timed out)")
            else:
                error = translate(exc, doing=doing)
                if isinstance(error, LinkLost):  # say which link, in the same words each time
                    error = LinkLost(f"the Bluetooth link to {self.name} was lost while {doing}")
            if isinstance(error, LinkLost):
                self._lost.set()
                self._session = None
            raise error from exc

    # --- raw access ---------------------------------------------------------------------------
    @property
    def bleak(self) -> BleakClient:
        """The underlying bleak client (descriptors, raw GATT), for tests and tools."""
        return self._bleak()

    async def write_protected(self, key: str, body: bytes) -> int:
        """Write ``body`` in the session envelope (authenticating if needed), as every
        PIN-protected write travels; returns the sequence number used.  For tools and tests:
        the typed methods below encode the bodies."""
        return await self._write_sealed(key, lambda _s, _k: body)

    async def read_raw(self, key: str) -> bytes:
        """The bytes of a characteristic by its profile key (no authentication)."""
        client = self._bleak()
        async with self._link_errors(f"reading {key}"), asyncio.timeout(ATT_TIMEOUT_S):
            return bytes(await client.read_gatt_char(profile.uuid_of(key)))

    async def write_raw(self, key: str, data: bytes, *, response: bool = True) -> None:
        """Write bytes as they are (no envelope): for tests and the auth exchange."""
        client = self._bleak()
        async with self._link_errors(f"writing {key}"), asyncio.timeout(ATT_TIMEOUT_S):
            await client.write_gatt_char(profile.uuid_of(key), data, response=response)

    # --- authentication -----------------------------------------------------------------------
    async def authenticate(self, pin: str | None = None) -> None:
        """Prove the PIN by challenge-response; raises ``WrongPin`` or ``NotAuthenticated``."""
        if pin is not None:
            self._pin = check_pin(pin)
        if self._pin is None:
            raise NotAuthenticated(
                f"this needs the device's PIN: give --pin or set ${PIN_ENV_VAR} "
                "(the factory PIN is 000000)"
            )
        challenge_bytes = await self.read_raw("auth")
        try:
            challenge = security.decode_challenge(challenge_bytes)
        except codec.CodecError as exc:
            raise NotSmallBms(f"unexpected PIN challenge from {self.name}: {exc}") from exc
        response, session = security.answer_challenge(self._pin, challenge)
        client = self._bleak()
        try:
            await client.write_gatt_char(profile.uuid_of("auth"), response, response=True)
        except BleakGATTProtocolError as exc:
            code = int(exc.code)
            if code == profile.ATT_WRONG_PIN:
                raise WrongPin(f"wrong PIN for {self.name}") from exc
            if code == profile.ATT_LOCKED_OUT:
                raise WrongPin(
                    f"{self.name} refuses PINs for a while after wrong ones (from "
                    f"{security.FIRST_LOCKOUT_S:g} s after one wrong PIN, up to "
                    f"{security.MAX_LOCKOUT_S / 60:g} min after several, from any phone); "
                    "wait and try again with the right PIN"
                ) from exc
            raise translate(exc, doing="sending the PIN proof") from exc
        except (BleakError, OSError, EOFError, TimeoutError) as exc:
            raise translate(exc, doing="sending the PIN proof") from exc
        # a random first sequence number: results are indicated to every subscribed central,
        # so ours are told apart by (opcode, seq); a shared start of 1 would collide
        self._session = security.ClientSession(
            key=session.key, next_seq=1 + secrets.randbelow(FIRST_SEQ_RANGE)
        )

    async def _ensure_session(self) -> security.ClientSession:
        if self._session is None:
            await self.authenticate()
        assert self._session is not None
        return self._session

    @property
    def authenticated(self) -> bool:
        """A PIN session is open on our side (the device may still have closed it)."""
        return self._session is not None

    def _next_seq(self) -> tuple[security.ClientSession, int]:
        session = self._session
        assert session is not None
        seq = session.next_seq
        self._session = security.ClientSession(key=session.key, next_seq=seq + 1)
        return session, seq

    async def _protected(self, key: str, operation: Callable[[], Any]) -> Any:
        """Run a protected read/write, re-authenticating once if the server closed our
        session (it does whenever any central connects or disconnects)."""
        if self._pin is not None:
            await self._ensure_session()
        for attempt in (1, 2):
            try:
                return await operation()
            except ClientError as exc:
                cause = exc.__cause__
                refused = isinstance(cause, BleakGATTProtocolError) and int(cause.code) == (
                    profile.ATT_INSUFFICIENT_AUTHORIZATION
                )
                if not refused:
                    raise
                if attempt == 2 or self._pin is None:
                    raise NotAuthenticated(
                        f"{self.name} refused {key}: "
                        + (
                            "the PIN session was not accepted"
                            if self._pin is not None
                            else f"the PIN is needed (give --pin or set ${PIN_ENV_VAR})"
                        )
                    ) from exc
                self._session = None
                await self._ensure_session()
        raise AssertionError("unreachable")

    async def _read(self, key: str) -> bytes:
        data: bytes = await self._protected(key, lambda: self.read_raw(key))
        return data

    async def _write_sealed(self, key: str, body: Callable[[int, bytes], bytes]) -> int:
        """Write ``body(seq, session_key)`` in the session envelope; returns the seq used."""
        used: list[int] = []

        async def attempt() -> None:
            session, seq = self._next_seq()
            used.append(seq)
            self._sent_with[seq] = session.key  # to unmask the indicated result
            while len(self._sent_with) > SENT_KEYS_KEPT:
                self._sent_with.pop(next(iter(self._sent_with)))
            sealed = security.seal(session.key, profile.uuid_of(key), seq, body(seq, session.key))
            await self.write_raw(key, sealed)

        if self._pin is None:
            raise NotAuthenticated(
                f"changing {key} needs the device's PIN: give --pin or set ${PIN_ENV_VAR}"
            )
        await self._protected(key, attempt)
        return used[-1]

    # --- control point ------------------------------------------------------------------------
    async def _subscribe_results(self) -> None:
        if self._control_subscribed:
            return
        client = self._bleak()

        def on_result(_char: BleakGATTCharacteristic, data: bytearray) -> None:
            try:
                result = codec.decode_result(bytes(data))
            except codec.CodecError:
                return  # not ours to judge; a newer profile's result
            key = self._sent_with.get(result.seq)
            if key is None:
                return  # another central's: its data is masked for its session, not ours
            result = dataclasses.replace(
                result, data=security.mask_result(key, result.seq, result.data))
            self._results[result.seq] = result
            self._result_arrived.set()

        async with self._link_errors("subscribing to command results"):
            await client.start_notify(profile.uuid_of("control_point"), on_result)
        self._control_subscribed = True

    async def _await_result(self, opcode: int, seq: int, within: float) -> codec.CommandResult:
        """The indication answering our write ``seq`` (other centrals' results are ignored)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            result = self._results.pop(seq, None)
            if result is not None and result.opcode == opcode:
                return result
            self._result_arrived.clear()
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError
            lost = asyncio.ensure_future(self._lost.wait())
            arrived = asyncio.ensure_future(self._result_arrived.wait())
            try:
                await asyncio.wait({lost, arrived}, timeout=remaining,
                                   return_when=asyncio.FIRST_COMPLETED)
            finally:
                lost.cancel()
                arrived.cancel()
            if self._lost.is_set():
                raise LinkLost(f"the Bluetooth link to {self.name} was lost awaiting the result")

    async def _run_command(self, opcode: int, argument: Callable[[int, bytes], bytes],
                           what: str) -> codec.CommandResult:
        await self._subscribe_results()
        seq = await self._write_sealed(
            "control_point", lambda s, k: codec.encode_command(opcode, argument(s, k))
        )
        try:
            result = await self._await_result(opcode, seq, REPLY_TIMEOUT)
        except TimeoutError:
            raise LinkLost(
                f"{self.name} did not answer {what} within {REPLY_TIMEOUT:g} s"
            ) from None
        if result.result == codec.RESULT_REJECTED:
            raise RejectedValue(f"{what} rejected: {result.message}", reason=result.message)
        if not result.ok:
            raise ClientError(f"{what} failed on {self.name}: {result.message}")
        return result

    async def command_result(self, body: bytes) -> codec.CommandResult:
        """Write a raw control-point body (opcode + argument) and return the indicated result
        as it is, rejected or not: for tools and tests; ``command`` is the typed way."""
        if not body:
            raise RejectedValue("a command needs at least its opcode", reason="empty")
        await self._subscribe_results()
        seq = await self.write_protected("control_point", body)
        try:
            return await self._await_result(body[0], seq, REPLY_TIMEOUT)
        except TimeoutError:
            raise LinkLost(f"{self.name} did not answer within {REPLY_TIMEOUT:g} s") from None

    async def command(self, name: str, argument: str | float | None = None) -> str:
        """Run a command by name; returns the device's confirmation.

        ``set_soc`` (0-100), ``synchronise``, ``mode`` (on/off), ``reset_history``,
        ``factory_reset``, ``bluetooth_off``, ``change_pin`` (6 digits), ``confirm_bank``."""
        name = _COMMAND_ALIASES.get(name, name)
        if name == "set_soc":
            soc = _number(argument, "set_soc needs the SOC in % (0-100), e.g. 80")
            try:
                body = codec.encode_set_soc(soc)
            except codec.CodecError as exc:
                raise RejectedValue(str(exc), reason=str(exc)) from None
            result = await self._run_command(codec.OP_SET_SOC, lambda _s, _k: body[1:], name)
        elif name in ("mode", "mode_on", "mode_off"):
            on = _mode_argument(name, argument)
            result = await self._run_command(codec.OP_MODE, lambda _s, _k: bytes([int(on)]),
                                             "mode " + ("on" if on else "off"))
        elif name == "change_pin":
            new_pin = str(argument or "").strip()
            if not PIN_FORMAT.fullmatch(new_pin):
                raise RejectedValue("change_pin needs the new PIN: exactly 6 digits",
                                    reason="pin must be 6 digits")
            result = await self._run_command(
                codec.OP_CHANGE_PIN, lambda s, k: security.mask_pin(k, s, new_pin), name
            )
            # the device closed every session with the old PIN
            self._pin = new_pin
            self._session = None
        elif name in _PLAIN_COMMANDS:
            if argument is not None:
                raise RejectedValue(f"{name} takes no argument", reason="no argument expected")
            result = await self._run_command(_PLAIN_COMMANDS[name], lambda _s, _k: b"", name)
        else:
            raise RejectedValue(
                f"unknown command {name!r}; known: {', '.join(COMMANDS)}", reason="unknown"
            )
        return result.message or f"{name}: done"

    async def readout_key(self) -> bytes:
        """The instant-readout key (16 bytes), read over the PIN session, masked in transit."""
        await self._subscribe_results()
        await self._ensure_session()
        session_key = b""

        def argument(_seq: int, key: bytes) -> bytes:
            nonlocal session_key
            session_key = key
            return b""

        result = await self._run_command(codec.OP_READ_KEY, argument, "reading the key")
        if len(result.data) != codec.READOUT_KEY_SIZE:
            raise NotSmallBms(f"{self.name} sent a key of {len(result.data)} bytes")
        return security.unmask_key(session_key, result.seq, result.data)

    # --- reading ------------------------------------------------------------------------------
    async def status(self) -> codec.StatusView:
        """The status page (SOC, voltage, current, outputs and reasons, codes), with the
        battery source's own alarms (``source_notes``; () from a daemon that has none)."""
        status = _decoded(codec.decode_status, await self._read("status"), "status")
        return dataclasses.replace(status, source_notes=await self.source_notes())

    async def source_notes(self) -> tuple[str, ...]:
        """The battery source's own alarms and requests (a CAN BMS's, a shunt's): shown, never
        obeyed by the BMS.  () from a daemon older than this characteristic."""
        client = self._bleak()
        if client.services.get_characteristic(profile.uuid_of("source_notes")) is None:
            return ()
        return codec.decode_source_notes(await self._read("source_notes"))

    async def watch(self) -> AsyncIterator[codec.StatusView]:
        """The status now, then every status the device notifies, until the link drops
        (``LinkLost``).  If notifications pause (our PIN session was closed because another
        central came or went), the status is read again, which re-authenticates."""
        queue: asyncio.Queue[codec.StatusView] = asyncio.Queue()
        client = self._bleak()

        def on_status(_char: BleakGATTCharacteristic, data: bytearray) -> None:
            with contextlib.suppress(codec.CodecError):
                queue.put_nowait(codec.decode_status(bytes(data)))

        yield await self.status()
        async with self._link_errors("subscribing to the status"):
            await self._protected(
                "status", lambda: client.start_notify(profile.uuid_of("status"), on_status)
            )
        try:
            while True:
                getter = asyncio.ensure_future(queue.get())
                lost = asyncio.ensure_future(self._lost.wait())
                try:
                    done, _ = await asyncio.wait(
                        {getter, lost}, timeout=WATCH_REFRESH_S,
                        return_when=asyncio.FIRST_COMPLETED,
                    )
                finally:
                    lost.cancel()
                    if not getter.done():
                        getter.cancel()
                if getter in done:
                    yield getter.result()
                elif self._lost.is_set():
                    raise LinkLost(f"the Bluetooth link to {self.name} was lost")
                else:
                    yield await self.status()
        finally:
            if self._client is not None and not self._lost.is_set():
                with contextlib.suppress(Exception):
                    await self._client.stop_notify(profile.uuid_of("status"))

    async def history(self) -> History:
        """The history counters."""
        return _decoded(codec.decode_history, await self._read("history"), "history")

    async def bank(self) -> BankStatus | None:
        """The bank with every battery and cell (None while the BMS sees no battery)."""
        summary = _decoded(codec.decode_bank, await self._read("bank"), "bank")
        if summary is None:
            return None
        batteries = [await self.battery(index) for index in range(summary.batteries)]
        return codec.with_batteries(summary, batteries)

    async def battery(self, index: int) -> BatteryStatus:
        """One battery (0-based) with its cell voltages.  The selection is shared by every
        central, so the answer is checked and the selection retried if someone moved it."""
        for _ in range(BATTERY_SELECT_ATTEMPTS):
            await self._write_sealed(
                "battery_select", lambda _s, _k: codec.encode_battery_select(index)
            )
            record = _decoded(codec.decode_battery, await self._read("battery"), "battery")
            if record.index == index:
                if record.battery is None:
                    raise ClientError(f"{self.name} has no battery {index + 1}")
                return record.battery
        raise ClientError(f"battery {index + 1} kept being deselected by another central")

    async def settings(self) -> dict[str, SettingValue]:
        """Every setting the profile exposes (the PIN is never readable), by config name."""
        values: dict[str, SettingValue] = {}
        for name, key in profile.SETTING_KEYS.items():
            values[name] = _decoded(codec.SETTING_CODECS[name].decode, await self._read(key), key)
        return values

    async def get_setting(self, name: str) -> SettingValue:
        """One setting by its config name."""
        key = _setting_key(name)
        return _decoded(codec.SETTING_CODECS[name].decode, await self._read(key), key)

    async def set_setting(self, name: str, value: object) -> dict[str, SettingValue]:
        """Change one setting; returns ``{name: value now in force}``.

        Raises ``RejectedValue`` with the BMS's reason when it refuses (nothing changed).
        ``pin`` is accepted too and runs the change-PIN command."""
        if name == "pin":
            await self.command("change_pin", str(value))
            return {"pin": "******"}  # type: ignore[dict-item]
        key = _setting_key(name)
        parsed = _parse_setting(name, value)
        try:
            body = codec.SETTING_CODECS[name].encode(parsed)
        except codec.CodecError as exc:
            raise RejectedValue(f"{name}: {exc}", reason=str(exc)) from None
        await self._subscribe_results()
        used: list[int] = []

        def sealed_body(seq: int, _key: bytes) -> bytes:
            used.append(seq)
            return body

        try:
            await self._write_sealed(key, sealed_body)
        except RejectedValue as exc:
            reason = await self._rejection_reason(used[-1] if used else -1)
            text = reason or exc.reason
            raise RejectedValue(f"{name} = {value}: {text}", reason=text) from None
        return {name: await self.get_setting(name)}

    async def _rejection_reason(self, seq: int) -> str:
        """The BMS's words for a refused setting (indicated on the control point)."""
        try:
            result = await self._await_result(codec.OP_SETTING_REJECTED, seq, REASON_TIMEOUT)
        except (TimeoutError, LinkLost):
            return ""
        return result.message

    # --- standard and Victron services --------------------------------------------------------
    async def device_information(self) -> dict[str, str]:
        """Device Information (open to anyone): manufacturer, model, serial, firmware."""
        return {
            ch.key: codec.decode_text(await self.read_raw(ch.key))
            for ch in profile.DEVICE_INFORMATION.characteristics
        }

    async def battery_level(self) -> int:
        """SIG Battery Level (open to anyone), whole percent."""
        return _decoded(codec.decode_battery_level, await self.read_raw("battery_level"),
                        "battery level")

    async def vereg(self) -> dict[str, float | None]:
        """Victron VE-Reg registers, by register name (``soc``, ``voltage``...), in the
        register's unit after scaling (%, min, V, A, W, Ah, K)."""
        values: dict[str, float | None] = {}
        for key, _reg, _desc, _pres, fmt, scale in profile.VEREG_REGISTERS:
            data = await self.read_raw(key)
            try:
                values[key.removeprefix("vereg.")] = codec.decode_vereg(fmt, scale, data)
            except codec.CodecError as exc:
                raise NotSmallBms(f"cannot read {key}: {exc}") from exc
        return values

    async def keep_alive(self, milliseconds: int | None = None) -> None:
        """Victron's VE-Reg keep-alive (None = forever), as batmon-ha and ESPHome send it."""
        raw = codec.VEREG_KEEP_ALIVE_FOREVER if milliseconds is None else milliseconds
        await self.write_raw("vereg.keep_alive", struct.pack("<H", raw))


def _decoded(decode: Callable[[bytes], _T], data: bytes, what: str) -> _T:
    try:
        return decode(data)
    except codec.CodecError as exc:
        raise NotSmallBms(f"cannot read {what}: {exc}") from exc


def _setting_key(name: str) -> str:
    key = profile.SETTING_KEYS.get(name)
    if key is None:
        raise RejectedValue(
            f"unknown setting {name!r}; known settings: {', '.join(profile.SETTING_KEYS)}",
            reason="unknown setting",
        )
    return key


def _number(value: object, message: str) -> float:
    if value is None or isinstance(value, bool):
        raise RejectedValue(message, reason=message)
    try:
        number = float(str(value).strip().rstrip("% ").strip())
    except ValueError:
        raise RejectedValue(message, reason=message) from None
    if not math.isfinite(number):
        raise RejectedValue(message, reason=message)
    return number


def _mode_argument(name: str, argument: object) -> bool:
    if name == "mode_on":
        return True
    if name == "mode_off":
        return False
    word = str(argument).strip().lower() if argument is not None else ""
    if word not in _BOOL_WORDS:
        raise RejectedValue("mode needs on or off, e.g. `command mode off`", reason="on/off")
    return _BOOL_WORDS[word]


_PLAIN_COMMANDS: dict[str, int] = {
    "synchronise": codec.OP_SYNCHRONISE,
    "reset_history": codec.OP_RESET_HISTORY,
    "factory_reset": codec.OP_FACTORY_RESET,
    "bluetooth_off": codec.OP_BLUETOOTH_OFF,
    "confirm_bank": codec.OP_CONFIRM_BANK,
}
_COMMAND_ALIASES = {"sync": "synchronise", "synchronize": "synchronise"}
