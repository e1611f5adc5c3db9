"""`Pin`: an operator's item at a fixed page position."""

from __future__ import annotations

from dataclasses import dataclass

from recsys.pipeline.rules.base import PlacementRule

__all__ = ["Pin"]


@dataclass(frozen=True)
class Pin(PlacementRule):
    """A specific item at a specific 0-based page position; wins over pool slots and dispersal,
    yields only to filters (a served, excluded or duplicate item is not placed and is reported)."""

    position: int
    item: int
    name: str = "pin"

    def __post_init__(self) -> None:
        if int(self.position) < 0:
            raise ValueError(f"Pin.position must be >= 0 (0-based page position), got {self.position}")
        object.__setattr__(self, "position", int(self.position))
        object.__setattr__(self, "item", int(self.item))
