"""Rule types of the policy engine, one module per type, built by name through `RULE_TYPES`.

`base` holds the four phases (score, filter, placement, constraint) every rule subclasses;
`registry` maps config type names to rule classes (`rule_from_config`).
"""

from recsys.pipeline.rules.base import (
    BoundConstraint,
    ConstraintRule,
    FilterRule,
    PlacementRule,
    RequestView,
    Rule,
    ScoreRule,
)
from recsys.pipeline.rules.boost import Boost
from recsys.pipeline.rules.dispersal import Dispersal
from recsys.pipeline.rules.exclude import Exclude
from recsys.pipeline.rules.pin import Pin
from recsys.pipeline.rules.pool_slots import PoolSlots
from recsys.pipeline.rules.registry import RULE_TYPES, rule_from_config
from recsys.pipeline.rules.session import CategoryPenalty, SessionShareCap, session_limit
from recsys.pipeline.rules.unique import UniqueContent, UniqueItems, UniqueValues

__all__ = [
    "RULE_TYPES",
    "Boost",
    "CategoryPenalty",
    "BoundConstraint",
    "ConstraintRule",
    "Dispersal",
    "Exclude",
    "FilterRule",
    "Pin",
    "PlacementRule",
    "PoolSlots",
    "RequestView",
    "Rule",
    "ScoreRule",
    "SessionShareCap",
    "UniqueContent",
    "UniqueItems",
    "UniqueValues",
    "rule_from_config",
    "session_limit",
]
