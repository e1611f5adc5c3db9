"""Hand-made API responses for the auditor's tests: list bodies, recorded exchanges and sessions,
shaped as docs/API.md describes them."""

from __future__ import annotations

from typing import Any

from auditor.articles.lists import Session
from auditor.client import Exchange

FILING = "网信算备110108000000000001号"
ROTATION = ("Drama", "Comedy", "Action", "Thriller", "Romance")


def item(item_id: int, category: str = "Drama", slot: str = "personalized", labels: tuple[str, ...] = ("minor_safe",),
         code: str = "popular", text: str = "Popular with all users", position: int | None = None) -> dict[str, Any]:
    return {"item_id": str(item_id), "position": position, "score": 1.0, "category": category, "slot": slot,
            "labels": list(labels), "reason": {"code": code, "text": text}}


def page(items: list[dict[str, Any]], page_no: int = 0, surface: str = "home", user: str = "1", session: str = "s1",
         violations: tuple[dict[str, Any], ...] | list[dict[str, Any]] = (), request_id: str | None = None,
         mode: str = "personalized", minor_mode: bool = False) -> dict[str, Any]:
    for index, entry in enumerate(items):
        if entry.get("position") is None:
            entry["position"] = index + 1
    return {"request_id": request_id or f"r-{user}-{surface}-{session}-{page_no}", "user_id": user, "surface": surface,
            "page": page_no, "session_id": session, "mode": mode, "minor_mode": minor_mode, "filing_number": FILING,
            "items": list(items), "violations": list(violations)}


def rotating(start: int, n: int) -> list[dict[str, Any]]:
    """n items whose categories rotate through five names: never a dispersal violation."""
    return [item(start + i, ROTATION[(start + i) % len(ROTATION)]) for i in range(n)]


def ex(method: str = "GET", path: str = "/healthz", status: int = 200, body: Any = None, filing: str | None = FILING,
       sent: Any = None) -> Exchange:
    headers = {"x-algorithm-filing-number": filing} if filing is not None else {}
    return Exchange(method, path, status, headers, body if body is not None else {}, sent=sent)


def rec(body: dict[str, Any], sent: dict[str, Any] | None = None) -> Exchange:
    return ex("POST", "/v1/recommendations", 200, body, sent=sent)


def session(*pages: dict[str, Any]) -> Session:
    return Session(pages[0]["session_id"], pages[0]["user_id"], pages[0]["surface"], list(pages))


def user_settings(user: str, personalization: bool = True, minor_mode: bool | None = None) -> Exchange:
    """GET /v1/users/{user}/settings as the server answers it."""
    return ex("GET", f"/v1/users/{user}/settings", body={"user_id": user, "personalization": personalization,
                                                           "minor_mode": minor_mode, "minor": bool(minor_mode)})
