"""Start a real ``mosquitto`` for tests and benchmarks: free port, generated config, readiness by handshake.

    with MosquittoBroker() as broker:                  # starts, waits for a CONNACK
        async with aiomqtt.Client(**broker.client_kwargs()) as c: ...
        broker.restart()                                # same port: clients can reconnect to the same address
        broker.kill()                                   # SIGKILL, to simulate a crash; start() brings it back

All methods block (at most ``start_timeout_s``); from async code call them via ``asyncio.to_thread``.
Only the process this object started is ever signalled.
"""

from __future__ import annotations

import atexit
import base64
import hashlib
import os
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from streamer.errors import StreamerError

__all__ = ["BrokerError", "MosquittoBroker", "find_free_port", "find_mosquitto", "mqtt_ping"]

_SEARCH_PATHS = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto", "/opt/homebrew/sbin/mosquitto")


class BrokerError(StreamerError, RuntimeError):
    """The broker could not be found, started or stopped."""


def find_mosquitto() -> str | None:
    """Path of the ``mosquitto`` executable (``$PATH``, then the usual sbin dirs), or None."""
    found = shutil.which("mosquitto")
    if found:
        return found
    return next((p for p in _SEARCH_PATHS if os.access(p, os.X_OK)), None)


def find_free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago on ``host`` (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _mqtt_str(value: str) -> bytes:
    data = value.encode("utf-8")
    return struct.pack("!H", len(data)) + data


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def mqtt_ping(
    host: str, port: int, *, username: str | None = None, password: str | None = None, timeout_s: float = 1.0
) -> int:
    """Do one MQTT 3.1.1 CONNECT/CONNACK/DISCONNECT and return the CONNACK return code (0 = accepted).

    Any CONNACK, even "not authorised" (5), proves the broker is serving. Raises OSError if nothing
    answers, BrokerError if something answers that is not an MQTT broker.
    """
    flags = 0x02  # clean session
    payload = _mqtt_str(f"streamer-ping-{secrets.token_hex(4)}")
    if username is not None:
        flags |= 0x80
        payload += _mqtt_str(username)
        if password is not None:
            flags |= 0x40
            payload += _mqtt_str(password)
    variable = _mqtt_str("MQTT") + bytes([4, flags]) + struct.pack("!H", 10)
    body = variable + payload
    with socket.create_connection((host, port), timeout=timeout_s) as s:
        s.sendall(b"\x10" + _varint(len(body)) + body)
        ack = b""
        while len(ack) < 4:
            chunk = s.recv(4 - len(ack))
            if not chunk:
                raise BrokerError(f"{host}:{port} closed the connection before sending CONNACK")
            ack += chunk
        if ack[0] != 0x20 or ack[1] != 0x02:
            raise BrokerError(f"{host}:{port} answered {ack!r}, not an MQTT CONNACK")
        if ack[3] == 0:
            s.sendall(b"\xe0\x00")
        return ack[3]


def _password_line(username: str, password: str) -> str:
    """A mosquitto 2.x password-file line (PBKDF2-SHA512, the ``$7$`` format of mosquitto_passwd)."""
    iterations = 101
    salt = secrets.token_bytes(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, iterations, 64)
    return f"{username}:$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


class MosquittoBroker:
    """One ``mosquitto`` process on ``host:port``, restartable on the same port.

    Args:
        host: interface to listen on.
        port: TCP port; None picks a free one (and picks again if it was taken before the first start).
        users: ``{username: password}``; when given, anonymous clients are refused.
        extra_config: more ``mosquitto.conf`` lines (e.g. ``"max_inflight_messages 100"``).
        executable: path to mosquitto; default ``find_mosquitto()``.
        start_timeout_s: how long ``start`` waits for the broker to answer a CONNECT.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        users: Mapping[str, str] | None = None,
        extra_config: Sequence[str] = (),
        executable: str | None = None,
        start_timeout_s: float = 10.0,
    ) -> None:
        exe = executable or find_mosquitto()
        if exe is None:
            raise BrokerError("mosquitto is not installed (apt install mosquitto / brew install mosquitto)")
        for name in users or {}:
            if not name or ":" in name or any(c.isspace() for c in name):
                raise ValueError(f"invalid broker username {name!r}")
        self.executable = exe
        self.host = host
        self._auto_port = port is None
        self.port: int = find_free_port(host) if port is None else port
        self.users: dict[str, str] = dict(users or {})
        self.extra_config = tuple(extra_config)
        self.start_timeout_s = start_timeout_s
        self._workdir = Path(tempfile.mkdtemp(prefix="streamer-mosquitto-"))
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_file: Any = None
        self._ever_started = False
        self.starts = 0

    # -- paths and client settings ------------------------------------------------------------------------
    @property
    def config_path(self) -> Path:
        """The generated mosquitto.conf."""
        return self._workdir / "mosquitto.conf"

    @property
    def log_path(self) -> Path:
        """mosquitto's stderr log (appended across restarts)."""
        return self._workdir / "mosquitto.log"

    @property
    def url(self) -> str:
        """``mqtt://host:port``."""
        return f"mqtt://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        """PID of the running broker, or None."""
        return self._proc.pid if self.is_running and self._proc else None

    @property
    def is_running(self) -> bool:
        """True while the process this object started is alive."""
        return self._proc is not None and self._proc.poll() is None

    def client_kwargs(self, username: str | None = None) -> dict[str, Any]:
        """Keyword arguments for ``aiomqtt.Client``: hostname, port and, with users, credentials.

        ``username`` picks one of ``users``; default the first one.
        """
        kw: dict[str, Any] = {"hostname": self.host, "port": self.port}
        if self.users:
            name = username if username is not None else next(iter(self.users))
            kw.update(username=name, password=self.users[name])
        return kw

    def log_text(self) -> str:
        """Everything mosquitto has logged so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    # -- lifecycle -------------------------------------------------------------------------------------------
    def _write_config(self) -> None:
        lines = [
            f"listener {self.port} {self.host}",
            "persistence false",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "connection_messages true",
            "log_timestamp_format %Y-%m-%dT%H:%M:%S",
        ]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            lines.append("user root")  # otherwise mosquitto drops to 'mosquitto' and cannot read our files
        if self.users:
            pw = self._workdir / "passwd"
            pw.write_text("".join(_password_line(u, p) + "\n" for u, p in self.users.items()))
            pw.chmod(0o600)
            lines += ["allow_anonymous false", f"password_file {pw}"]
        else:
            lines.append("allow_anonymous true")
        lines += list(self.extra_config)
        self.config_path.write_text("\n".join(lines) + "\n")

    def start(self) -> None:
        """Start mosquitto and block until it answers an MQTT CONNECT. No-op if already running.

        Raises BrokerError (with the broker's log) if it exits or does not answer in ``start_timeout_s``.
        """
        if self.is_running:
            return
        attempts = 3 if (self._auto_port and not self._ever_started) else 1
        for attempt in range(attempts):
            try:
                self._start_once()
                return
            except BrokerError as exc:
                if "Address already in use" not in str(exc) or attempt == attempts - 1:
                    raise
                self.port = find_free_port(self.host)

    def _start_once(self) -> None:
        self._write_config()
        self._log_file = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the process
        log_offset = self.log_path.stat().st_size
        try:
            self._proc = subprocess.Popen(
                [self.executable, "-c", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=self._log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C goes to pytest, which then stops us cleanly
            )
        except OSError as exc:
            self._close_log()
            raise BrokerError(f"could not run {self.executable}: {exc}") from exc
        atexit.unregister(self._atexit)
        atexit.register(self._atexit)
        deadline = time.monotonic() + self.start_timeout_s
        while True:
            if self._proc.poll() is not None:
                code = self._proc.returncode
                self._close_log()
                self._proc = None
                tail = self.log_text()[log_offset:][-2000:]
                raise BrokerError(f"mosquitto exited with code {code} on {self.host}:{self.port}:\n{tail}")
            try:
                mqtt_ping(self.host, self.port, timeout_s=0.5)
                break
            except (OSError, BrokerError):
                if time.monotonic() > deadline:
                    self.stop()
                    raise BrokerError(
                        f"mosquitto gave no CONNACK on {self.host}:{self.port} in {self.start_timeout_s} s:\n"
                        f"{self.log_text()[log_offset:][-2000:]}"
                    ) from None
                time.sleep(0.02)
        self._ever_started = True
        self.starts += 1

    def stop(self, *, timeout_s: float = 5.0) -> None:
        """SIGTERM, wait up to ``timeout_s``, then SIGKILL. No-op if not running."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=timeout_s)
        self._proc = None
        self._close_log()

    def kill(self) -> None:
        """SIGKILL the broker at once (a crash: no clean disconnects). No-op if not running."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5.0)
        self._proc = None
        self._close_log()

    def restart(self, *, down_s: float = 0.0) -> None:
        """Stop, stay down ``down_s`` seconds, start again on the same host and port."""
        self.stop()
        if down_s > 0:
            time.sleep(down_s)
        self.start()

    def close(self) -> None:
        """Stop the broker and delete its config, password file and log."""
        self.stop()
        atexit.unregister(self._atexit)
        shutil.rmtree(self._workdir, ignore_errors=True)

    def _close_log(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def _atexit(self) -> None:
        self.stop(timeout_s=1.0)

    def __enter__(self) -> MosquittoBroker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = f"pid={self.pid}" if self.is_running else "stopped"
        return f"MosquittoBroker({self.host}:{self.port}, {state})"
