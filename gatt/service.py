"""The BLE face of the running BMS: GATT server, advertisement, PIN sessions, notifications.

``BleService(device, config, store).run()`` keeps smallbms visible and usable over Bluetooth
until cancelled, and never holds up the control loop: the status listener it registers only
records the status and wakes this task; every D-Bus exchange happens here, and any failure
(BlueZ missing, restarting, refusing) is logged and retried with a backoff while the battery
stays protected.  bless's read/write callbacks are answered synchronously from cached state
and the ``DeviceControl`` protocol, whose methods are quick by contract.

What it does, each in one place:
- registers the profile of gatt/profile.py and our advertisement (gatt/server.py);
- re-registers within seconds when bluetoothd goes away and comes back;
- puts the instant readout (gatt/broadcaster.py) in the advertisement about once a second;
- pushes notifications when an encoded value changes: Battery Level always; status and bank
  only while *every* connected central holds a PIN session (BlueZ sends a notification to all
  subscribers, so one central's session must not open the stream to another); VE-Reg while a
  keep-alive is in force (gatt/vereg.py);
- answers each read and write for the central that sent it: a PIN session belongs to one
  central and ends when that central disconnects (docs/security.md);
- limits wrong PINs per central and globally, and keeps that state across restarts
  (``LOCKOUT_DOCUMENT``; gatt/security.py ``Lockout``);
- tracks connected centrals itself (blue LED);
- Bluetooth off: unregisters everything, except during the re-enable window of the manual
  [4.5], so that a user who switched it off can switch it on again.  The window is the first
  ``BLUETOOTH_ON_AT_START_S`` after Bluetooth is first *available* (our first successful
  registration), not after the daemon's start: bluetoothd may come up much later than we do.
  Until that first registration, Bluetooth is wanted regardless.  A central that connects
  within the window keeps Bluetooth on while it stays connected (at most
  ``BLUETOOTH_WINDOW_GRACE_S`` beyond the window, ours), so the user can log in and switch
  Bluetooth on again instead of being dropped at 30 s.  The window opens once per start: a
  bluetoothd restart later on does not open it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import importlib.metadata
import secrets
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

import structlog

from bms_daemon.core.settings import SettingError, Settings
from bms_daemon.core.types import Status
from bms_daemon.device import DeviceControl, NotSavedError
from bms_daemon.logging import EventLimiter
from bms_daemon.state.identity import device_serial
from bms_daemon.store import Store
from gatt import codec, profile, vereg
from gatt.profile import Access
from gatt.security import (
    SALT_SIZE,
    AuthError,
    Guard,
    Lockout,
    Opened,
    mask_key,
    mask_result,
    unmask_pin,
)
from gatt.server import AttError, GattServer

log = structlog.get_logger("smallbms.ble")

BLUETOOTH_ON_AT_START_S = 30.0  # SPEC §6: Bluetooth stays on this long after start-up
# (ours) A central connected within that window may stay this much longer to finish the job
# (log in, switch Bluetooth on); bounded, so a central cannot hold Bluetooth on for ever.
BLUETOOTH_WINDOW_GRACE_S = 300.0
TICK_S = 1.0  # housekeeping period: readout refresh, Bluetooth setting, keep-alive expiry
RETRY_FIRST_S = 0.5  # first wait before re-registering after a failure; doubled each time
RETRY_MAX_S = 4.0  # "re-registers within seconds"
PENDING_STATUSES = 256  # statuses kept while this task is behind (~50 s at 5 Hz); then oldest go
STATE_DOCUMENT = "ble"  # store document: PIN salt and device serial (secret: mode 0600)
LOCKOUT_DOCUMENT = "lockout"  # store document: the wrong-PIN limits (survive restarts)
MANUFACTURER = "Victron Energy (smallbms emulation)"
MODEL = "smallBMS NG"


class BleConfigLike(Protocol):
    """What the service needs of bms_daemon.config.BleConfig."""

    @property
    def enabled(self) -> bool: ...
    @property
    def adapter(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def product_id(self) -> int: ...
    @property
    def vereg(self) -> bool: ...


class ServerLike(Protocol):
    """What the service uses of gatt.server.GattServer (a fake in tests)."""

    @property
    def advertising(self) -> bool: ...
    async def start(self, manufacturer: tuple[int, bytes] | None = None) -> None: ...
    async def stop(self) -> None: ...
    def notify(self, key: str, value: bytes) -> None: ...
    def set_manufacturer_data(self, company_id: int, data: bytes | None) -> None: ...


ServerFactory = Callable[..., ServerLike]


def _firmware() -> str:
    try:
        version = importlib.metadata.version("smallbms")
    except importlib.metadata.PackageNotFoundError:
        version = "0"
    return f"{version}/profile {profile.PROFILE_VERSION}"


def _make_broadcaster(device: DeviceControl, store: Store, product_id: int) -> Any:
    """The instant-readout broadcaster, or None when it cannot be built (logged)."""
    try:
        from gatt.broadcaster import ReadoutBroadcaster  # noqa: PLC0415 - optional part

        return ReadoutBroadcaster.from_store(store, device.settings, product_id=product_id)
    except Exception as exc:  # a broken key file must not take Bluetooth down
        log.warning("ble_readout_unavailable", error=repr(exc))
        return None


def offered_services(*, vereg: bool) -> tuple[profile.Service, ...]:
    """The services to register: all of the profile, less VE-Reg when the config turns it off
    (it is the one service a paired central may read without the PIN)."""
    if vereg:
        return profile.SERVICES
    return tuple(s for s in profile.SERVICES if s is not profile.VEREG)


class BleService:
    """smallbms over Bluetooth LE (see the module docstring)."""

    def __init__(
        self,
        device: DeviceControl,
        config: BleConfigLike,
        store: Store,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        server_factory: ServerFactory = GattServer,
        broadcaster: Any = None,
        pin_lost: bool = False,
    ) -> None:
        self._device = device
        self._pin_lost = pin_lost  # bms_daemon/state/layout.py: refuse every PIN
        self._config = config
        self._store = store
        self._clock = clock
        self._wall = wall_clock
        self._factory = server_factory
        self._broadcaster = (broadcaster if broadcaster is not None
                             else _make_broadcaster(device, store, config.product_id))
        salt, self._serial = self._load_state()
        self._guard = Guard(pin=device.settings().pin, salt=salt,
                            version=profile.PROFILE_VERSION, lockout=self._load_lockout())
        self._keep_alive = vereg.KeepAlive()
        self._limiter = EventLimiter()  # security events under attack: count, summarise
        self._server: ServerLike | None = None
        self._connections: frozenset[str] = frozenset()
        self._battery_index = 0
        self._sent: dict[str, bytes] = {}
        self._pending: deque[Status] = deque(maxlen=PENDING_STATUSES)
        self._manufacturer: bytes | None = None
        self._window_opened: float | None = None  # first successful registration (see doc)
        self._window_central = False  # a central connected within the window is still here
        self._lost = False
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # --- for the LEDs and the daemon ---------------------------------------------------------
    @property
    def advertising(self) -> bool:
        """Registered and advertising (blue LED blinks while nobody is connected)."""
        return self._server is not None and self._server.advertising

    @property
    def connected(self) -> bool:
        """At least one central is connected (blue LED solid)."""
        return self._server is not None and bool(self._connections)

    # --- life cycle --------------------------------------------------------------------------
    async def run(self) -> None:
        """Serve until cancelled; never raises for a Bluetooth problem."""
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        unsubscribe = self._device.subscribe(self._on_status)
        try:
            await self._serve()
        finally:
            unsubscribe()
            await self._stop_server()

    async def _serve(self) -> None:
        delay = RETRY_FIRST_S
        while True:
            if not self._wanted():
                await self._stop_server()
                await self._sleep(TICK_S)
                continue
            if self._lost:
                await self._stop_server()
            if self._server is None:
                try:
                    await self._start_server()
                    delay = RETRY_FIRST_S
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # BlueZ absent or refusing: retry, never give up
                    log.warning("ble_start_failed", error=repr(exc), retry_in_s=delay)
                    await self._stop_server()
                    await self._sleep(delay)
                    delay = min(delay * 2, RETRY_MAX_S)
                    continue
            try:
                self._tick(self._clock())
            except Exception as exc:  # a bug here must not stop Bluetooth
                log.exception("ble_tick_failed", error=repr(exc))
            await self._sleep(TICK_S)

    def _wanted(self) -> bool:
        if not self._config.enabled:
            return False
        if self._settings().bluetooth:
            return True
        opened = self._window_opened
        if opened is None:
            return True  # Bluetooth never available yet: the re-enable window is still to come
        elapsed = self._clock() - opened
        if elapsed < BLUETOOTH_ON_AT_START_S:
            return True
        return self._window_central and elapsed < BLUETOOTH_ON_AT_START_S + (
            BLUETOOTH_WINDOW_GRACE_S
        )

    def _in_window(self, now: float) -> bool:
        opened = self._window_opened
        return opened is not None and now - opened < BLUETOOTH_ON_AT_START_S

    def _window_left(self, now: float) -> float:
        """Seconds left of the re-enable window (0 once it has passed)."""
        opened = self._window_opened if self._window_opened is not None else now
        return max(BLUETOOTH_ON_AT_START_S - (now - opened), 0.0)

    async def _start_server(self) -> None:
        self._lost = False
        self._sent.clear()
        server = self._factory(
            name=self._config.name,
            adapter=self._config.adapter,
            on_read=self.handle_read,
            on_write=self.handle_write,
            on_connections=self._on_connections,
            on_lost=self._on_lost,
            services=offered_services(vereg=self._config.vereg),
        )
        self._server = server
        payload = self._readout_payload(self._clock())
        self._manufacturer = payload
        await server.start(None if payload is None else (self._company_id(), payload))
        if self._window_opened is None:
            self._window_opened = self._clock()
            if not self._settings().bluetooth:
                log.info("ble_reenable_window", seconds=BLUETOOTH_ON_AT_START_S,
                         why="Bluetooth is off in the settings; it can be switched on now")
        log.info("ble_advertising", name=self._config.name, adapter=self._config.adapter)

    async def _stop_server(self) -> None:
        server, self._server = self._server, None
        self._connections = frozenset()
        self._window_central = False
        self._guard.close_all()
        if server is not None:
            with contextlib.suppress(Exception):
                await server.stop()
            log.info("ble_stopped")

    async def _sleep(self, seconds: float) -> None:
        assert self._wake is not None
        # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancellation that
        # arrives as the event is set, and run() would then never stop.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._wake.wait()
        self._wake.clear()

    def _poke(self) -> None:
        if self._wake is not None:
            self._wake.set()

    # --- events (synchronous, never block) ---------------------------------------------------
    def _on_status(self, status: Status) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        self._pending.append(status)  # deque.append: atomic, bounded, never blocks
        loop.call_soon_threadsafe(self._poke)

    def _on_lost(self) -> None:
        self._lost = True
        self._connections = frozenset()
        self._window_central = False
        self._guard.close_all()
        self._poke()

    def _on_connections(self, connections: frozenset[str]) -> None:
        if connections == self._connections:
            return
        now = self._clock()
        if connections - self._connections:
            self._keep_alive.connected(now)
            if self._in_window(now):
                self._window_central = True
        if not connections:
            self._keep_alive.reset()
            self._window_central = False
            self._poke()  # Bluetooth off and past the window: stop now, not at the next tick
        closed = self._guard.close_except(connections)
        self._connections = connections
        if self._limiter.allow("ble_connections", now):
            log.info("ble_connections", count=len(connections),
                     **({"sessions_closed": "central disconnected"} if closed else {}))

    # --- periodic work -----------------------------------------------------------------------
    def _tick(self, now: float) -> None:
        for kind, count, span in self._limiter.summaries(now):
            log.warning("ble_events_not_logged", kind=kind, count=count, over_s=round(span),
                        why="rate limit (the first of each kind is always logged)")
        server = self._server
        if server is None:
            self._pending.clear()
            return
        # every status the control loop published since the last tick, in order, so that a
        # subscriber sees each change even when two came before this task could run
        statuses = list(self._pending) or [self._device.status()]
        self._pending.clear()
        for status in statuses:
            self._push(server, status, now)
        payload = self._readout_payload(now)
        if payload != self._manufacturer:
            self._manufacturer = payload
            server.set_manufacturer_data(self._company_id(), payload)

    def _push(self, server: ServerLike, status: Status, now: float) -> None:
        values: dict[str, bytes] = {
            "battery_level": codec.encode_battery_level(status.soc),
        }
        if self._protected_may_go_out(now):
            values["status"] = codec.encode_status(status)
            values["bank"] = codec.encode_bank(status.bank)
        if self._keep_alive.active(now):
            values.update(vereg.register_values(status))
        for key, value in values.items():
            if self._sent.get(key) != value:
                self._sent[key] = value
                server.notify(key, value)

    def _protected_may_go_out(self, now: float) -> bool:
        """PIN-protected notifications reach every subscribed central (BlueZ), so they go out
        only while every connected central holds a session (and at least one does)."""
        authenticated = self._guard.authenticated(now)
        return bool(authenticated) and self._connections <= authenticated

    def _readout_payload(self, now: float) -> bytes | None:
        if self._broadcaster is None:
            return None
        try:
            payload: bytes | None = self._broadcaster.payload_for(self._device.status(), now)
        except Exception as exc:  # the readout is optional; Bluetooth goes on without it
            log.warning("ble_readout_failed", error=repr(exc))
            return None
        return payload

    def _company_id(self) -> int:
        if self._broadcaster is not None:
            from gatt.broadcaster import COMPANY_ID  # noqa: PLC0415

            return int(COMPANY_ID)
        return 0x02E1

    # --- reads -------------------------------------------------------------------------------
    def handle_read(self, key: str, device: str = "") -> bytes:
        """Central ``device`` reads characteristic ``key``: its value, or ``AttError``.

        The GATT semantics without the transport; gatt/server.py calls it for BlueZ."""
        now = self._clock()
        ch = profile.CHARACTERISTICS[key]
        if ch.access is Access.PIN and not self._guard.session_open(now, device):
            raise AttError(profile.ATT_INSUFFICIENT_AUTHORIZATION)
        if key == "auth":
            self._sync_pin()
            return self._guard.challenge(now, device)
        if key.startswith("setting."):
            name = key.removeprefix("setting.")
            return codec.SETTING_CODECS[name].encode(getattr(self._settings(), name))
        if key == "history":
            return codec.encode_history(self._device.history())
        static = {
            "manufacturer": MANUFACTURER,
            "model": MODEL,
            "serial": self._serial,
            "firmware": _firmware(),
        }
        if key in static:
            return codec.encode_text(static[key])
        status = self._device.status()
        if key == "battery_level":
            return codec.encode_battery_level(status.soc)
        if key == "status":
            return codec.encode_status(status)
        if key == "bank":
            return codec.encode_bank(status.bank)
        if key == "source_notes":
            return codec.encode_source_notes(status.source_notes)
        if key == "battery":
            batteries = status.bank.battery_list if status.bank is not None else ()
            return codec.encode_battery(self._battery_index, batteries)
        if key.startswith("vereg."):
            return vereg.register_values(status)[key]
        raise AttError(profile.ATT_VALUE_REJECTED, f"{key} cannot be read")

    # --- writes ------------------------------------------------------------------------------
    def handle_write(self, key: str, data: bytes, device: str = "") -> None:
        """Central ``device`` writes ``data`` to characteristic ``key``; ``AttError`` when
        refused (and then nothing changed).  A setting is on disk when this returns."""
        now = self._clock()
        ch = profile.CHARACTERISTICS[key]
        if key == "auth":
            self._authenticate(data, now, device)
            return
        if key == "vereg.keep_alive":
            try:
                self._keep_alive.write(codec.decode_keep_alive(data), now)
            except codec.CodecError:
                raise AttError(profile.ATT_INVALID_VALUE_LENGTH) from None
            self._poke()
            return
        try:
            opened = self._guard.open(ch.uuid, data, now, device)
        except AuthError as err:
            code = (profile.ATT_INVALID_VALUE_LENGTH if err.kind == AuthError.LENGTH
                    else profile.ATT_INSUFFICIENT_AUTHORIZATION)
            if self._limiter.allow(f"ble_write_refused:{err.kind}", now):
                log.info("ble_write_refused", characteristic=key, reason=str(err),
                         central=device)
            raise AttError(code, str(err)) from None
        if key == "battery_select":
            try:
                self._battery_index = codec.decode_battery_select(opened.body)
            except codec.CodecError as err:
                raise AttError(_codec_att(err), str(err)) from None
        elif key.startswith("setting."):
            self._write_setting(key.removeprefix("setting."), opened)
        elif key == "control_point":
            self._control(opened, now)
        else:
            raise AttError(profile.ATT_VALUE_REJECTED, f"{key} cannot be written")

    def _authenticate(self, data: bytes, now: float, device: str) -> None:
        if self._pin_lost:
            if self._limiter.allow("ble_auth_refused:pin_lost", now):
                log.error("ble_auth_refused", reason="PIN state lost",
                          action="run `smallbms reset-pin` (docs/security.md)")
            raise AttError(profile.ATT_PIN_STATE_LOST)
        self._sync_pin()
        try:
            changed = self._guard.authenticate(data, now, wall=self._wall(), device=device)
        except AuthError as err:
            code = {
                AuthError.LENGTH: profile.ATT_INVALID_VALUE_LENGTH,
                AuthError.LOCKED_OUT: profile.ATT_LOCKED_OUT,
            }.get(err.kind, profile.ATT_WRONG_PIN)
            if err.kind == AuthError.WRONG_PIN:
                self._save_lockout()  # before the answer: a restart must not forget it
            if self._limiter.allow(f"ble_auth_refused:{err.kind}", now):
                log.warning("ble_auth_refused", reason=str(err), central=device)
            raise AttError(code, str(err)) from None
        if changed:
            self._save_lockout()
        log.info("ble_authenticated", central=device)
        self._poke()  # protected notifications may flow now

    def _write_setting(self, name: str, opened: Opened) -> None:
        setting = codec.SETTING_CODECS[name]
        try:
            value = setting.decode(opened.body)
            self._device.set_setting(name, value)
        except NotSavedError as err:
            # in force but not durable: the write is refused so the client does not report it
            # as set, and the reason is indicated like a rejection's
            self._indicate(opened, codec.CommandResult(codec.OP_SETTING_REJECTED, opened.seq,
                                                       codec.RESULT_FAILED,
                                                       codec.message_bytes(f"set but {err}")))
            raise AttError(profile.ATT_NOT_SAVED, str(err)) from None
        except (codec.CodecError, SettingError) as err:
            if isinstance(err, codec.CodecError) and err.length:
                raise AttError(profile.ATT_INVALID_VALUE_LENGTH, str(err)) from None
            self._indicate(opened, codec.CommandResult(codec.OP_SETTING_REJECTED, opened.seq,
                                                       codec.RESULT_REJECTED,
                                                       codec.message_bytes(str(err))))
            if self._limiter.allow("ble_setting_rejected", self._clock()):
                log.info("ble_setting_rejected", setting=name, reason=str(err))
            raise AttError(profile.ATT_VALUE_REJECTED, str(err)) from None
        log.info("ble_setting_changed", setting=name)
        self._poke()

    def _control(self, opened: Opened, now: float) -> None:
        try:
            command = codec.decode_command(opened.body)
        except codec.CodecError as err:
            code = (profile.ATT_INVALID_VALUE_LENGTH if err.length
                    else profile.ATT_UNKNOWN_COMMAND)
            raise AttError(code, str(err)) from None
        result, data = codec.RESULT_OK, b""
        try:
            data = self._execute(command, opened, now)
        except (SettingError, codec.CodecError) as err:
            result, data = codec.RESULT_REJECTED, codec.message_bytes(str(err))
        except NotSavedError as err:
            result, data = codec.RESULT_FAILED, codec.message_bytes(
                f"{command.name} done but {err}")
        except Exception as exc:  # reported to the client; the BMS goes on
            log.exception("ble_command_failed", command=command.name)
            result, data = codec.RESULT_FAILED, codec.message_bytes(f"internal error: {exc}")
        log.info("ble_command", command=command.name, result=codec.RESULT_NAMES[result])
        self._indicate(opened, codec.CommandResult(command.opcode, opened.seq, result, data))
        self._poke()

    def _execute(self, command: codec.Command, opened: Opened, now: float) -> bytes:
        op, arg = command.opcode, command.argument
        if op == codec.OP_SET_SOC:
            text = self._device.command("set_soc", codec.decode_set_soc_argument(arg))
        elif op == codec.OP_SYNCHRONISE:
            text = self._device.command("synchronise")
        elif op == codec.OP_RESET_HISTORY:
            text = self._device.command("reset_history")
        elif op == codec.OP_FACTORY_RESET:
            text = self._device.command("factory_reset")
        elif op == codec.OP_CONFIRM_BANK:
            text = self._device.command("confirm_bank")
        elif op == codec.OP_MODE:
            if arg[0] > 1:
                raise codec.CodecError(f"mode must be 0 (off) or 1 (on), not {arg[0]}")
            self._device.set_setting("mode", bool(arg[0]))
            text = f"Mode {'on' if arg[0] else 'off'}"
        elif op == codec.OP_BLUETOOTH_OFF:
            self._device.set_setting("bluetooth", False)
            left = self._window_left(now)
            text = "Bluetooth off"
            if left > 0:
                text += (
                    f" in {left:.0f} s (it stays on for {BLUETOOTH_ON_AT_START_S:.0f} s after "
                    "start-up, and while a central connected in that time stays connected)"
                )
            elif self._window_central:
                text += (
                    " when this connection ends (a central connected in the "
                    f"{BLUETOOTH_ON_AT_START_S:.0f} s after start-up may finish its job)"
                )
        elif op == codec.OP_CHANGE_PIN:
            pin = unmask_pin(opened.key, opened.seq, arg)
            self._device.set_setting("pin", pin)
            self._sync_pin()
            text = "PIN changed; authenticate again with the new PIN"
            if self._rotate_readout_key(pin):
                text += "; the instant-readout key changed: read it again with `key`"
        elif op == codec.OP_READ_KEY:
            key = self._readout_key()
            if key is None:
                raise SettingError("the instant-readout key is not available on this device")
            return mask_key(opened.key, opened.seq, key)
        else:  # decode_command only lets known opcodes through
            raise SettingError(f"command 0x{op:02x} is not supported")
        return codec.message_bytes(text)

    def _indicate(self, opened: Opened, result: codec.CommandResult) -> None:
        """BlueZ indicates a result to every subscribed central: its data (the message, or the
        masked readout key) is masked for the session that sent the command, so another
        central learns only the opcode and whether it worked (docs/security.md)."""
        if self._server is not None:
            masked = dataclasses.replace(
                result, data=mask_result(opened.key, opened.seq, result.data))
            self._server.notify("control_point", codec.encode_result(masked))

    # --- PIN, salt and keys ------------------------------------------------------------------
    def _settings(self) -> Settings:
        return self._device.settings()

    def _sync_pin(self) -> None:
        """Follow a PIN changed by any route (BLE, config, CLI): new salt, sessions closed."""
        pin = self._settings().pin
        if pin != self._guard.pin:
            salt = secrets.token_bytes(SALT_SIZE)
            self._guard.change_pin(pin, salt)
            self._save_state(salt)
            log.info("ble_pin_changed", action="sessions closed, new salt")

    def _rotate_readout_key(self, pin: str) -> bool:
        if self._broadcaster is None:
            return False
        try:
            return bool(self._broadcaster.keys.sync_pin(pin))
        except Exception as exc:  # the readout rotates on its next refresh anyway
            log.warning("ble_readout_key_not_rotated", error=repr(exc))
            return False

    def _readout_key(self) -> bytes | None:
        if self._broadcaster is None:
            return None
        self._rotate_readout_key(self._settings().pin)
        key: bytes = self._broadcaster.keys.key
        return key

    def _load_state(self) -> tuple[bytes, str]:
        document: dict[str, Any] | None = None
        try:
            document = self._store.load(STATE_DOCUMENT)
        except Exception as exc:  # an unreadable state means a new salt; the PIN still works
            log.warning("ble_state_unreadable", error=repr(exc))
        salt: bytes | None = None
        # one serial with MQTT, whichever side starts first (an older ble.json's serial wins)
        serial = self._serial = device_serial(self._store)
        if document is not None:
            try:
                salt = bytes.fromhex(str(document["salt"]))
            except (KeyError, ValueError):
                salt = None
        if salt is None or len(salt) != SALT_SIZE:
            salt = secrets.token_bytes(SALT_SIZE)
            self._save_state(salt)
        return salt, serial

    def _load_lockout(self) -> Lockout:
        wall = self._wall()
        try:
            document = self._store.load(LOCKOUT_DOCUMENT)
        except Exception as exc:  # treated like a damaged file: the strictest state
            log.warning("ble_lockout_unreadable", error=repr(exc))
            document = {}
        if document is None:
            return Lockout()
        if not (isinstance(document, dict) and document.get("version") == 1
                and isinstance(document.get("earliest"), int | float)):
            log.warning("ble_lockout_untrusted", action="wrong-PIN budget counted as spent")
        return Lockout.from_document(document, wall)

    def _save_lockout(self) -> None:
        try:
            self._store.save(LOCKOUT_DOCUMENT, self._guard.lockout.document())
        except Exception as exc:  # the limits then hold until the next restart only
            log.warning("ble_lockout_not_saved", error=repr(exc))

    def _save_state(self, salt: bytes) -> None:
        try:
            self._store.save(STATE_DOCUMENT, {"salt": salt.hex(), "serial": self._serial},
                             secret=True)
        except Exception as exc:  # the salt then lasts until restart; nothing else is lost
            log.warning("ble_state_not_saved", error=repr(exc))


def _codec_att(err: codec.CodecError) -> int:
    return profile.ATT_INVALID_VALUE_LENGTH if err.length else profile.ATT_VALUE_REJECTED
