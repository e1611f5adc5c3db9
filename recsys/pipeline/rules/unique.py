"""De-duplication rules: each value of an item attribute at most once per page and per session.

`UniqueItems` (always applied, never relaxed), `UniqueContent` (one content key) and
`UniqueValues` (any attribute, e.g. one item per series or creator); the latter two are relaxable.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from recsys.pipeline.rules.base import FilterRule, check_attribute
from recsys.pipeline.slate import SlateContext

__all__ = ["UniqueContent", "UniqueItems", "UniqueValues"]


@dataclass(frozen=True)
class UniqueItems(FilterRule):
    """No item twice on the page, and none served earlier in the session. Hard: never relaxed."""

    name: str = "unique_items"
    attribute: str = field(default="item", init=False)
    unique: ClassVar[bool] = True

    def excluded_values(self, context: SlateContext) -> frozenset[int]:
        return context.served_items

    def excluded_detail(self, value: str) -> str:
        return f"item {value} was served earlier in this session"


@dataclass(frozen=True)
class UniqueContent(FilterRule):
    """No two items with the same content key, nor content served earlier in the session.

    Relaxed only when its name is in the relaxation order and the page cannot otherwise be filled;
    then duplicates fill the remaining positions and each is reported."""

    name: str = "unique_content"
    attribute: str = field(default="content", init=False)
    unique: ClassVar[bool] = True
    relaxable: ClassVar[bool] = True

    def excluded_values(self, context: SlateContext) -> frozenset[int]:
        return context.served_contents

    def excluded_detail(self, value: str) -> str:
        return f"content {value} was served earlier in this session"


@dataclass(frozen=True)
class UniqueValues(FilterRule):
    """No two items with the same value of `attribute` on the page, nor a value served earlier in
    the session (`SlateContext.served_values`): de-duplication over any item attribute, e.g. one
    item per series. Relaxable: named in the relaxation order, it gives way like content dedup."""

    attribute: str = "content"
    name: str = "unique_values"
    unique: ClassVar[bool] = True
    relaxable: ClassVar[bool] = True

    def __post_init__(self) -> None:
        check_attribute(self.attribute, "UniqueValues")

    def excluded_values(self, context: SlateContext) -> frozenset[int]:
        return context.served_values.get(self.attribute, frozenset())

    def excluded_detail(self, value: str) -> str:
        return f"{self.attribute} {value} was served earlier in this session"
