"""MQTT figures: delivery latency, traffic per day at the defaults, daemon CPU with MQTT on.

1. **Latency**: a status change (Mode switched off, then on) -> the ``outputs`` message arriving
   at a subscriber of a local Mosquitto.  The clock starts just before the control step that
   produces the change and stops in the subscriber's network thread; in-process, same clock.
2. **Traffic per day** at the defaults (2 Hz loop, ``interval_s`` 5 s, history once a minute):
   one simulated day of a 12.8V-200Ah battery (the scenario of bench_simulated_day.py) through
   the real core and the service's own render/throttle/outbox code; messages and bytes
   (topic + payload, and with MQTT 5 framing and the PUBACK) counted as they leave the outbox.
   Discovery is counted apart: it is sent once per connection and per Home Assistant start.
3. **CPU**: ``smallbms run`` (simulated bank, BLE off) for BENCH_DURATION_S seconds (default 30)
   with MQTT off, then on against the local broker; percent of one core in the steady state
   (from 5 s after READY=1: the connection and discovery are a one-off).

Needs ``mosquitto`` (apt-get install mosquitto).

    .venv/bin/python benchmarks/bench_mqtt.py [latency] [traffic] [cpu]   (default: all three)
"""

from __future__ import annotations

import asyncio
import os
import queue
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import paho.mqtt.client as paho
from bench_daemon import RUN, cpu_seconds
from bench_simulated_day import DAY

from bms_daemon.controller import Controller
from bms_daemon.core.bms import Bms
from bms_daemon.core.types import Inputs
from bms_daemon.mqtt import discovery, payloads
from bms_daemon.mqtt.config import MqttConfig
from bms_daemon.mqtt.service import MqttService
from bms_daemon.scenario import parse_scenario
from bms_daemon.simulate import _enter
from bms_daemon.sources.simulated import SimulatedBank

