"""The one rule registry: a config type name -> its rule class (policy-as-config).

Adding a rule type is one module in this package plus one entry in `RULE_TYPES`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from recsys.pipeline.rules.base import Rule
from recsys.pipeline.rules.boost import Boost
from recsys.pipeline.rules.dispersal import Dispersal
from recsys.pipeline.rules.exclude import Exclude
from recsys.pipeline.rules.pin import Pin
from recsys.pipeline.rules.pool_slots import PoolSlots
from recsys.pipeline.rules.session import CategoryPenalty, SessionShareCap
from recsys.pipeline.rules.unique import UniqueContent, UniqueItems, UniqueValues

__all__ = ["RULE_TYPES", "rule_from_config"]

# The registry: config type name -> rule class (policy-as-config). Add a rule type here.
RULE_TYPES: dict[str, type[Rule]] = {
    "unique_items": UniqueItems,
    "unique_content": UniqueContent,
    "unique": UniqueValues,
    "exclude": Exclude,
    "dispersal": Dispersal,
    "pool_slots": PoolSlots,
    "pin": Pin,
    "boost": Boost,
    "session_share_cap": SessionShareCap,
    "category_penalty": CategoryPenalty,
}


def rule_from_config(spec: Mapping[str, Any]) -> Rule:
    """Build a rule from ``{"type": <RULE_TYPES key>, **fields}``."""
    fields = dict(spec)
    kind = fields.pop("type", None)
    if not isinstance(kind, str) or kind not in RULE_TYPES:
        raise ValueError(f"unknown rule type {kind!r}; known: {', '.join(RULE_TYPES)}")
    try:
        return RULE_TYPES[kind](**fields)
    except TypeError as exc:
        raise ValueError(f"bad fields for rule type {kind!r}: {exc}") from None
