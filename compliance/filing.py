"""Algorithm filing package (Art. 23 (draft 19): classified, graded management; Art. 24 (draft 20): file the provider's
name, service form, application field, algorithm type, self-assessment report and the content to
be publicised; para. 2: go through change procedures within ten working days of a change).

`build_filing` assembles the package from the provider's details, the registered model, the
declared policy and the latest audit; `render_markdown` / `render_html` make it readable;
`change_record` lists what changed since the previous filing and the Art. 24 (draft 20) deadline;
`write_filing` writes filing.json, filing.md, filing.html (and change-record.json) atomically.
Everything is pure apart from `write_filing` and `read_filing`: dates are passed in.
"""

from __future__ import annotations

import hashlib
import html
import json
from collections.abc import Iterable, Mapping
from datetime import date, timedelta
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from compliance.articles import legal_basis
from compliance.feature_library import atomic_write_text

FORMAT = "recsys-filing/1"
CHANGE_WORKING_DAYS = 10  # Art. 24 (draft 20) para. 2 of the final text: within ten working days of the change
INITIAL_WORKING_DAYS = 10  # Art. 24 (draft 20) para. 1: within ten working days of providing the service
DEFAULT_ALGORITHM_TYPE = "personalised push; sorting and selection; retrieval and filtering"

# Fields whose change is a change of the filed information (Art. 24 (draft 20) para. 2). Metrics and audit
# figures are reported in every filing but move with each evaluation, so they do not trigger one.
FILED_FIELDS = (
    "provider.provider_name",
    "provider.service_name",
    "provider.service_form",
    "provider.application_field",
    "provider.algorithm_type",
    "classification",
    "self_assessment.model.registered_name",
    "self_assessment.model.version",
    "self_assessment.features",
    "self_assessment.data_used",
    "self_assessment.policy.hash",
    "self_assessment.safeguards",
    "public_content.basic_principle",
    "public_content.purpose",
    "public_content.mechanism",
)

DEFAULT_SAFEGUARDS: dict[str, tuple[str, str]] = {
    "feature_library": ("Art. 9", "Items matching the content feature library (keywords, rules, exemplar "
                        "embeddings) or flagged as illegal or harmful are never served; synthetic content "
                        "is labelled."),
    "tag_policy": ("Art. 10", "User tags come from the user model only; sensitive and discriminatory tags "
                   "are never created; users can view, change and delete their tags."),
    "front_screen": ("Art. 11", "Configured slots of the first home screen are filled from the mainstream pool; "
                     "every manual intervention (pin, block, boost) is recorded."),
    "dedup": ("Art. 12", "De-duplication: the same item or the same content is not shown twice across pages."),
    "dispersal": ("Art. 12", "Dispersal: at most m items of one category in any window of w positions."),
    "trending_filters": ("Art. 14 (draft 13)", "Trending lists count distinct users, discount new accounts, zero bursts "
                         "of new accounts and merge accounts acting in lockstep."),
    "personalization_switch": ("Art. 17 (draft 15)", "Users can switch personalisation off; it holds from the next request "
                               "on every server; non-personalised lists are the same for users in the same situation."),
    "minors_mode": ("Art. 18 (draft 16)", "Minors get a minor-safe pool, no personal profiling beyond safety, daily time "
                    "limits by age band and a night curfew."),
    "logs": ("Art. 28 (draft 24)", "Every served list is logged before the response, hash-chained, kept at least 180 days "
             "and exported with pseudonymised user ids on request."),
    "complaints": ("Art. 22 (draft 26)", "Complaints and appeals are accepted with status tracking and deadlines."),
}


class FilingError(ValueError):
    """Bad filing input; the message names the argument and field."""


