"""Elderly users (Provisions Art. 19: providers shall make it easy for the elderly to use
algorithmic recommendation services safely, and monitor, identify and handle telecom and online
fraud information; draft 2021: no counterpart).

Elderly mode is a user setting (`elderly_mode`); where the user has not chosen, a profile age at or
above `default_age` turns it on (an unknown age leaves it off). In elderly mode:

- items the feature library flags as fraud or scam risk (`FRAUD_RISK`, a feature-library category,
  compliance/feature_library.py) never reach the user, on every route: the gate's `Audience`
  excludes them (serving/gate.py, `Audience.exclusions`/`eligible`);
- explanations are plain: one short sentence without jargon, scores or ranks (`plain_reason`).

The mode only adds protection: it never changes what the user's other settings allow.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from compliance.explanations import Reason

ARTICLE = 19
FRAUD_RISK = "fraud_risk"  # the feature-library category whose items elderly mode excludes


class ElderlyConfig(BaseModel):
    """Who is in elderly mode by default, and what the mode does."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    default_age: int | None = Field(60, ge=18, le=150, description="profile age from which elderly mode is on by "
                                    "default (the user's own setting wins); None: only by the setting")


def is_elderly(age: int | None, setting: bool | None, config: ElderlyConfig) -> bool:
    """Elderly mode applies: the user's setting when made, else a known age >= `default_age`."""
    if setting is not None:
        return bool(setting)
    return age is not None and config.default_age is not None and age >= config.default_age


# One plain sentence per reason code: what put the item here, in everyday words.
PLAIN_TEXT: dict[str, str] = {
    "similar_to_liked": "Similar to something you watched and liked.",
    "interest_tag": "You said you are interested in this kind of thing.",
    "editorial_front_screen": "Chosen by our editors.",
    "pinned": "Placed here by our staff.",
    "boosted": "Promoted by our staff.",
    "popular": "Many people watched this.",
    "popular_in_category": "Many people watched this.",
    "trending": "Many people are watching this now.",
    "minor_safe_pick": "Suitable for children, and many people watched it.",
}


def plain_reason(reason: Reason) -> Reason:
    """The same reason (code and signals kept, so the log still says what decided it) told plainly."""
    text = PLAIN_TEXT.get(reason.code)
    return reason if text is None else Reason(code=reason.code, text=text, signals=reason.signals)


def describe(config: ElderlyConfig) -> str:
    """The transparency page's paragraph on elderly mode."""
    default = (f"It is on by default for users whose profile age is {config.default_age} or more; "
               if config.default_age is not None else "It is off unless the user turns it on; ")
    return (f"Elderly mode (Art. {ARTICLE}): {default}every user can turn it on or off in their settings "
            "(PUT /v1/users/{user_id}/settings, elderly_mode). In elderly mode, items our content feature library "
            "flags as a fraud or scam risk are never shown, on any page or list, and the reason given for each item "
            "is a short plain sentence.")
