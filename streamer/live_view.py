"""The terminal view of `streamer live`: a rich Live panel redrawn ~10 times a second.

It only reads `LiveSnapshot`s (plain numbers, taken on the event loop) and draws them; it never touches
audio or models. Off when stdout is not a terminal, unless forced with ``mode="on"``.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO

from rich.console import Console, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

__all__ = ["LiveSnapshot", "LiveView", "level_bar", "render", "view_enabled"]

VIEW_MODES = ("auto", "on", "off")
FLOOR_DB = -60.0


@dataclass(frozen=True)
class LiveSnapshot:
    """One look at a live session. Levels in dBFS (RMS of the latest chunk), times in ms."""

    title: str
    source: str
    sink: str
    vad: str
    elapsed_s: float
    input_s: float
    input_db: float
    voice: bool
    voice_prob: float
    output_db: float
    phase: str  # "listening", "speech", "closing" (draining after voice), "on" (no VAD), "stopping", "stopped"
    compute_p50_ms: float
    compute_p99_ms: float
    chunk_ms: int
    latency_ms: float
    overflows: int
    dropped: int
    underflows: int
    steps: int
    skipped: int


def view_enabled(mode: str, stream: IO[str] | None = None) -> bool:
    """"on" and "off" mean what they say; "auto" is on when `stream` (stdout) is a terminal."""
    if mode not in VIEW_MODES:
        raise ValueError(f"view mode must be one of {VIEW_MODES}, got {mode!r}")
    if mode != "auto":
        return mode == "on"
    stream = stream or sys.stdout
    return bool(getattr(stream, "isatty", lambda: False)())


def to_db(rms: float) -> float:
    """RMS (linear, full scale 1.0) -> dBFS, floored at -120."""
    return 20.0 * math.log10(rms) if rms > 1e-6 else -120.0


def level_bar(db: float, *, width: int = 24, floor_db: float = FLOOR_DB) -> str:
    """A meter from `floor_db` to 0 dBFS, `width` characters."""
    filled = 0 if db <= floor_db else min(width, round(width * (db - floor_db) / -floor_db))
    return "█" * filled + "░" * (width - filled)


def _ms(x: float) -> str:
    return "-" if math.isnan(x) else f"{x:.1f} ms"


def render(s: LiveSnapshot) -> RenderableType:
    """The panel for one snapshot."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold cyan", no_wrap=True)
    grid.add_column(no_wrap=True)
    minutes, seconds = divmod(s.input_s, 60)
    grid.add_row("input", f"{s.source}   {int(minutes):02d}:{seconds:04.1f}")
    level_style = "red" if s.input_db > -3 else "green"
    grid.add_row("level", Text(level_bar(s.input_db), style=level_style) + Text(f" {s.input_db:6.1f} dBFS"))
    if s.vad == "off":
        voice = Text("(no voice gate)", style="dim")
    elif s.voice:
        voice = Text("● voice", style="bold green") + Text(f"   p={s.voice_prob:.2f}")
    else:
        voice = Text("○ silence", style="dim") + Text(f"   p={s.voice_prob:.2f}")
    grid.add_row("voice", voice)
    speaking = s.output_db > -50.0
    out_state = {"listening": "idle", "speech": "translating", "closing": "finishing the sentence",
                 "on": "translating", "stopping": "flushing the translator", "stopped": "stopped"}.get(s.phase, s.phase)
    grid.add_row("output", Text(level_bar(s.output_db), style="magenta" if speaking else "dim")
                 + Text(f" {s.output_db:6.1f} dBFS  {out_state}"))
    grid.add_row("sink", s.sink)
    rtf = s.compute_p50_ms / s.chunk_ms if s.chunk_ms and not math.isnan(s.compute_p50_ms) else float("nan")
    rtf_text = "-" if math.isnan(rtf) else f"{rtf:.2f}"
    grid.add_row("compute", f"p50 {_ms(s.compute_p50_ms)}  p99 {_ms(s.compute_p99_ms)}  per {s.chunk_ms} ms chunk "
                            f"(rtf {rtf_text}; {s.steps} steps, {s.skipped} skipped as silence)")
    grid.add_row("latency", f"~{s.latency_ms:.0f} ms end to end (pipeline estimate)")
    bad = "red" if (s.overflows or s.dropped or s.underflows) else "green"
    grid.add_row("xruns", Text(f"overflows {s.overflows}  dropped {s.dropped}  underflows {s.underflows}", style=bad))
    return Panel(grid, title=f"streamer live · {s.title} · VAD {s.vad}", subtitle="Ctrl-C to stop",
                 border_style="blue", expand=False)


class LiveView:
    """``async with LiveView(session.snapshot): ...`` redraws the panel every 1/refresh_hz s on the loop."""

    def __init__(self, snapshot: Callable[[], LiveSnapshot], *, console: Console | None = None,
                 refresh_hz: float = 10.0) -> None:
        self.snapshot = snapshot
        self.console = console or Console()
        self.period_s = 1.0 / refresh_hz
        self._live: Live | None = None
        self._task: asyncio.Task | None = None

    async def __aenter__(self) -> LiveView:
        self._live = Live(render(self.snapshot()), console=self.console, auto_refresh=False,
                          redirect_stdout=False, redirect_stderr=False)
        self._live.start(refresh=True)
        self._task = asyncio.create_task(self._loop())
        return self

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.period_s)
            self._live.update(render(self.snapshot()), refresh=True)

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._live is not None:
            self._live.update(render(self.snapshot()), refresh=True)
            self._live.stop()
