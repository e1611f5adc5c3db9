"""Art. 26 (draft 22) of the Provisions, the filing number: every response carries it in a header,
equal to the number the transparency notice publishes, and the HTML notice shows it."""

from __future__ import annotations

import html
from collections.abc import Sequence

from auditor.client import FILING_HEADER, RECOMMENDATIONS_PATH, Exchange, said
from auditor.report import CheckResult, result


def check_filing(exchanges: Sequence[Exchange], transparency: Exchange | None, page: Exchange | None) -> CheckResult:
    """Art. 26 (draft 22): every response carries the filing number header, equal to the one the transparency
    notice publishes; the HTML notice shows it."""
    failures: list[str] = []
    published = transparency.data.get("filing_number") if transparency is not None and transparency.ok else None
    if not isinstance(published, str) or not published.strip():
        failures.append(f"GET /v1/transparency publishes no filing number: {said(transparency, 'not requested')}")
        published = None
    responses = [e for e in exchanges if e.status != 0]
    missing = mismatched = body_mismatch = 0
    for e in responses:
        value = (e.headers.get(FILING_HEADER) or "").strip()
        if not value:
            missing += 1
            failures.append(f"{e.method} {e.path} -> {e.status}: no {FILING_HEADER} header")
        elif published is not None and value != published:
            mismatched += 1
            failures.append(f"{e.method} {e.path}: header {value!r} differs from the published {published!r}")
        in_body = e.data.get("filing_number") if e.path == RECOMMENDATIONS_PATH else None
        if in_body is not None and published is not None and in_body != published:
            body_mismatch += 1
            failures.append(f"{e.method} {e.path}: body filing_number {in_body!r} differs from the published "
                            f"{published!r}")
    shown = bool(published and page is not None and page.ok and isinstance(page.body, str)
                 and published in html.unescape(page.body))
    if published and not shown:
        failures.append(f"GET /transparency does not show {published!r}: {said(page, 'not requested')}")
    if not responses:
        failures.append("no responses received")
    counts = {"responses": len(responses), "no_response": len(exchanges) - len(responses), "header_missing": missing,
              "header_mismatch": mismatched, "body_mismatch": body_mismatch, "html_shows_number": int(shown)}
    return result("Art. 26 (draft 22)", "filing number", failures, counts, [f"filing number {published!r}"] if published else [])
