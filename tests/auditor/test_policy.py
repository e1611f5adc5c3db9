"""The policy the auditor holds a server to (auditor/policy.py), read from what the server's own
transparency texts say (compliance.policy.describe) and from structured fields."""

from __future__ import annotations

from auditor.policy import ExpectedPolicy, expected_policy
from compliance.policy import PolicyConfig, describe


# --- the declared policy ---------------------------------------------------------------------------
def test_expected_policy_reads_the_policy_texts_the_server_publishes():
    default = expected_policy({"mechanism": {"policies": [t.text for t in describe(PolicyConfig())]}})
    assert (default.front_positions, default.front_count, default.dispersal_window, default.dispersal_max) == \
        (tuple(range(1, 11)), 2, 5, 2)
    legacy = expected_policy({"policies": [t.text for t in describe(PolicyConfig.model_validate(
        {"front_screen": {"positions": [1, 5]}}))]})  # the fixed slots, configured
    assert (legacy.front_positions, legacy.front_count) == ((1, 5), None)
    assert default.source == "transparency text"
    custom = PolicyConfig.model_validate({
        "dispersal": {"window": 6, "max_per_window": 1, "across_pages": False},
        "front_screen": {"surfaces": ["home", "feed"], "pages": [0, 1], "positions": [2, 7]},
    })
    parsed = expected_policy({"policies": [t.model_dump() for t in describe(custom)]})
    assert parsed.front_positions == (2, 7) and parsed.front_pages == (0, 1)
    assert set(parsed.front_surfaces) == {"home", "feed"}
    assert (parsed.dispersal_window, parsed.dispersal_max, parsed.dispersal_across_pages) == (6, 1, False)


def test_expected_policy_prefers_structured_fields_and_falls_back_to_defaults():
    structured = expected_policy({"policy": {"front_screen": {"positions": [3]},
                                             "dispersal": {"window": 4, "max_per_window": 1}}})
    assert structured.front_positions == (3,) and structured.front_count is None and structured.dispersal_window == 4
    assert expected_policy({}) == ExpectedPolicy()
