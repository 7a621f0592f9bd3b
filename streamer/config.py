"""A mixin for frozen dataclass configs: explicit `from_dict` (unknown keys refused) and `to_dict`."""

from __future__ import annotations

import dataclasses
from typing import Any, Self


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