class FilingInfo(BaseModel):
    """What the provider declares about itself and the service (Art. 23 (draft 19) factors, Art. 24 (draft 20) fields)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    provider_name: str = Field(min_length=1)
    service_name: str = Field(default="Recommendation service", min_length=1)
    service_form: str = Field(default="website and mobile application, HTTP API", min_length=1)
    application_field: str = Field(default="film and video recommendation", min_length=1)
    algorithm_type: str = Field(default=DEFAULT_ALGORITHM_TYPE, min_length=1)
    filing_number: str | None = None
    service_start: date | None = None  # first day the service was provided (initial filing deadline)
    contact: str | None = None
    # Art. 23 (draft 19) classification factors, as the provider assesses them
    public_opinion_attribute: bool = True
    social_mobilisation: bool = False
    content_categories: tuple[str, ...] = ()
    user_scale: str = ""
    data_sensitivity: str = ""
    intervention_degree: str = ""
    # optional wording of the public text (Art. 16 (draft 14)); generated from the model and policy otherwise
    basic_principle: str | None = None
    purpose: str | None = None
    mechanism: str | None = None

    @field_validator("provider_name", "service_name", "service_form", "application_field", "algorithm_type")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value.strip()


class _ModelRecord(BaseModel):
    model_config = ConfigDict(extra="allow")

    registered_name: str = Field(min_length=1)
    version: str
    run_id: str = ""
    metrics: dict[str, float] = Field(default_factory=dict)
    params: dict[str, Any] = Field(default_factory=dict)
    feature_names: list[str] = Field(default_factory=list)
    data: Any = None

    @field_validator("version", mode="before")
    @classmethod
    def _version_text(cls, value: Any) -> str:
        return str(value)


class _PolicyRecord(BaseModel):
    model_config = ConfigDict(extra="allow")

    config: dict[str, Any] = Field(default_factory=dict)
    hash: str = Field(min_length=1)
    descriptions: dict[str, str] = Field(default_factory=dict)


Record = TypeVar("Record", bound=BaseModel)


def _validated(record: type[Record], value: Any, argument: str) -> Record:
    if not isinstance(value, Mapping):
        raise FilingError(f"{argument}: expected a dict, got {type(value).__name__}")
    try:
        return record.model_validate(dict(value))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg'].removeprefix('Value error, ')}" for e in exc.errors()
        )
        raise FilingError(f"{argument}: {problems}") from None


# -- working days ---------------------------------------------------------------------------------
def add_working_days(start: date, days: int, holidays: Iterable[date] = frozenset(),
                     working_weekends: Iterable[date] = frozenset()) -> date:
    """The date `days` working days after `start` (start itself not counted), skipping weekends and
    `holidays`; `working_weekends` are weekend days worked in exchange for a holiday (调休)."""
    holidays, working_weekends = set(holidays), set(working_weekends)
    current, left = start, days
    while left > 0:
        current += timedelta(days=1)
        workday = (current.weekday() < 5 or current in working_weekends) and current not in holidays
        left -= workday
    return current


# -- the package ------------------------------------------------------------------------------------
def _safeguards(descriptions: Mapping[str, str]) -> list[dict[str, str]]:
    out = []
    for name, (article, text) in DEFAULT_SAFEGUARDS.items():
        out.append({"name": name, "article": article, "description": descriptions.get(name, text)})
    for name, text in descriptions.items():
        if name not in DEFAULT_SAFEGUARDS:
            out.append({"name": name, "article": "", "description": text})
    return out


def _compliance(audit: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if audit is None:
        return None
    if not isinstance(audit, Mapping):
        raise FilingError(f"audit: expected a dict or None, got {type(audit).__name__}")
    checks = []
    for i, check in enumerate(audit.get("checks", []) or []):
        if isinstance(check, Mapping):
            checks.append({k: check.get(k) for k in ("name", "value", "threshold", "passed")})
        elif isinstance(check, list | tuple) and len(check) == 4:
            checks.append(dict(zip(("name", "value", "threshold", "passed"), check, strict=True)))
        else:
            raise FilingError(f"audit.checks[{i}]: expected {{name, value, threshold, passed}}, got {check!r}")
    passed = audit.get("passed")
    if passed is None and checks:
        passed = all(bool(c["passed"]) for c in checks)
    extra = {k: v for k, v in audit.items() if k not in ("checks", "passed")}
    return {"passed": passed, "checks": checks, **extra}


def _public_content(info: FilingInfo, model: _ModelRecord) -> dict[str, str]:
    principle = info.basic_principle or (
        f"{info.service_name} recommends content in two stages. A retrieval model learns a vector for each "
        "user and each item from past interactions and finds the items closest to the user's vector; a "
        "ranking model then orders these candidates by the predicted chance that the user engages with "
        "each. Declared policy rules finally remove blocked and duplicate content, spread categories, "
        "reserve front-screen slots for mainstream content and attach an explanation to every item. "
        f"Model in service: {model.registered_name} version {model.version}."
    )
    purpose = info.purpose or (
        "To help users find content that interests them among a large catalogue (application field: "
        f"{info.application_field}), while keeping lists varied, free of illegal and harmful content, "
        "suitable for minors in minors mode, and free of manipulation."
    )
    mechanism = info.mechanism or (
        "Inputs: the user's interactions with the service (views, clicks, likes, shares), the user's settings "
        "and age band, and item metadata (title, categories, content labels). Personalised lists use the "
        "interaction history; users can switch personalisation off at any time and then receive the same "
        "non-personalised list as everyone in the same situation. Users can view, change and delete the "
        "tags that describe their interests, ask why an item was recommended, and file complaints. Minors "
        "receive a minor-safe pool within daily time limits. Every list served is logged for at least "
        "180 days."
    )
    return {"basic_principle": principle, "purpose": purpose, "mechanism": mechanism}


def _get(filing: Mapping[str, Any], path: str) -> Any:
    value: Any = filing
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)


def fingerprint(filing: Mapping[str, Any]) -> str:
    """sha256 over the filed fields only: equal fingerprints mean no change to file."""
    payload = {path: _get(filing, path) for path in FILED_FIELDS}
    return "sha256:" + hashlib.sha256(_canonical(payload).encode("utf-8")).hexdigest()


def build_filing(provider: FilingInfo, model: Mapping[str, Any], policy: Mapping[str, Any],
                 audit: Mapping[str, Any] | None, today: date) -> dict[str, Any]:
    """The filing package as a JSON-ready dict, with every field Art. 24 (draft 20) names.

    `model`: registered_name, version, run_id, metrics, params, feature_names, data (data used).
    `policy`: config, hash, descriptions (safeguard name -> text, overriding the defaults).
    `audit`: the latest audit (passed, checks [{name, value, threshold, passed}], ...) or None.
    """
    if not isinstance(provider, FilingInfo):
        raise FilingError(f"provider: expected FilingInfo, got {type(provider).__name__}")
    if not isinstance(today, date):
        raise FilingError(f"today: expected a date, got {type(today).__name__}")
    model_record = _validated(_ModelRecord, model, "model")
    policy_record = _validated(_PolicyRecord, policy, "policy")
    compliance = _compliance(audit)
    if compliance is None:
        conclusion = "No audit was supplied: the compliance part of the self-assessment is incomplete."
    elif compliance["passed"]:
        conclusion = "All audited controls met their thresholds."
    else:
        failed = [c["name"] for c in compliance["checks"] if not c["passed"]]
        conclusion = "Controls below threshold: " + (", ".join(map(str, failed)) or "see the audit") + "."
    initial_due = (
        add_working_days(provider.service_start, INITIAL_WORKING_DAYS).isoformat() if provider.service_start else None
    )
    filing: dict[str, Any] = {
        "format": FORMAT,
        "articles": "Art. 23 (draft 19), Art. 24 (draft 20)",
        "legal_basis": legal_basis(),
        "generated_on": today.isoformat(),
        "provider": {
            "provider_name": provider.provider_name,
            "service_name": provider.service_name,
            "service_form": provider.service_form,
            "application_field": provider.application_field,
            "algorithm_type": provider.algorithm_type,
            "filing_number": provider.filing_number,
            "contact": provider.contact,
        },
        "classification": {
            "public_opinion_attribute": provider.public_opinion_attribute,
            "social_mobilisation": provider.social_mobilisation,
            "filing_required": provider.public_opinion_attribute or provider.social_mobilisation,
            "content_categories": list(provider.content_categories),
            "user_scale": provider.user_scale,
            "data_sensitivity": provider.data_sensitivity,
            "intervention_degree": provider.intervention_degree,
        },
        "self_assessment": {
            "model": {
                "registered_name": model_record.registered_name,
                "version": model_record.version,
                "run_id": model_record.run_id,
                "params": model_record.params,
            },
            "data_used": model_record.data,
            "features": list(model_record.feature_names),
            "safeguards": _safeguards(policy_record.descriptions),
            "policy": {"hash": policy_record.hash, "config": policy_record.config},
            "quality": dict(model_record.metrics),
            "compliance": compliance,
            "conclusion": conclusion,
        },
        "public_content": _public_content(provider, model_record),
        "deadlines": {"service_start": provider.service_start.isoformat() if provider.service_start else None,
                      "initial_filing_due": initial_due},
    }
    plain: dict[str, Any] = json.loads(json.dumps(filing, ensure_ascii=False, default=str))  # JSON types only
    plain["fingerprint"] = fingerprint(plain)
    return plain


def _check_filing(value: Any, argument: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping) or value.get("format") != FORMAT:
        raise FilingError(f"{argument}: not a filing package (expected format {FORMAT!r})")
    return value


def change_record(
    previous: Mapping[str, Any],
    current: Mapping[str, Any],
    changed_on: date,
    holidays: Iterable[date] = frozenset(),
    working_weekends: Iterable[date] = frozenset(),
) -> dict[str, Any] | None:
    """What changed in the filed fields and the deadline (CHANGE_WORKING_DAYS = 10 working days after `changed_on`,
    skipping weekends and `holidays`); None when nothing filed changed."""
    previous, current = _check_filing(previous, "previous"), _check_filing(current, "current")
    changes = []
    for path in FILED_FIELDS:
        before, after = _get(previous, path), _get(current, path)
        if _canonical(before) != _canonical(after):
            changes.append({"field": path, "previous": before, "current": after})
    if not changes:
        return None
    return {
        "format": FORMAT + "/change",
        "article": "Art. 24 (draft 20) para. 2: change procedures within ten working days of the change",
        "filing_number": _get(current, "provider.filing_number") or _get(previous, "provider.filing_number"),
        "changed_on": changed_on.isoformat(),
        "deadline": add_working_days(changed_on, CHANGE_WORKING_DAYS, holidays, working_weekends).isoformat(),
        "changes": changes,
        "previous_fingerprint": previous.get("fingerprint"),
        "current_fingerprint": current.get("fingerprint"),
    }


# -- rendering --------------------------------------------------------------------------------------
def _rules_followed(basis: Any) -> str:
    """The legal basis in words; a filing written before it was recorded shows a dash."""
    if not isinstance(basis, Mapping) or not basis.get("text"):
        return "—"
    aliases = "; articles cited by final number, the 2021 draft's numbers as aliases" if basis.get("draft_aliases") else ""
    return f"{basis['text']}{aliases}"


def _text(value: Any) -> str:
    if value is None or value == "":
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list | tuple):
        return ", ".join(_text(v) for v in value) or "—"
    if isinstance(value, Mapping):
        return "; ".join(f"{k}: {_text(v)}" for k, v in value.items()) or "—"
    return str(value)


Section = tuple[str, list[tuple[str, ...]], tuple[str, ...] | None, str | None]
"""(title, rows, header or None for key/value tables, paragraph text) of one section of the filing."""


def _sections(filing: Mapping[str, Any]) -> list[Section]:
    """The filing's sections, shared by both renderers."""
    provider, cls, sa = filing["provider"], filing["classification"], filing["self_assessment"]
    compliance = sa.get("compliance")
    sections: list[Section] = [
        ("1. Provider and service (Art. 24 (draft 20))", [
            ("Rules followed", _rules_followed(filing.get("legal_basis"))),
            ("Provider name", _text(provider["provider_name"])),
            ("Service", _text(provider["service_name"])),
            ("Service form", _text(provider["service_form"])),
            ("Application field", _text(provider["application_field"])),
            ("Algorithm type", _text(provider["algorithm_type"])),
            ("Filing number", _text(provider["filing_number"])),
            ("Initial filing due", _text(filing["deadlines"]["initial_filing_due"])),
        ], None, None),
        ("2. Classification factors (Art. 23 (draft 19))", [(k.replace("_", " ").capitalize(), _text(v)) for k, v in cls.items()],
         None, None),
        ("3. Self-assessment: algorithm and data", [
            ("Registered model", f"{sa['model']['registered_name']} version {sa['model']['version']}"),
            ("Training run", _text(sa["model"]["run_id"])),
            ("Parameters", _text(sa["model"]["params"])),
            ("Data used", _text(sa["data_used"])),
            ("Features", _text(sa["features"])),
            ("Policy hash", _text(sa["policy"]["hash"])),
        ], None, None),
        ("4. Self-assessment: safeguards", [(s["name"], s["article"], s["description"]) for s in sa["safeguards"]],
         ("Safeguard", "Article", "What it does"), None),
        ("5. Self-assessment: quality", [(k, _text(v)) for k, v in sa["quality"].items()] or [("—", "no metrics")],
         ("Metric", "Value"), None),
    ]
    if compliance is None:
        sections.append(("6. Self-assessment: compliance", [], None, "No audit supplied."))
    else:
        rows: list[tuple[str, ...]] = [
            (_text(c["name"]), _text(c["value"]), _text(c["threshold"]), "pass" if c["passed"] else "FAIL")
            for c in compliance["checks"]
        ]
        sections.append(("6. Self-assessment: compliance", rows, ("Check", "Value", "Threshold", "Result"),
                         f"Overall: {'passed' if compliance['passed'] else 'not passed'}."))
    sections.append(("7. Conclusion", [], None, sa["conclusion"]))
    public = filing["public_content"]
    sections.append(("8. Content to be publicised (Art. 16 (draft 14), Art. 24 (draft 20))", [
        ("Basic principle", public["basic_principle"]),
        ("Purpose", public["purpose"]),
        ("Mechanism", public["mechanism"]),
    ], None, None))
    return sections


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render_markdown(filing: Mapping[str, Any]) -> str:
    """The filing as a Markdown document."""
    filing = _check_filing(filing, "filing")
    lines = [f"# Algorithm filing: {filing['provider']['service_name']}", "",
             f"Generated on {filing['generated_on']} · fingerprint `{filing['fingerprint']}`", ""]
    for title, rows, header, paragraph in _sections(filing):
        lines += [f"## {title}", ""]
        if paragraph:
            lines += [paragraph, ""]
        if rows:
            head = header or ("Field", "Value")
            lines.append("| " + " | ".join(head) + " |")
            lines.append("|" + "---|" * len(head))
            lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
            lines.append("")
    return "\n".join(lines)


