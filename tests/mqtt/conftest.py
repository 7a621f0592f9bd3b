"""Fixtures for the MQTT tests: a real mosquitto on a free port (tests using it are marked ``mqtt``)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

import pytest

from streamer.mqtt.broker import MosquittoBroker, find_mosquitto

T = TypeVar("T")


def run_async(coro: Coroutine[Any, Any, T], *, timeout_s: float = 20.0) -> T:
    """Run ``coro`` on a fresh event loop with a hard timeout, so a hung broker fails the test fast."""

    async def _guarded() -> T:
        return await asyncio.wait_for(coro, timeout_s)

    return asyncio.run(_guarded())


@pytest.fixture(scope="session")
def arun() -> Callable[..., Any]:
    """``arun(coro, timeout_s=20)``: run a coroutine to completion from a sync test (see ``run_async``)."""
    return run_async


@pytest.fixture(scope="session")
def mosquitto_path() -> str:
    """Path of mosquitto; skips (with the reason) where it is not installed."""
    path = find_mosquitto()
    if path is None:
        pytest.skip("mosquitto is not installed (apt install mosquitto)")
    return path


@pytest.fixture(scope="session")
def broker(mosquitto_path: str) -> Iterator[MosquittoBroker]:
    """One broker shared by the session. Tests must not stop it; use ``fresh_broker`` for that."""
    with MosquittoBroker(executable=mosquitto_path) as b:
        yield b


@pytest.fixture
def fresh_broker(mosquitto_path: str) -> Iterator[MosquittoBroker]:
    """A broker of the test's own, free to stop, kill and restart."""
    with MosquittoBroker(executable=mosquitto_path) as b:
        yield b
