"""`Exclude`: drop every candidate whose attribute value is listed (blocked items, categories)."""

from __future__ import annotations

from dataclasses import dataclass

from recsys.pipeline.candidates import int_set
from recsys.pipeline.rules.base import FilterRule, check_attribute
from recsys.pipeline.slate import SlateContext

__all__ = ["Exclude"]


@dataclass(frozen=True)
class Exclude(FilterRule):
    """Drops every candidate whose `attribute` value is in `values` (e.g. blocked items). Hard."""

    values: frozenset[int] = frozenset()
    attribute: str = "item"
    name: str = "exclude"

    def __post_init__(self) -> None:
        object.__setattr__(self, "values", int_set(self.values, f"Exclude({self.name}).values"))
        check_attribute(self.attribute, "Exclude")

    def excluded_values(self, context: SlateContext) -> frozenset[int]:
        return self.values

    def excluded_detail(self, value: str) -> str:
        return f"{self.attribute} {value} is excluded by {self.name}"
