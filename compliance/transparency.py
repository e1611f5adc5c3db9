"""The public transparency notice (Art. 16 (draft 14), Art. 26 (draft 22)): that algorithmic recommendation is used, its
principles, purpose and mechanism, how to switch it off or complain, the filing number, and the
hot-list rules (Art. 11, Art. 14 (draft 13); the 2024-25 hot-list campaign: rules published, logs kept, verifiable).

Art. 16 (draft 14) requires a conspicuous notice and public disclosure of the basic principles, purpose and
operating mechanism; Art. 26 (draft 22) requires the filing number to be shown prominently with a link to the
public information. `transparency_document` builds the JSON served at GET /v1/transparency;
`render_html` turns it into a self-contained, bilingual page (every value HTML-escaped).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from html import escape
from typing import Any

from compliance.articles import TEXT, TEXT_ZH, legal_basis
from compliance.minors import MinorsConfig
from compliance.trending import TrendingConfig, describe_rules

SWITCH_OFF_METHOD = "PUT"
SWITCH_OFF_PATH = "/v1/users/{user_id}/settings"
SWITCH_OFF_BODY = {"personalization": False}
COMPLAINT_METHOD = "POST"
COMPLAINT_PATH = "/v1/complaints"
TRANSPARENCY_PATH = "/v1/transparency"
TRENDING_PATH = "/v1/trending"
INTERVENTIONS_PATH = "/v1/admin/interventions"
HISTORY_PATH = "/v1/users/{user_id}/history"
VERIFY_COMMANDS = ("recsys logs verify", "recsys trending verify SNAPSHOT_ID | --all | --since ISO --until ISO")

DEFAULT_PRINCIPLES: tuple[str, ...] = (
    "Items are recommended from what users with similar tastes liked (collaborative filtering), "
    "then ordered by a ranking model that scores how likely you are to enjoy each item.",
    "Lists are de-duplicated and spread across categories; editors fill the first screen from a "
    "reviewed mainstream pool, and every manual intervention is recorded.",
    "Sensitive or discriminatory attributes are never used as tags or as ranking inputs.",
    "Every served list is logged with an explanation for each item and kept for at least 180 days.",
)
DEFAULT_PURPOSE = (
    "To help you find items you are likely to enjoy, while keeping lists diverse and suitable "
    "for the person using the service."
)



def erasure_keeps(retention_days: int) -> str:
    """What an erasure of a user's history does not remove: the served-list log."""
    return (f"The log of the lists served to you is kept, as the law requires (Art. 28 (draft 24): tamper-evident, "
            f"at least {retention_days} days): it records the lists shown to you and the choices you made about them, "
            "not your events, and an erasure does not remove it.")


def history_rights(retention_days: int) -> str:
    """What a user may do with the interaction history that personalizes their lists (PIPL Art. 45,
    PIPL Art. 47; Provisions Art. 17 (draft 15)), and what an erasure keeps: the served-list log, which the
    Provisions require kept (Art. 28 (draft 24)) and which records the lists shown, not the events."""
    return (f"Your interaction history: GET {HISTORY_PATH} shows every event stored for you, newest first; "
            f"DELETE {HISTORY_PATH} erases them and the items they mark as seen, at once, and from then on "
            "your lists are no longer built from your past activity, nor from the history the model was trained "
            f"with: you are served as a new user is (PIPL Art. 47). {erasure_keeps(retention_days)}")


REQUIRED_KEYS = (
    "service", "provider", "filing_number", "uses_algorithmic_recommendation", "notice",
    "basic_principles", "purpose", "mechanism", "switch_off", "complaints", "minors_mode", "hot_list",
)


def _text(value: str, field: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"transparency_document: {field} must be a non-empty string, got {value!r}")
    return value.strip()


def _texts(values: Sequence[str], field: str) -> list[str]:
    if isinstance(values, str):
        raise ValueError(f"transparency_document: {field} must be a list of strings, not one string")
    if not values:
        raise ValueError(f"transparency_document: {field} must list at least one entry")
    return [_text(value, f"{field}[{i}]") for i, value in enumerate(values)]


def _minors_rules(minors: MinorsConfig) -> dict[str, Any]:
    bands = []
    lower = 0
    for band in minors.age_bands:
        bands.append({"ages": f"{lower}-{band.below_age - 1}", "daily_minutes": band.daily_minutes})
        lower = band.below_age
    return {
        "applies_to": f"users under {minors.adult_age}, or any account where a guardian switched minor mode on",
        "daily_limits": bands,
        "unknown_age_daily_minutes": minors.daily_budget_minutes(None),
        "curfew": f"{minors.curfew_start:%H:%M}-{minors.curfew_end:%H:%M} ({minors.time_zone})",
        "personalized": minors.personalized,
        "content": "only items labelled suitable for minors",
    }


