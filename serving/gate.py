"""The one gate in front of every route that returns items to a user (Art. 18 (draft 16) minors, Art. 9 and
Art. 11 safety, Art. 17 (draft 15) consent).

`ContentGate.admit` is the only way to get an `Audience`, and every function that produces items
for a user takes one: `RecommendationPipeline.run`, the trending list, the logged-list lookup. So a
new route cannot serve items without passing the gate, and the gate decides in one place:

- minors mode: who is a minor (profile age or guardian switch), the night curfew and the daily
  budget (refused with 403 and a code, the refusal logged), the activity counted toward the budget,
  and the highest item age rating the user's band may see;
- safety: items blocked by an operator, matched by the feature library or flagged by the dataset,
  and items rated above the user's band, are excluded on every route (`Audience.exclusions`);
- consent: whether the user allows personalized lists (the switch, and minors' default);
- elderly mode (Provisions Art. 19): the user's setting, else a profile age at or above the
  configured default (`compliance.elderly`); the audience then excludes items the feature library
  flags as fraud or scam risk on every route, and lists explain themselves plainly.

A black-box test (tests/serving/test_gate.py) drives every operation of the OpenAPI schema as a
minor in curfew and as an over-budget minor, so a route that forgets the gate fails it.
"""

from __future__ import annotations

import logging
from datetime import datetime

from compliance import elderly, minors
from compliance.logstore import LogStore
from serving import metrics
from served.query import Audience, UserState
from serving.state.store import StateStore

log = logging.getLogger("recsys.serving")


class AccessDenied(Exception):
    """Minors mode refuses this request (curfew or daily budget); carries the decision."""

    def __init__(self, decision: minors.AccessDecision):
        super().__init__(decision.message)
        self.decision = decision


class ContentGate:
    def __init__(self, store: StateStore, logstore: LogStore, config: minors.MinorsConfig,
                 elderly_config: elderly.ElderlyConfig | None = None):
        self.store = store
        self.logstore = logstore
        self.config = config
        self.elderly_config = elderly_config or elderly.ElderlyConfig()

    def admit(self, user_id: str, now: datetime, *, route: str, request_id: str) -> Audience:
        """The audience of one request, or AccessDenied (logged, counted) when minors mode refuses it.
        An admitted minor's request counts toward the day's usage."""
        user = self.store.load_user(user_id)
        config = self.config
        minor = minors.is_minor(user.age, user.minor_mode, config)
        decision = minors.AccessDecision(allowed=True)
        controls = None
        if minor:
            controls = self.guardian_controls(user_id)
            decision = self._minor_access(user, now, controls)
            if not decision.allowed:
                self.logstore.append("recommendation_refused", {
                    "request_id": request_id, "user_id": user_id, "route": route, "code": decision.code,
                    "reason": decision.message, "at": now.isoformat(),
                })
                metrics.REFUSALS.labels(decision.code).inc()
                raise AccessDenied(decision)
        return Audience(
            user=user,
            now=now,
            minor=minor,
            max_age_rating=minors.max_age_rating(user.age, user.minor_mode, config, controls),
            personalization_allowed=user.personalization and (not minor or config.personalized),
            usage=decision,
            elderly=self.is_elderly(user),
        )

    def _minor_access(self, user: UserState, now: datetime, controls: minors.GuardianControls | None) -> minors.AccessDecision:
        day = minors.local_day(now, self.config)
        stored = self.store.get_usage(user.user_id, day)
        state = minors.UsageState(day=day, last_activity=stored[0], seconds_used=stored[1]) if stored else None
        decision = minors.check_access(now, user.age, user.minor_mode, state, self.config, controls)
        if decision.allowed:
            self.record_activity(user.user_id, [now])
            decision = minors.rest_reminder(decision, self.store.continuous_since(user.user_id, day), now, self.config)
        return decision

    def guardian_controls(self, user_id: str) -> minors.GuardianControls | None:
        """What the user's guardian set, validated as it was on write. A stored value that no
        longer validates is logged and counted, and the configured rules (the regulated
        minimum) apply alone: it never takes serving down."""
        stored = self.store.guardian(user_id)
        if stored is None:
            return None
        try:
            return minors.GuardianControls.model_validate(stored[1])
        except ValueError as exc:
            log.warning("guardian controls of %s unreadable, configured rules apply: %s", user_id, exc)
            metrics.UNREADABLE_READS.labels("guardian_controls").inc()
            return None

    def record_activity(self, user_id: str, moments: list[datetime]) -> None:
        """Count activities (requests, events) of a minor toward their daily usage: one atomic
        statement each (`StateStore.add_usage`, the rule of `minors.add_activity` in SQL), so
        activity on two workers at once never loses time."""
        config = self.config
        for moment in sorted(moments):
            self.store.add_usage(user_id, minors.local_day(moment, config), moment,
                                 config.activity_gap_cap_seconds, config.activity_floor_seconds)

    def is_minor(self, user: UserState) -> bool:
        return minors.is_minor(user.age, user.minor_mode, self.config)

    def is_elderly(self, user: UserState) -> bool:
        return elderly.is_elderly(user.age, user.elderly_mode, self.elderly_config)
