"""The one gate in front of every route that returns items to a user (Art. 18 (draft 16) minors, Art. 9 and
Art. 11 safety, Art. 17 (draft 15) consent).

`ContentGate.admit` is the only way to get an `Audience`, and every function that produces items
for a user takes one: `RecommendationPipeline.run`, the trending list, the logged-list lookup. So a
new route cannot serve items without passing the gate, and the gate decides in one place:

- minors mode: who is a minor (profile age or guardian switch), the night curfew and the daily
  budget read at admission (refused with 403 and a code, the refusal logged), and the highest item
  age rating the user's band may see. The activity is counted toward the budget once the request is
  served: `admit` counts it at once (routes that serve no list), `admit_list` leaves it, as the
  audience's `charge`, to `RecommendationPipeline.serve`, the one writer (serving/usage.py: after the
  response far from the budget; before the list is released, and only while the budget is not
  spent, at its edge);
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
from serving.state.store import ListRead, RequestState, StateStore
from serving.usage import UsageCounter

log = logging.getLogger("recsys.serving")


class AccessDenied(Exception):
    """Minors mode refuses this request (curfew or daily budget); carries the decision."""

    def __init__(self, decision: minors.AccessDecision):
        super().__init__(decision.message)
        self.decision = decision


def refusal(logstore: LogStore, decision: minors.AccessDecision, *, user_id: str, route: str, request_id: str,
            now: datetime) -> AccessDenied:
    """Log and count a minors-mode refusal (Art. 28 (draft 24): refusals are logged too); raise the result."""
    logstore.append("recommendation_refused", {
        "request_id": request_id, "user_id": user_id, "route": route, "code": decision.code,
        "reason": decision.message, "at": now.isoformat(),
    })
    metrics.REFUSALS.labels(decision.code or "refused").inc()
    return AccessDenied(decision)


class ContentGate:
    def __init__(self, store: StateStore, logstore: LogStore, config: minors.MinorsConfig,
                 elderly_config: elderly.ElderlyConfig | None = None):
        self.store = store
        self.logstore = logstore
        self.config = config
        self.elderly_config = elderly_config or elderly.ElderlyConfig()
        self.usage = UsageCounter(store, config)

    def admit(self, user_id: str, now: datetime, *, route: str, request_id: str) -> Audience:
        """The audience of one request, or AccessDenied (logged, counted) when minors mode refuses it.
        An admitted minor's request is counted toward the day's usage here, before anything is
        served, and only while the budget is not spent (concurrent requests cannot share one read)."""
        audience = self.admit_list(user_id, now, route=route, request_id=request_id)
        charge = audience.charge
        if charge is not None and not self.usage.charge_now(charge):
            raise refusal(self.logstore, charge.refusal, user_id=user_id, route=route, request_id=request_id, now=now)
        return audience

    def admit_list(self, user_id: str, now: datetime, *, route: str, request_id: str) -> Audience:
        """`admit` for a list the pipeline's one writer serves: nothing is written here; an admitted
        minor's audience carries the `charge` that `RecommendationPipeline.serve` must count."""
        user = self.store.load_user(user_id)
        if not self.is_minor(user):
            return self.decide(user, None, None, now, route=route, request_id=request_id)
        return self.decide(user, self.guardian_controls(user_id), self.usage.read(user_id, now), now, route=route,
                           request_id=request_id)

    def admit_list_reading(self, user_id: str, now: datetime, read: ListRead, *, route: str,
                           request_id: str) -> tuple[Audience, RequestState]:
        """`admit_list`, and the request's state for hydrate (`read`), from ONE read of the state
        database (`StateStore.list_state`): the user, a minor's guardian controls and usage of the
        day (read for everyone: an adult has none, and reading them costs no round trip), and the
        list's pages, events and versions. The gate decides on what it read, as `admit_list` does."""
        self.usage.settle(user_id)  # a minor's counts queued on this worker are read back
        day = minors.local_day(now, self.config)
        state = self.store.list_state(user_id, day, read)
        controls = usage = None
        if self.is_minor(state.user):
            controls = self.validated_controls(user_id, state.guardian)
            usage = self.usage.from_stored(day, state.usage)
        return self.decide(state.user, controls, usage, now, route=route, request_id=request_id), state.request

    def decide(self, user: UserState, controls: minors.GuardianControls | None, usage: minors.UsageState | None,
               now: datetime, *, route: str, request_id: str) -> Audience:
        """The audience of `user` from the state read for them (a minor's guardian controls and usage
        of the day), or AccessDenied (logged, counted) when minors mode refuses the request."""
        config = self.config
        minor = self.is_minor(user)
        decision = minors.AccessDecision(allowed=True)
        charge = None
        if minor:
            decision = minors.check_access(now, user.age, user.minor_mode, usage, config, controls)
            if not decision.allowed:
                raise refusal(self.logstore, decision, user_id=user.user_id, route=route, request_id=request_id, now=now)
            # continuous use including this request: the usage rule applied to the state it was admitted on
            decision = minors.rest_reminder(decision, minors.add_activity(usage, now, config).continuous_since, now, config)
            charge = minors.usage_charge(user.user_id, now, user.age, user.minor_mode, usage, decision, config, controls)
        return Audience(
            user=user,
            now=now,
            minor=minor,
            max_age_rating=minors.max_age_rating(user.age, user.minor_mode, config, controls),
            personalization_allowed=user.personalization and (not minor or config.personalized),
            usage=decision,
            elderly=self.is_elderly(user),
            charge=charge,
        )

    def guardian_controls(self, user_id: str) -> minors.GuardianControls | None:
        """What the user's guardian set, validated as it was on write (`validated_controls`)."""
        return self.validated_controls(user_id, self.store.guardian(user_id))

    def validated_controls(self, user_id: str, stored: tuple[str, object, datetime] | None) -> minors.GuardianControls | None:
        """The stored guardian row's controls, validated as they were on write. A stored value that no
        longer validates is logged and counted, and the configured rules (the regulated
        minimum) apply alone: it never takes serving down."""
        if stored is None:
            return None
        try:
            return minors.GuardianControls.model_validate(stored[1])
        except ValueError as exc:
            log.warning("guardian controls of %s unreadable, configured rules apply: %s", user_id, exc)
            metrics.UNREADABLE_READS.labels("guardian_controls").inc()
            return None

    def record_activity(self, user_id: str, moments: list[datetime], now: datetime) -> None:
        """Count activities that are not item requests (a minor's events) toward their daily usage:
        one atomic statement each (`StateStore.add_usage`, the rule of `minors.add_activity` in SQL),
        so activity on two workers at once never loses time."""
        self.usage.record(user_id, moments, now)

    def is_minor(self, user: UserState) -> bool:
        return minors.is_minor(user.age, user.minor_mode, self.config)

    def is_elderly(self, user: UserState) -> bool:
        return elderly.is_elderly(user.age, user.elderly_mode, self.elderly_config)