_CSS = ("body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}"
        "table{border-collapse:collapse;width:100%;margin:.5rem 0 1.5rem}"
        "th,td{border:1px solid #ccc;padding:.35rem .6rem;text-align:left;vertical-align:top}"
        "th{background:#f3f3f3}td.fail{color:#b00;font-weight:bold}small{color:#666}")


def render_html(filing: Mapping[str, Any]) -> str:
    """The filing as one self-contained HTML page (inline style, no external resources)."""
    filing = _check_filing(filing, "filing")
    e = html.escape
    title = f"Algorithm filing: {filing['provider']['service_name']}"
    parts = [f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{e(title)}</title>"
             f"<style>{_CSS}</style></head><body>", f"<h1>{e(title)}</h1>",
             f"<p><small>Generated on {e(filing['generated_on'])} · fingerprint {e(filing['fingerprint'])}</small></p>"]
    for section, rows, header, paragraph in _sections(filing):
        parts.append(f"<h2>{e(section)}</h2>")
        if paragraph:
            parts.append(f"<p>{e(paragraph)}</p>")
        if not rows:
            continue
        parts.append("<table>")
        if header:
            parts.append("<tr>" + "".join(f"<th>{e(h)}</th>" for h in header) + "</tr>")
            for row in rows:
                cells = "".join(
                    f"<td class=\"fail\">{e(c)}</td>" if c == "FAIL" else f"<td>{e(c)}</td>" for c in row
                )
                parts.append(f"<tr>{cells}</tr>")
        else:
            parts += [f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in rows]
        parts.append("</table>")
    parts.append("</body></html>")
    return "\n".join(parts)


