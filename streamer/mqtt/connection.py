"""Broker connection settings shared by the worker and the client, and the reconnect backoff."""

from __future__ import annotations

import random
import secrets
from dataclasses import dataclass
from typing import Any

__all__ = ["Backoff", "ConnectionConfig"]


@dataclass(frozen=True)
class ConnectionConfig:
    """Where and how to connect to the broker.

    Attributes:
        host, port: the broker (8883 is the usual TLS port).
        username, password: broker credentials (Mosquitto ``password_file``); None = anonymous.
        tls: connect over TLS; ``ca_file`` verifies the broker (None = system CAs),
            ``cert_file``/``key_file`` present a client certificate.
        keepalive_s: MQTT keepalive; a dead broker is noticed after about 1.5x this.
        timeout_s: how long connect/subscribe/publish calls may take before raising MqttError.
    """

    host: str = "127.0.0.1"
    port: int = 1883
    username: str | None = None
    password: str | None = None
    tls: bool = False
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    keepalive_s: int = 15
    timeout_s: float = 10.0

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise ValueError(f"port must be in 1..65535, got {self.port}")
        if self.password is not None and self.username is None:
            raise ValueError("a password needs a username")
        if (self.cert_file or self.key_file or self.ca_file) and not self.tls:
            raise ValueError("ca_file/cert_file/key_file are only used with tls=True")
        if self.keepalive_s < 1 or self.timeout_s <= 0:
            raise ValueError(
                f"keepalive_s must be >= 1 and timeout_s > 0, got {self.keepalive_s}, {self.timeout_s}"
            )

    @classmethod
    def from_url(cls, url: str, **overrides: Any) -> ConnectionConfig:
        """``mqtt://[user[:password]@]host[:port]`` or ``mqtts://...`` (TLS, default port 8883)."""
        from urllib.parse import unquote, urlsplit

        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts"):
            raise ValueError(f"broker URL must start with mqtt:// or mqtts://, got {url!r}")
        tls = parts.scheme == "mqtts"
        kw: dict[str, Any] = {
            "host": parts.hostname or "127.0.0.1",
            "port": parts.port or (8883 if tls else 1883),
            "tls": tls,
            "username": unquote(parts.username) if parts.username else None,
            "password": unquote(parts.password) if parts.password else None,
        }
        kw.update(overrides)
        return cls(**kw)

    def client_kwargs(self, *, identifier: str | None = None, will: Any = None) -> dict[str, Any]:
        """Keyword arguments for ``aiomqtt.Client`` (clean session; the caller re-subscribes on reconnect)."""
        import aiomqtt

        kw: dict[str, Any] = {
            "hostname": self.host,
            "port": self.port,
            "username": self.username,
            "password": self.password,
            "identifier": identifier or f"streamer-{secrets.token_hex(6)}",
            "keepalive": self.keepalive_s,
            "timeout": self.timeout_s,
            "clean_session": True,
            "will": will,
        }
        if self.tls:
            kw["tls_params"] = aiomqtt.TLSParameters(
                ca_certs=self.ca_file, certfile=self.cert_file, keyfile=self.key_file
            )
        return kw


class Backoff:
    """Exponential backoff with jitter: ``min_s`` doubling up to ``max_s``, each delay scaled by 0.5..1.5.

    ``next_delay()`` returns the next wait; ``reset()`` after a connection that worked.
    """

    def __init__(self, *, min_s: float = 0.5, max_s: float = 30.0, rng: random.Random | None = None) -> None:
        if not 0 < min_s <= max_s:
            raise ValueError(f"need 0 < min_s <= max_s, got {min_s}, {max_s}")
        self.min_s = min_s
        self.max_s = max_s
        self.attempts = 0
        self._rng = rng or random.Random()

    def next_delay(self) -> float:
        """The wait before the next attempt, in seconds."""
        base = min(self.max_s, self.min_s * 2.0**self.attempts)
        self.attempts += 1
        return base * self._rng.uniform(0.5, 1.5)

    def reset(self) -> None:
        """Start again from ``min_s``."""
        self.attempts = 0