DURATION_S = float(os.environ.get("BENCH_DURATION_S", "30"))
SAMPLES = 50
SETTLE_S = 5.0
RATE_HZ = 2.0
MQTT5_OVERHEAD = 2 + 2 + 2 + 1 + 4  # fixed header, topic length, packet id, properties; PUBACK
MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_broker(directory: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    config = directory / "mosquitto.conf"
    config.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                      "user root\n")
    proc = subprocess.Popen([MOSQUITTO, "-c", str(config)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    for _ in range(600):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return proc, port
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("mosquitto did not start")


# --- 1. latency ---------------------------------------------------------------------------------
async def latency(port: int) -> list[float]:
    bank = SimulatedBank(parse_scenario(DAY, "bench").bank)
    controller = Controller(Bms(), time.monotonic)
    service = MqttService(MqttConfig(enabled=True, host="127.0.0.1", port=port,
                                     base_topic="bench", discovery_prefix=""),
                          controller, "SBBENCH00001")
    controller.subscribe(service.on_status)
    arrivals: queue.Queue[tuple[float, bytes]] = queue.Queue()
    spy = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="bench-spy")
    spy.on_message = lambda _c, _u, m: arrivals.put((time.monotonic(), bytes(m.payload)))
    spy.connect("127.0.0.1", port)
    spy.subscribe("bench/outputs", qos=1)
    spy.loop_start()
    task = asyncio.create_task(service.run())
    samples: list[float] = []
    t = 0.0
    try:
        controller.step(bank.read(t), Inputs(), t)
        await asyncio.to_thread(arrivals.get, True, 30.0)  # connected: the first outputs
        for i in range(SAMPLES * 2 + 40):
            t += 1.0 / RATE_HZ
            mode = i < 40 or i % 2 == 1  # 40 steps to settle, then toggle every step
            controller.set_setting("mode", mode)
            while not arrivals.empty():  # only what this step causes is timed
                arrivals.get_nowait()
            started = time.monotonic()
            controller.step(bank.read(t), Inputs(), t)
            if i >= 40:
                want = b'"mode":true' if mode else b'"mode":false'
                while True:
                    at, payload = await asyncio.to_thread(arrivals.get, True, 10.0)
                    if want in payload:
                        samples.append(at - started)
                        break
            else:
                await asyncio.sleep(0.01)
    finally:
        service.stop()
        await task
        spy.loop_stop()
        spy.disconnect()
    return samples


# --- 2. traffic per day -------------------------------------------------------------------------
def traffic_per_day() -> tuple[int, int, int, dict[str, int], int, int]:
    scenario = parse_scenario(DAY, "bench")
    bank = SimulatedBank(scenario.bank)
    clock = [0.0]
    controller = Controller(Bms(scenario.settings), lambda: clock[0])
    service = MqttService(MqttConfig(enabled=True), controller, "SB0123456789",
                          clock=lambda: clock[0])
    controller.subscribe(service.on_status)
    messages = payload_bytes = wire_bytes = 0
    per_topic: dict[str, int] = {}
    step = 1.0 / RATE_HZ
    for part in scenario.steps:
        _enter(bank, part)
        for _ in range(int(part.duration * RATE_HZ)):
            clock[0] += step
            status = controller.step(bank.read(clock[0]), Inputs(), clock[0])
            bank.apply_outputs(status.outputs)
            service._render(clock[0])  # what the MQTT task does at each wake-up
            while (message := service.outbox.pop()) is not None:
                size = len(message.topic) + len(message.payload)
                messages += 1
                payload_bytes += size
                wire_bytes += size + MQTT5_OVERHEAD
                name = message.topic.rsplit("/", 1)[1]
                per_topic[name] = per_topic.get(name, 0) + 1
    shape = service._shape
    configs = discovery.configs(service.topics, service.device_info, shape, False,
                                payloads.cells_in_series(controller.status()))
    discovery_bytes = sum(len(topic) + len(payloads.encode(c)) for topic, c in configs.items()
                          if c is not None)
    entities = sum(c is not None for c in configs.values())
    return messages, payload_bytes, wire_bytes, per_topic, entities, discovery_bytes


# --- 3. CPU -------------------------------------------------------------------------------------
def daemon_cpu(directory: Path, port: int | None) -> float:
    state = directory / ("state-on" if port else "state-off")
    config = directory / ("on.toml" if port else "off.toml")
    mqtt = (f'[mqtt]\nenabled = true\nhost = "127.0.0.1"\nport = {port}\n'
            if port else "")
    config.write_text(f'[bms]\nstate_directory = "{state}"\n[ble]\nenabled = false\n{mqtt}')
    notify_path = directory / f"notify-{port or 0}"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(notify_path))
    notify.settimeout(60)
    proc = subprocess.Popen([sys.executable, "-c", RUN, "--config", str(config)],
                            env=dict(os.environ, NOTIFY_SOCKET=str(notify_path)),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while b"READY=1" not in notify.recv(4096):
            pass
        time.sleep(SETTLE_S)  # connection and discovery are a one-off: steady state only
        start_cpu, start = cpu_seconds(proc.pid), time.monotonic()
        time.sleep(DURATION_S)
        used = cpu_seconds(proc.pid) - start_cpu
        elapsed = time.monotonic() - start
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        notify.close()
    return 100 * used / elapsed


def main() -> int:
    parts = set(sys.argv[1:]) or {"latency", "traffic", "cpu"}
    if not Path(MOSQUITTO).exists():
        print("mosquitto is not installed: apt-get install mosquitto", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        broker, port = start_broker(Path(tmp))
        try:
            if "latency" in parts:
                print_latency(asyncio.run(latency(port)))
            if "traffic" in parts:
                print_traffic()
            if "cpu" in parts:
                off = daemon_cpu(Path(tmp), None)
                on = daemon_cpu(Path(tmp), port)
                print(f"daemon CPU, steady state over {DURATION_S:.0f} s (simulated bank, BLE "
                      f"off): MQTT off {off:.2f} %, MQTT on {on:.2f} % of one core")
        finally:
            broker.kill()
            broker.wait()
    return 0


def print_latency(samples: list[float]) -> None:
    ms = sorted(s * 1000 for s in samples)
    p95 = ms[int(0.95 * (len(ms) - 1))]
    print(f"status change -> broker -> subscriber ({len(ms)} changes, local broker): "
          f"p50 {statistics.median(ms):.1f} ms, p95 {p95:.1f} ms, max {ms[-1]:.1f} ms")


def print_traffic() -> None:
    messages, payload, wire, per_topic, configs, discovery_bytes = traffic_per_day()
    detail = ", ".join(f"{k} {v}" for k, v in sorted(per_topic.items()))
    print(f"traffic per day at the defaults (simulated day, 2 Hz loop, interval_s 5): "
          f"{messages} messages, {payload / 1e6:.2f} MB topic+payload, "
          f"{wire / 1e6:.2f} MB with MQTT framing ({detail})")
    print(f"discovery, once per connection / Home Assistant start: {configs} configs, "
          f"{discovery_bytes / 1e3:.0f} kB")


if __name__ == "__main__":
    sys.exit(main())
