"""What a served list is asked for and for whom: the request, the user's state as the request path
sees it, the pages already served in the session, and the audience the gate admitted."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from compliance import minors


@dataclass(frozen=True)
class RecommendationRequest:
    user_id: str
    surface: str
    page: int
    k: int
    session_id: str | None = None


@dataclass(frozen=True)
class Feedback:
    """One negative feedback of a user on an item of a served list (Provisions Art. 17 (draft 15)):
    `kind` "not_interested" (this item) or "fewer_like_this" (this item, and its primary
    `category` down-weighted for the configured period from `created_at`)."""

    item_id: str
    kind: str
    category: str | None
    created_at: datetime
    request_id: str = ""


@dataclass(frozen=True)
class UserState:
    """What the request path knows of a user before it recommends anything."""

    user_id: str
    known: bool  # has a profile or settings row
    age: int | None
    personalization: bool
    minor_mode: bool | None
    tag_states: dict[str, str] = field(default_factory=dict)  # tag -> deleted | added | not_interested
    elderly_mode: bool | None = None  # the Art. 19 setting; None: decided by the profile age
    broaden_feed: bool = False  # "broaden my feed": a lower cap on one category's share of a session
    feedback: tuple[Feedback, ...] = ()  # "not interested" / "fewer like this", oldest first
    # when the user last erased their interaction history (PIPL Art. 47); None: never. From then on the
    # model's training-time history of the user is not theirs to be served from (`ServedPath.make_query`)
    history_erased_at: datetime | None = None

    def tags_in(self, state: str) -> set[str]:
        """The tags the user put in `state` (deleted, added or not_interested)."""
        return {tag for tag, s in self.tag_states.items() if s == state}


@dataclass(frozen=True)
class ServedPage:
    page: int
    session_id: str
    items: list[int]
    categories: list[int]
    contents: list[int]


@dataclass(frozen=True)
class Audience:
    """Who is asking and what the rules in force let them receive. The server makes one only in its
    gate (serving/gate.py: minors' curfew and budget checked, the activity to count in `charge`); an offline replay
    makes one with `Audience.offline`."""

    user: UserState
    now: datetime
    minor: bool
    max_age_rating: int | None  # None: an adult, no rating limit
    personalization_allowed: bool  # the user's switch; minors get non-personalized lists by default
    usage: minors.AccessDecision  # budget and minutes used today (minors), allowed
    elderly: bool = False  # elderly mode (Art. 19): fraud-risk items excluded, plain explanations
    # an admitted minor's activity, for the server's one writer to count (serving/usage.py); None: nothing to count
    charge: minors.UsageCharge | None = None

    @property
    def user_id(self) -> str:
        return self.user.user_id

    @classmethod
    def offline(cls, user_id: str, now: datetime, config: minors.MinorsConfig, age: int | None = None,
                user: UserState | None = None, elderly: bool = False) -> Audience:
        """An audience for an offline replay (review, benchmarks): default settings (or `user`'s),
        no usage."""
        user = user or UserState(user_id=user_id, known=True, age=age, personalization=True, minor_mode=None)
        minor = minors.is_minor(age, None, config)
        return cls(user=user, now=now, minor=minor, max_age_rating=minors.max_age_rating(age, None, config),
                   personalization_allowed=not minor or config.personalized, usage=minors.AccessDecision(allowed=True),
                   elderly=elderly)

    def exclusions(self, items: np.ndarray, blocked: np.ndarray, age_rating: np.ndarray,
                   fraud_risk: np.ndarray | None = None) -> list[tuple[str, np.ndarray]]:
        """The safety filters for candidate `items` (catalog indices), as (reason, removed mask):
        blocked/flagged/feature-library items for everyone, items rated above the band for minors,
        items the feature library flags as fraud or scam risk for users in elderly mode (Art. 19)."""
        checks = [("blocked", blocked[items])]
        if self.max_age_rating is not None:
            checks.append(("age_rating", age_rating[items] > self.max_age_rating))
        if self.elderly and fraud_risk is not None and len(fraud_risk):
            checks.append(("fraud_risk", fraud_risk[items]))
        return checks

    def eligible(self, blocked: np.ndarray, age_rating: np.ndarray, fraud_risk: np.ndarray | None = None) -> np.ndarray:
        """Bool mask over the whole catalog of the items this audience may receive."""
        keep = ~blocked
        if self.max_age_rating is not None:
            keep &= age_rating <= self.max_age_rating
        if self.elderly and fraud_risk is not None and len(fraud_risk):
            keep &= ~fraud_risk
        return keep