def _hot_list_rules(config: TrendingConfig, retention_days: int) -> dict[str, Any]:
    """What the hot list counts and discounts (every rule with its parameters, in the order applied),
    how manual changes to it are made and logged, and how anyone holding the logs verifies it."""
    return {
        "path": TRENDING_PATH,
        "summary": (
            f"The hot list counts distinct users' engagement over the last {config.window_hours:g} hours, decayed "
            f"with a half-life of {config.half_life_hours:g} hours; fake and coordinated engagement is discounted "
            "by the rules below, applied in this order. Score: the sum of the counted contributions; ties are "
            "broken by item id."
        ),
        "rules": describe_rules(config),
        "manual_changes": (
            f"Editors may pin an item at a position of the hot list or block an item ({INTERVENTIONS_PATH}, with "
            "the operator's name and a reason). Each change is written to the tamper-evident log when it is made "
            "and when it is revoked; a pinned item is marked slot 'pinned' in the list, every list carries the "
            "pins in force (manual_changes), and a pin never overrides the safety and minors' rules."
        ),
        "logs": (
            "Every computation of the hot list is logged as a snapshot before any list is served from it: the "
            "parameters, a digest of the events it was computed from and where they are kept, the account facts "
            "the rules read, the items the audience may not see, the manual changes, the ranked items and every "
            "discounted account with its rule. Each served list names its snapshot (snapshot_id). "
            f"Logs are hash-chained and kept at least {retention_days} days."
        ),
        "verify": {
            "commands": list(VERIFY_COMMANDS),
            "instructions": (
                "`recsys logs verify` checks that no log record was altered or removed; `recsys trending verify` "
                "recomputes each snapshot from the stored events with the logged parameters and shows that it "
                "equals what was served (exit 0), or prints one line per difference (exit 1)."
            ),
        },
    }


