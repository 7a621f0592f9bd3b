"""Shipped default models: one folder per language pair with model.safetensors, MODEL_CARD.md and
SHA256SUMS. Nothing is ever downloaded: what is here is what the package can load."""

from __future__ import annotations

import hashlib
from pathlib import Path

from streamer.errors import ModelError

ASSETS = Path(__file__).resolve().parent


def available_models() -> list[str]:
    return sorted(p.name for p in ASSETS.iterdir() if (p / "model.safetensors").is_file())


def model_dir(name: str, *, verify: bool = True) -> Path:
    """The folder of the shipped model `name` (e.g. "en-es"), checked against its SHA256SUMS."""
    path = ASSETS / name
    if not (path / "model.safetensors").is_file():
        shipped = ", ".join(available_models()) or "none"
        raise ModelError(f"no shipped model {name!r} (shipped: {shipped}); pass a folder with "
                         "Translator.from_dir(...) or --model PATH")
    if verify:
        verify_checksums(path)
    return path


def sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verify_checksums(path: Path) -> None:
    sums = path / "SHA256SUMS"
    if not sums.is_file():
        return
    for line in sums.read_text().splitlines():
        digest, name = line.split(maxsplit=1)
        actual = sha256(path / name.strip())
        if actual != digest:
            raise ModelError(f"{path / name}: SHA-256 {actual[:12]}... does not match SHA256SUMS {digest[:12]}...; "
                             "the file is corrupt or was changed")
