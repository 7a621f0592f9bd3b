"""A mixin for frozen dataclass configs: explicit `from_dict` (unknown keys refused) and `to_dict`."""

from __future__ import annotations

import dataclasses
from typing import Any, Self


class DictConfig:
    """Give a frozen dataclass `from_dict` / `to_dict`; lists from YAML become tuples where needed."""

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Self:
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"{cls.__name__}: unknown keys {unknown}; known: {sorted(names)}")
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]
