"""Reading the bodies the API returns, defensively: a field of the wrong type reads as missing, so
a malformed response fails a check with a message instead of crashing the audit."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

PERSONALIZED, NON_PERSONALIZED = "personalized", "non_personalized"


def items_of(body: Any) -> list[dict[str, Any]]:
    """The item objects of a list response (anything else under `items` is ignored)."""
    items = body.get("items") if isinstance(body, dict) else None
    return [item for item in items if isinstance(item, dict)] if isinstance(items, list) else []


def ids_of(body: Any) -> list[str]:
    return [str(item.get("item_id")) for item in items_of(body)]


def violations_of(body: Any) -> list[dict[str, Any]]:
    """The violations a list response reports (`{rule, position, reason}` objects)."""
    violations = body.get("violations") if isinstance(body, dict) else None
    return [v for v in violations if isinstance(v, dict)] if isinstance(violations, list) else []


def reason_of(item: dict[str, Any]) -> dict[str, Any]:
    """The item's `reason` object, empty when it has none."""
    reason = item.get("reason")
    return reason if isinstance(reason, dict) else {}


def labels_of(item: dict[str, Any]) -> list[Any]:
    labels = item.get("labels")
    return labels if isinstance(labels, list) else []


def where(body: dict[str, Any]) -> str:
    """Which list a failure is about: user, surface, page and request id."""
    return (f"user {body.get('user_id')} {body.get('surface')} page {body.get('page')} "
            f"(request {body.get('request_id')})")


def unreported(body: dict[str, Any], rules: set[str], positions0: Sequence[int]) -> list[int]:
    """The 0-based positions among `positions0` for which the response reports no violation of
    `rules`. The API does not fix whether violation positions count from 0 (as the policy engine
    does) or 1 (as item positions do): each response is read in whichever explains more."""
    reported = {v.get("position") for v in violations_of(body) if v.get("rule") in rules}
    from_zero = [p for p in positions0 if p not in reported]
    from_one = [p for p in positions0 if p + 1 not in reported]
    return from_zero if len(from_zero) <= len(from_one) else from_one


def mentions(text: str, name: str) -> bool:
    """Whether `text` names `name` as a whole word, in any case."""
    return re.search(rf"(?<!\w){re.escape(name)}(?!\w)", text, flags=re.IGNORECASE) is not None
