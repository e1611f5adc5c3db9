"""The Art. 8 review's measures of two user protections, on the trained model through the served
path: negative feedback (Art. 17 (draft 15)) and the session diversity cap (information cocoons)."""

from __future__ import annotations

import numpy as np

from compliance.policy import PolicyConfig
from compliance.review import ReviewConfig, feedback_effectiveness, review, session_diversity
from recsys.pipeline.rules.session import session_limit


def test_no_rejected_item_in_the_next_20_pages_of_100_users(trained):
    """The bar of issue 14: 0 rejected items (nor content duplicates) in the next 20 pages for 100 users."""
    from training.review import OfflineServing

    bundle, _ = trained
    path = OfflineServing(bundle)
    users = [u for u in range(len(bundle.user_ids)) if len(bundle.user_history(u))][:100]
    assert len(users) == 100
    replays = [path.feedback_replay(bundle.user_history(u), 10, 20, seen=bundle.user_seen(u), user_id=str(bundle.user_ids[u]))
               for u in users]
    first, after, rejected, fewer = (list(part) for part in zip(*replays))
    assert all(len(pages) == 20 and all(len(p) == 10 for p in pages) for pages in after)
    result = feedback_effectiveness(first, after, rejected, fewer, bundle.content_code, bundle.item_category)
    assert result.users == 100 and result.pages == 20 and result.items_shown == 100 * 20 * 10
    assert result.rejected_shown == 0 and result.users_shown_rejected == 0
    # "fewer like this" is measured: its category is rarer in the next pages than in the list it was given on
    assert result.category_share_after < result.category_share_before
    metrics = result.as_metrics()
    assert metrics["feedback_rejected_item_share"] == 0.0
    assert review(metrics, ReviewConfig(**{f: None for f in ReviewConfig.model_fields if f.startswith(("max_", "min_"))
                                            and f != "max_feedback_rejected_item_share"})).passed


def test_the_replay_would_show_the_rejected_items_without_the_feedback(trained):
    """The bar is not vacuous: the same later lists without feedback bring the first list's items back."""
    from training.review import REPLAY_SURFACES, OfflineServing

    bundle, _ = trained
    path = OfflineServing(bundle)
    users = [u for u in range(len(bundle.user_ids)) if len(bundle.user_history(u))][:20]
    returned = 0
    for u in users:
        first = path.served_list(bundle.user_history(u), 10, bundle.user_seen(u), str(bundle.user_ids[u]))
        later = [path.session(bundle.user_history(u), 10, 1, seen=bundle.user_seen(u), surface=s, session_id=s)[0]
                 for s in REPLAY_SURFACES]
        returned += sum(int(np.isin(first[:2], page).sum()) for page in later)
    assert returned > 0


def test_sessions_keep_the_dominant_category_under_the_cap(trained):
    from training.review import OfflineServing

    bundle, _ = trained
    for broaden in (False, True):
        policy = PolicyConfig()
        cap = policy.session_diversity.cap(broaden)
        path = OfflineServing(bundle, policy)
        users = [u for u in range(len(bundle.user_ids)) if len(bundle.user_history(u))][:30]
        from served.query import UserState

        sessions = [path.session(bundle.user_history(u), 10, 4, seen=bundle.user_seen(u), surface="feed",
                                 user=UserState(str(bundle.user_ids[u]), True, None, True, None, broaden_feed=broaden))
                    for u in users]
        report = session_diversity(sessions, bundle.item_category, cap, policy.session_diversity.min_positions)
        assert report["session_over_cap_rate"] == 0.0, (broaden, report)
        assert report["session/dominant_share_max"] <= session_limit(cap, 40, 10) / 40
