"""A real Mosquitto broker for the tests, and a subscribing client that records what it sees.

Imported by name (``from broker import ...``) from the MQTT tests and their conftest.
``Mosquitto`` writes a config in a temporary directory (optionally a password file, an ACL and
TLS certificates generated here with ``cryptography``), starts ``mosquitto`` on a free local
port, and can be killed and started again on the same port.  ``Spy`` is a paho-mqtt client
(its own network thread) whose received messages the tests wait for.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import shutil
import socket
import ssl
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

MOSQUITTO = shutil.which("mosquitto") or (
    "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
)
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd")
WAIT_S = 30.0  # upper bound for anything to arrive (never a timing assertion)
BASE = "smallbms/test"  # the base topic of the daemons under test

needs_mosquitto = pytest.mark.skipif(
    MOSQUITTO is None,
    reason="mosquitto is not installed (apt-get install mosquitto); CI installs it",
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class TlsFiles:
    """A CA, a server certificate for localhost/127.0.0.1 and a client certificate, all PEM."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def make_tls(directory: Path) -> TlsFiles:
    """Generate a throw-away CA and two certificates it signs."""
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "smallbms test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False,
                                       encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                         critical=False)
          .sign(ca_key, hashes.SHA256()))

    def issue(name: str, server: bool) -> tuple[bytes, bytes]:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (x509.CertificateBuilder()
                   .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
                   .issuer_name(ca_name).public_key(key.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                       ca_key.public_key()), critical=False))
        if server:
            builder = builder.add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
        cert = builder.sign(ca_key, hashes.SHA256())
        return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)

    files = TlsFiles(directory / "ca.pem", directory / "server.pem", directory / "server.key",
                     directory / "client.pem", directory / "client.key")
    files.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert, key = issue("localhost", server=True)
    files.server_cert.write_bytes(cert)
    files.server_key.write_bytes(key)
    cert, key = issue("smallbms", server=False)
    files.client_cert.write_bytes(cert)
    files.client_key.write_bytes(key)
    return files


class Mosquitto:
    """One broker process; ``start()`` again after ``kill()`` reuses the port and config."""

    def __init__(self, directory: Path, *, passwords: dict[str, str] | None = None,
                 acl: str | None = None, tls: TlsFiles | None = None) -> None:
        assert MOSQUITTO is not None
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.tls = tls
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        lines = [f"listener {self.port} 127.0.0.1", "persistence false", "user root",
                 "log_dest stderr", "log_type error", "log_type warning", "log_type notice",
                 "log_type information"]
        if passwords:
            assert MOSQUITTO_PASSWD is not None
            password_file = directory / "passwords"
            password_file.touch(mode=0o600)
            for user, password in passwords.items():
                subprocess.run([MOSQUITTO_PASSWD, "-b", str(password_file), user, password],
                               check=True, capture_output=True)
            lines += ["allow_anonymous false", f"password_file {password_file}"]
        else:
            lines.append("allow_anonymous true")
        if acl is not None:
            acl_file = directory / "acl"
            acl_file.write_text(acl)
            lines.append(f"acl_file {acl_file}")
        if tls is not None:
            lines += [f"cafile {tls.ca}", f"certfile {tls.server_cert}",
                      f"keyfile {tls.server_key}", "require_certificate true",
                      "tls_version tlsv1.2"]
        self.config = directory / "mosquitto.conf"
        self.config.write_text("\n".join(lines) + "\n")
        self.log = directory / "mosquitto.log"

    def start(self) -> None:
        self.starts += 1
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen([str(MOSQUITTO), "-c", str(self.config)],
                                         stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + WAIT_S
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {self.log.read_text()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1.0):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=WAIT_S)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=WAIT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=WAIT_S)


@dataclass(frozen=True)
class Received:
    topic: str
    payload: bytes
    retain: bool

    def json(self) -> Any:
        return json.loads(self.payload)


class Spy:
    """A subscribing client (paho, its own thread) whose messages the tests wait for.

    ``wait(topic)`` returns the next message on ``topic`` after the one it last returned for
    that topic, so waiting for one topic never loses another topic's messages (they arrive in
    any order on a loaded machine).
    """

    def __init__(self, broker: Mosquitto, subscribe: tuple[str, ...] = ("#",), *,
                 username: str | None = None, password: str | None = None,
                 client_id: str = "spy") -> None:
        self.received: list[Received] = []
        self._arrived = threading.Condition()
        self._cursor: dict[str | None, int] = {}
        self._subscribed = threading.Event()
        client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id)
        if username is not None:
            client.username_pw_set(username, password)
        if broker.tls is not None:
            client.tls_set(ca_certs=str(broker.tls.ca), certfile=str(broker.tls.client_cert),
                           keyfile=str(broker.tls.client_key), cert_reqs=ssl.CERT_REQUIRED)
        client.on_message = self._on_message
        client.on_subscribe = lambda *_args: self._subscribed.set()
        client.connect("127.0.0.1" if broker.tls is None else "localhost", broker.port)
        client.loop_start()
        for topic in subscribe:
            self._subscribed.clear()
            client.subscribe(topic, qos=1)
            assert self._subscribed.wait(WAIT_S), f"no SUBACK for {topic}"
        self.client = client

    def _on_message(self, _client: Any, _userdata: Any, message: paho.MQTTMessage) -> None:
        with self._arrived:
            self.received.append(Received(message.topic, bytes(message.payload),
                                          bool(message.retain)))
            self._arrived.notify_all()

    def _find(self, topic: str | None, predicate: Any, start: int) -> int | None:
        for index in range(start, len(self.received)):
            message = self.received[index]
            if topic in (None, message.topic) and (predicate is None or predicate(message)):
                return index
        return None

    def wait(self, topic: str | None, predicate: Any = None, timeout: float = WAIT_S) -> Received:
        """The next message on ``topic`` (None = any) matching ``predicate``, after the one
        last returned for that topic."""
        deadline = time.monotonic() + timeout
        with self._arrived:
            while True:
                index = self._find(topic, predicate, self._cursor.get(topic, 0))
                if index is not None:
                    self._cursor[topic] = index + 1
                    return self.received[index]
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    seen = sorted({m.topic for m in self.received})
                    raise AssertionError(f"nothing on {topic!r} matched within {timeout:g} s; "
                                         f"topics seen: {seen}")
                self._arrived.wait(remaining)

    def first(self, topic: str | None, predicate: Any = None,
              timeout: float = WAIT_S) -> Received:
        """The first message ever received on ``topic`` (None = any) matching ``predicate``
        (waiting for one if none yet)."""
        with self._arrived:
            index = self._find(topic, predicate, 0)
            if index is not None:
                return self.received[index]
        return self.wait(topic, predicate, timeout=timeout)

    def latest(self, topic: str) -> Received | None:
        for message in reversed(self.received):
            if message.topic == topic:
                return message
        return None

    def publish(self, topic: str, payload: bytes | str, *, retain: bool = False) -> None:
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(WAIT_S)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def mqtt_table(broker: Mosquitto, **keys: object) -> str:
    """A ``[mqtt]`` table for the daemon under test (TOML)."""
    values: dict[str, object] = {"enabled": True, "host": "127.0.0.1", "port": broker.port,
                                 "base_topic": BASE, "interval_s": 1.0, **keys}
    lines = ["[mqtt]"]
    for key, value in values.items():
        if isinstance(value, bool):
            lines.append(f"{key} = {'true' if value else 'false'}")
        elif isinstance(value, int | float):
            lines.append(f"{key} = {value}")
        else:
            lines.append(f'{key} = "{value}"')
    return "\n".join(lines) + "\n"
