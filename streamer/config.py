"""Config helpers: YAML files read as mappings with clear errors, and a mixin for frozen dataclass configs
with an explicit `from_dict` (unknown keys refused) and `to_dict`."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Self

import yaml

# How the pipeline chooses units: the model's unit LM search, greedy CTC, or "auto" (the LM search where
# the model has an LM and the backend runs the split step graph). Here so that CLIs need not import torch.
DECODINGS = ("auto", "lm", "greedy")


def read_yaml_mapping(path: str | Path, *, what: str, error: type[Exception] = ValueError) -> dict[str, Any]:
    """The mapping in YAML file `path` (empty file: {}); `error` naming the file when it is missing,
    not valid YAML or not a mapping."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{what} {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise error(f"{what} {path} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise error(f"{what} {path} must be a mapping of keys to values")
    return raw


def reject_unknown_keys(cls: type, d: Any, *, what: str, error: type[Exception] = ValueError) -> None:
    """Raise `error` naming the keys of mapping `d` that are not fields of dataclass `cls`."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise error(f"unknown {what} keys {unknown}; known: {sorted(names)}")


class DictConfig:
    """Give a frozen dataclass `from_dict` / `to_dict`; lists from YAML become tuples where needed."""

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Self:
        reject_unknown_keys(cls, d, what=cls.__name__)
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]
