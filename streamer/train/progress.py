"""Progress bars for long work (training, export, bench): rich on a terminal, periodic log lines otherwise."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")
log = logging.getLogger("streamer.progress")


def progress(items: Iterable[T], *, description: str, total: int | None = None) -> Iterator[T]:
    """Iterate with a progress bar (rich) when stderr is a terminal, else log every ~30 s."""
    total = total if total is not None else (len(items) if hasattr(items, "__len__") else None)
    if sys.stderr.isatty():
        from rich.progress import track

        yield from track(items, description=description, total=total, transient=False)
        return
    start = last = time.monotonic()
    for i, item in enumerate(items):
        yield item
        now = time.monotonic()
        if now - last >= 30:
            last = now
            rate = (i + 1) / (now - start)
            eta = f", eta {(total - i - 1) / rate:.0f} s" if total else ""
            log.info("%s: %d/%s (%.2f/s%s)", description, i + 1, total or "?", rate, eta)