def transparency_document(
    service_name: str,
    provider: str,
    filing_number: str,
    model_card: dict[str, Any],
    policy_descriptions: list[str],
    signals_used: list[str],
    stages: list[str],
    switch_off_instructions: str,
    complaint_instructions: str,
    minors: MinorsConfig,
    *,
    principles: Sequence[str] = DEFAULT_PRINCIPLES,
    purpose: str = DEFAULT_PURPOSE,
    user_options: Sequence[str] = (),
    trending: TrendingConfig | None = None,
    log_retention_days: int = 180,
    surfaces: Sequence[dict[str, Any]] = (),
) -> dict[str, Any]:
    """The public notice as JSON-ready data; raises ValueError naming the first missing field.
    `user_options` describe what each user can choose (Provisions Art. 17 (draft 15) options, Art. 19
    elderly mode), one sentence each. `surfaces` are each surface's main parameters with their
    relative importance (`compliance.parameters.surface_parameters`, DSA Art. 27)."""
    service = _text(service_name, "service_name")
    if not isinstance(model_card, dict):
        raise ValueError(f"transparency_document: model_card must be a dict, got {type(model_card).__name__}")
    try:
        json.dumps(model_card)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"transparency_document: model_card must be JSON-serialisable ({exc})") from None
    return {
        "service": service,
        "provider": _text(provider, "provider"),
        "filing_number": _text(filing_number, "filing_number"),
        "uses_algorithmic_recommendation": True,
        "notice": f"{service} uses algorithmic recommendation to choose and order the items you see.",
        "basic_principles": _texts(principles, "principles"),
        "purpose": _text(purpose, "purpose"),
        "mechanism": {
            "stages": _texts(stages, "stages"),
            "signals_used": _texts(signals_used, "signals_used"),
            "policies": _texts(policy_descriptions, "policy_descriptions"),
            "model": model_card,
        },
        "switch_off": {
            "instructions": _text(switch_off_instructions, "switch_off_instructions"),
            "method": SWITCH_OFF_METHOD,
            "path": SWITCH_OFF_PATH,
            "body": dict(SWITCH_OFF_BODY),
        },
        "complaints": {
            "instructions": _text(complaint_instructions, "complaint_instructions"),
            "method": COMPLAINT_METHOD,
            "path": COMPLAINT_PATH,
        },
        "minors_mode": _minors_rules(minors),
        "user_options": _texts(user_options, "user_options") if user_options else [],
        "hot_list": _hot_list_rules(trending or TrendingConfig(), log_retention_days),
        "surfaces": [dict(surface) for surface in surfaces],
        "public_information": TRANSPARENCY_PATH,
        "legal_basis": legal_basis(),
    }


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI","PingFang SC","Microsoft YaHei",sans-serif;
max-width:48rem;margin:0 auto;padding:1.5rem;line-height:1.6;color:#1f2933;background:#fff}
.filing{border:2px solid #1f5fbf;background:#eef4ff;padding:.75rem 1rem;border-radius:.4rem;
font-size:1.1rem}
.filing strong{font-size:1.25rem;letter-spacing:.03em}
.notice{font-size:1.05rem}
h1{font-size:1.6rem;margin:.8rem 0}
h2{font-size:1.2rem;margin-top:1.8rem;border-bottom:1px solid #d9e2ec;padding-bottom:.2rem}
code,pre{background:#f0f4f8;border-radius:.25rem;padding:.1rem .3rem;font-size:.95rem}
pre{padding:.6rem;overflow-x:auto}
pre code{padding:0;background:none}
table{border-collapse:collapse}
td,th{border:1px solid #d9e2ec;padding:.3rem .6rem;text-align:left;vertical-align:top}
"""


def _h2(section_id: str, chinese: str, english: str) -> str:
    return f'<h2 id="{section_id}"><span lang="zh-CN">{escape(chinese)}</span> / {escape(english)}</h2>'


def _list(values: Sequence[Any], ordered: bool = False) -> str:
    tag = "ol" if ordered else "ul"
    items = "".join(f"<li>{escape(str(value))}</li>" for value in values)
    return f"<{tag}>{items}</{tag}>"


def _cell(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return escape(text)


def _table(rows: dict[str, Any]) -> str:
    body = "".join(f"<tr><th>{escape(str(key))}</th><td>{_cell(value)}</td></tr>" for key, value in rows.items())
    return f"<table>{body}</table>"


def _hot_list_table(rules: Sequence[dict[str, Any]]) -> str:
    """The hot-list rules in the order applied: rule, article, what it does, its parameters."""
    head = "<tr><th>#</th><th>Rule</th><th>Article</th><th>What it does</th><th>Parameters</th></tr>"
    rows = "".join(
        f"<tr><td>{n}</td><td>{escape(str(rule['rule']))}</td><td>{escape(str(rule['article']))}</td>"
        f"<td>{escape(str(rule['what']))}</td><td>{_cell(rule['parameters']) if rule['parameters'] else ''}</td></tr>"
        for n, rule in enumerate(rules, start=1)
    )
    return f"<table>{head}{rows}</table>"


def _share(value: float | None) -> str:
    return "not measured for this model" if value is None else f"{value:.0%}"


def _surfaces_html(surfaces: Sequence[dict[str, Any]]) -> list[str]:
    """Per surface: where candidates come from, the signals with their relative importance, the
    policies, the option not based on profiling (DSA Art. 27, 38)."""
    if not surfaces:
        return []
    parts = [_h2("parameters", "各场景的主要参数及其相对重要性", "Main parameters of each surface and their relative importance")]
    for surface in surfaces:
        personal = surface["personalized"]
        head = "<tr><th>Signal</th><th>Relative importance</th></tr>"
        rows = "".join(f"<tr><td>{escape(str(s['signal']))}</td><td>{_share(s['relative_importance'])}</td></tr>"
                       for s in personal["ranking_signals"])
        parts += [
            f"<h3 id=\"surface-{escape(str(surface['surface']))}\">{escape(str(surface['surface']))}</h3>",
            "<p>Candidates come from:</p>", _list(personal["candidate_sources"]),
            f"<p>They are ordered by these signals ({escape(str(personal['importance_measured_as']))}):</p>",
            f"<table>{head}{rows}</table>",
            "<p>Policies applied here:</p>", _list(personal["policies"]) if personal["policies"] else "<p>none</p>",
            f"<p>Not based on profiling (switch personalization off): {escape(str(surface['not_based_on_profiling']))}</p>",
            "<p>Your options:</p>", _list(surface["user_options"]),
        ]
    return parts


def render_html(document: dict[str, Any]) -> str:
    """A self-contained HTML page (inline CSS, no scripts) of a `transparency_document`."""
    missing = [key for key in REQUIRED_KEYS if key not in document]
    if missing:
        raise ValueError(f"render_html: document is missing {', '.join(missing)}; build it with transparency_document")
    mechanism, switch_off = document["mechanism"], document["switch_off"]
    complaints, minors, hot_list = document["complaints"], document["minors_mode"], document["hot_list"]
    service, filing = escape(str(document["service"])), escape(str(document["filing_number"]))
    switch_call = f"{switch_off['method']} {switch_off['path']}\n{json.dumps(switch_off['body'])}"
    limits = [f"ages {band['ages']}: {band['daily_minutes']} minutes a day" for band in minors["daily_limits"]]
    limits.append(f"age unknown, minor mode on: {minors['unknown_age_daily_minutes']} minutes a day")
    minors_rows = {
        "Applies to": minors["applies_to"],
        "Daily limits": "; ".join(limits),
        "Rest time (no recommendations)": minors["curfew"],
        "Personalized": "yes" if minors["personalized"] else "no: the same minor-safe lists for all minors",
        "Content": minors["content"],
    }
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{service} — 算法推荐公示 / Algorithmic recommendation notice</title>",
        f"<style>{_CSS}</style></head><body>",
        f'<p class="filing" id="filing-number"><span lang="zh-CN">算法备案编号</span> / '
        f"Algorithm filing number: <strong>{filing}</strong></p>",
        f'<h1><span lang="zh-CN">算法推荐服务公示</span> / Algorithmic recommendation notice: {service}</h1>',
        f'<p class="notice">{escape(str(document["notice"]))}</p>',
        f"<p>Provider / <span lang=\"zh-CN\">服务提供者</span>: {escape(str(document['provider']))}</p>",
        f'<p class="legal-basis" id="legal-basis"><span lang="zh-CN">依据 {escape(TEXT_ZH)}</span> / Rules followed: '
        f"{escape(TEXT)}. Articles are cited by their final numbers; where the 2021 draft numbered an "
        f"article differently, its draft number follows as an alias, e.g. Art. 17 (draft 15).</p>",
        _h2("principles", "基本原理", "Basic principles"),
        _list(document["basic_principles"]),
        _h2("purpose", "目的意图", "Purpose"),
        f"<p>{escape(str(document['purpose']))}</p>",
        _h2("mechanism", "运行机制", "How it works"),
        "<h3>Stages</h3>",
        _list(mechanism["stages"], ordered=True),
        "<h3>Signals used</h3>",
        _list(mechanism["signals_used"]),
        "<h3>Policies applied</h3>",
        _list(mechanism["policies"]),
        "<h3>Model</h3>",
        _table(mechanism["model"]) if mechanism["model"] else "<p>No model details published.</p>",
        _h2("switch-off", "如何关闭个性化推荐", "How to switch off personalised recommendations"),
        f"<p>{escape(str(switch_off['instructions']))}</p>",
        *([f'<p><a href="{escape(str(document["privacy_center"]))}" id="privacy-center"><span lang="zh-CN">打开“我的推荐”</span> / '
           f"Open My recommendations</a>: <span lang=\"zh-CN\">关闭“个性化推荐”</span> / switch off Personalized.</p>"]
          if document.get("privacy_center") else []),
        f"<pre><code>{escape(switch_call)}</code></pre>",
        _h2("complaints", "投诉、举报与申诉", "Complaints, reports and appeals"),
        f"<p>{escape(str(complaints['instructions']))}</p>",
        f"<pre><code>{escape(complaints['method'] + ' ' + complaints['path'])}</code></pre>",
        _h2("minors", "未成年人模式", "Minors mode"),
        _table(minors_rows),
        *([_h2("user-options", "用户选项与老年人模式", "Your options and elderly mode"), _list(document["user_options"])]
          if document.get("user_options") else []),
        *_surfaces_html(document.get("surfaces", ())),
        _h2("hot-list", "热搜榜单规则", "Hot-list rules"),
        f"<p>{escape(str(hot_list['summary']))}</p>",
        _hot_list_table(hot_list["rules"]),
        "<h3>Manual changes</h3>",
        f"<p>{escape(str(hot_list['manual_changes']))}</p>",
        "<h3>Logs</h3>",
        f"<p>{escape(str(hot_list['logs']))}</p>",
        "<h3>How to verify</h3>",
        f"<p>{escape(str(hot_list['verify']['instructions']))}</p>",
        f"<pre><code>{escape(chr(10).join(hot_list['verify']['commands']))}</code></pre>",
        _h2("filing", "备案信息", "Filing"),
        f"<p>Algorithm filing number: <strong>{filing}</strong>. "
        f"Machine-readable notice: <code>GET {escape(str(document.get('public_information', TRANSPARENCY_PATH)))}</code></p>",
        "</body></html>",
    ]
    return "\n".join(parts)
