"""streamer: streaming, real-time speech-to-speech translation."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from streamer.pipeline import Session, TranslationResult, Translator

__all__ = ["Session", "TranslationResult", "Translator", "__version__"]


def __getattr__(name: str) -> Any:
    # Lazy: `import streamer.errors` should not pay for importing torch.
    if name in {"Session", "TranslationResult", "Translator"}:
        from streamer import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'streamer' has no attribute {name!r}")
