"""`streamer serve`: a worker process from a YAML config and command-line overrides."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import signal
from pathlib import Path
from typing import Any

from streamer.config import read_yaml_mapping
from streamer.errors import StreamerError
from streamer.mqtt.connection import ConnectionConfig
from streamer.mqtt.streams import WorkerConfig

log = logging.getLogger(__name__)


class ServiceConfigError(StreamerError, ValueError):
    """A service config file or setting that cannot be used."""


def load_service_config(path: str | Path | None, *, broker: str | None = None,
                        overrides: dict[str, Any] | None = None) -> tuple[ConnectionConfig, WorkerConfig]:
    """YAML (sections `broker: mqtt://...`, `connection: {...}`, `worker: {...}`) + overrides -> configs."""
    raw = read_yaml_mapping(path, what="service config", error=ServiceConfigError) if path else {}
    url = broker or raw.get("broker", "mqtt://127.0.0.1:1883")
    conn_fields = {f.name for f in dataclasses.fields(ConnectionConfig)}
    worker_fields = {f.name for f in dataclasses.fields(WorkerConfig)}
    conn_kw = dict(raw.get("connection", {}))
    worker_kw = dict(raw.get("worker", {}))
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        if key in conn_fields:
            conn_kw[key] = value
        elif key in worker_fields:
            worker_kw[key] = value
        else:
            raise ServiceConfigError(f"unknown service setting {key!r}")
    unknown = (set(conn_kw) - conn_fields) | (set(worker_kw) - worker_fields)
    if unknown:
        raise ServiceConfigError(f"unknown service settings {sorted(unknown)}")
    return ConnectionConfig.from_url(url, **conn_kw), WorkerConfig(**worker_kw)


async def serve(translator, connection: ConnectionConfig, config: WorkerConfig) -> None:
    """Run one worker until SIGINT/SIGTERM."""
    from streamer.mqtt.worker import Worker

    worker = Worker(translator, connection=connection, config=config)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, worker.stop)
    log.info("worker %s serving %s:%d prefix %s group %s", config.worker_id, connection.host, connection.port,
             config.prefix, config.group)
    await worker.run()