# -- files ------------------------------------------------------------------------------------------
def read_filing(path: str | Path) -> dict[str, Any]:
    """Read a filing.json; errors name the file."""
    path = Path(path)
    try:
        filing = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FilingError(f"{path}: cannot read the filing: {exc}") from None
    return dict(_check_filing(filing, str(path)))


def write_filing(out_dir: str | Path, filing: Mapping[str, Any], previous: Mapping[str, Any] | None = None,
                 changed_on: date | None = None, holidays: Iterable[date] = frozenset()) -> dict[str, Path]:
    """Write filing.json, filing.md and filing.html to `out_dir`, and change-record.json when the
    filed fields differ from `previous` (dated `changed_on`, default the filing's date).

    An earlier change-record.json is left in place when nothing changed: it records the last change.
    """
    filing = _check_filing(filing, "filing")
    out_dir = Path(out_dir)
    written = {
        "json": atomic_write_text(out_dir / "filing.json", json.dumps(filing, indent=2, ensure_ascii=False) + "\n"),
        "markdown": atomic_write_text(out_dir / "filing.md", render_markdown(filing)),
        "html": atomic_write_text(out_dir / "filing.html", render_html(filing)),
    }
    if previous is not None:
        when = changed_on or date.fromisoformat(filing["generated_on"])
        record = change_record(previous, filing, when, holidays)
        if record is not None:
            written["change_record"] = atomic_write_text(
                out_dir / "change-record.json", json.dumps(record, indent=2, ensure_ascii=False) + "\n"
            )
    return written
