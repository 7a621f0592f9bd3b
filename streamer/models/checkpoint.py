"""Weights in safetensors with the model config in the header metadata (the config travels with them)."""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

from safetensors import safe_open
from safetensors.torch import save_file

from streamer.errors import ModelError
from streamer.models.s2st import S2STConfig, S2STModel

WEIGHTS_NAME = "model.safetensors"


def save_model(model: S2STModel, path: str | Path, *, extra: dict[str, str] | None = None) -> Path:
    """Write `model` to `path` (a .safetensors file, or a directory that gets model.safetensors)."""
    path = Path(path)
    if path.suffix != ".safetensors":
        path.mkdir(parents=True, exist_ok=True)
        path = path / WEIGHTS_NAME
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    metadata = {"config": json.dumps(model.cfg.to_dict()), **(extra or {})}
    save_file(tensors, str(path), metadata=metadata)
    _sort_metadata(path)
    return path


def _sort_metadata(path: Path) -> None:
    """Rewrite the header with its metadata keys sorted, in place and at the same length.

    safetensors writes metadata in hash-map order, which changes from save to save; sorted, the same
    weights and config always give the same bytes (stable SHA256SUMS). The JSON is re-encoded the way
    safetensors encodes it; should its length ever differ, the file is left as written.
    """
    with path.open("r+b") as f:
        size = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(size))
        header["__metadata__"] = dict(sorted(header.get("__metadata__", {}).items()))
        raw = json.dumps(header, ensure_ascii=False, separators=(",", ":")).encode()
        if len(raw) <= size:
            f.seek(8)
            f.write(raw + b" " * (size - len(raw)))


def weights_path(path: str | Path) -> Path:
    path = Path(path)
    return path / WEIGHTS_NAME if path.is_dir() else path


def read_metadata(path: str | Path) -> dict[str, str]:
    file = weights_path(path)
    if not file.is_file():
        raise ModelError(f"no model weights at {file}")
    try:
        with safe_open(str(file), framework="pt") as f:
            return dict(f.metadata() or {})
    except Exception as exc:  # safetensors raises several types for a bad header
        raise ModelError(f"{file} is not a readable safetensors file: {exc}") from exc


def load_model(path: str | Path) -> S2STModel:
    """Rebuild the model from the config in the file's metadata and load its weights (eval mode)."""
    file = weights_path(path)
    meta = read_metadata(file)
    if "config" not in meta:
        raise ModelError(f"{file} has no 'config' metadata; it was not written by streamer")
    try:
        config = S2STConfig.from_dict(json.loads(meta["config"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"{file}: bad model config: {exc}") from exc
    model = S2STModel(config)
    from safetensors.torch import load_file

    state = load_file(str(file))
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ModelError(f"{file}: weights do not match the config (missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]})")
    return model.eval()


def model_fingerprint(model: S2STModel) -> str:
    """A short hash of config and weights, used to key compiled-artifact caches."""
    h = hashlib.sha256(json.dumps(model.cfg.to_dict(), sort_keys=True).encode())
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


__all__ = ["load_model", "save_model", "read_metadata", "model_fingerprint"]
