"""The privacy center (`/me`, Art. 10, Art. 12, Art. 17 (draft 15), Art. 18 (draft 16), Art. 22 (draft 26)): a person's own controls, after user
authentication (serving/auth.py).

- personalization switch (effective from the next list), minors mode for a guardian;
- interest tags with where each came from: delete one, or mark its category "not interested";
- the last lists served, each item with the reason logged with it ("why am I seeing this");
- the interaction history that personalizes the lists: the latest events, and erase it (PIPL Art. 45, PIPL Art. 47);
- complaints: file one and follow its status and deadlines.

Login: in `development` mode (`make serve`) the form takes a user id (the mode trusts it, as the JSON
routes do); in `jwt` mode it takes the identity provider's token for this user, verified as the JSON
routes verify it; in `gateway` mode the gateway's signed headers on the login request say who it is.
Each form calls the JSON route's own function (serving/routes/users.py, complaints.py) with the
session's user as the authenticated principal.
"""

from __future__ import annotations

import re
from typing import get_args

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from compliance import complaints as complaint_rules
from compliance import minors
from compliance.logstore import new_request_id
from serving.auth import Principal
from served.query import Audience
from serving.gate import AccessDenied
from serving.routes import complaints, guardians, users
from serving.routes.recommendations import ID_PATTERN
from serving.services import Services, one_line
from serving.web.pages import act, posted_form, redirect, render, signed_form
from serving.web.session import Session, SessionCookies

router = APIRouter(prefix="/me", tags=["privacy center (pages)"])
cookies = SessionCookies("me", "/me")
LISTS_SHOWN = 5
HISTORY_SHOWN = 20


def _user(request: Request, session: Session) -> str | None:
    """The session's logged-in user id (the privacy center's account)."""
    return session.who


def _principal(request: Request, user_id: str) -> Principal:
    """The session's user as the JSON routes' authenticated principal."""
    return Principal(request.app.state.authenticator.config.mode, user_id)


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request) -> HTMLResponse:
    session = cookies.load(request)
    return render(request, cookies, session, "me_login.html", mode=request.app.state.authenticator.config.mode)


@router.post("/login", response_class=HTMLResponse, responses={303: {"description": "logged in"}, 401: {}, 403: {}})
async def login(request: Request) -> Response:
    session, form = await posted_form(request, cookies)
    authenticator = request.app.state.authenticator
    mode = authenticator.config.mode
    services: Services = request.app.state.services
    until = None
    try:
        if mode == "development":
            user_id = form.get("user_id", "").strip()
            if not re.fullmatch(ID_PATTERN, user_id) or len(user_id) > 128:
                raise HTTPException(422, detail="user_id: 1-128 characters of A-Z, a-z, 0-9, _ . : @ -")
        elif mode == "jwt":
            bearer = form.get("token", "").strip()
            user_id = authenticator.authenticate({"authorization": f"Bearer {bearer}"}).subject
            until = authenticator.token_expiry(bearer)  # the session ends with the token
        else:
            user_id = authenticator.authenticate(request.headers).subject
        if not await run_in_threadpool(services.store.user_exists, user_id):
            raise HTTPException(404, detail=f"user_id: unknown user {user_id!r}")
    except HTTPException as exc:
        return render(request, cookies, session, "me_login.html", status_code=exc.status_code, mode=mode, login_error=str(exc.detail))
    response = redirect("/me")
    cookies.save(request, response, await run_in_threadpool(cookies.login, request, user_id, until))
    return response


@router.post("/logout", responses={303: {"description": "logged out"}, 403: {}})
async def logout(request: Request) -> Response:
    session, _ = await posted_form(request, cookies)
    response = redirect("/me/login", message="logged out")
    cookies.save(request, response, await run_in_threadpool(cookies.logout, request, session))
    return response


def last_lists(services: Services, user_id: str, limit: int = LISTS_SHOWN) -> tuple[list[dict], str, Audience | None]:
    """The user's last served lists as logged (items, reasons), through the gate like the JSON
    lookup route, and the audience the gate admitted; a refusal (minors' rest time) is returned as
    the message instead, with no audience."""
    try:
        audience = services.gate.admit(user_id, services.clock(), route="me/lists", request_id=new_request_id())
    except AccessDenied as exc:
        return [], exc.decision.message, None
    lists = []
    for served in services.store.recent_requests(user_id, limit):
        record = services.logstore.lookup(served["request_id"], user_id)
        if record is not None:
            lists.append(record)
    return lists, "", audience


@router.get("", response_class=HTMLResponse)
def privacy_center(request: Request) -> Response:
    session = cookies.load(request)
    user_id = session.who
    if user_id is None:
        return redirect("/me/login")
    services: Services = request.app.state.services
    principal = _principal(request, user_id)
    try:
        settings = users.get_settings(user_id, services, principal)
        tags = users.get_tags(user_id, services, principal)
        history = users.get_history(user_id, services, principal, limit=HISTORY_SHOWN)
    except HTTPException as exc:
        return redirect("/me/login", error=str(exc.detail))
    lists, lists_note, audience = last_lists(services, user_id)
    wards = [(guardians.get_controls(user_id, minor, services, principal), guardians.get_usage(user_id, minor, services, principal))
             for minor in services.store.minors_of(user_id)]
    filed = [complaints._public(row) for row in services.store.list_complaints(limit=50, user_id=user_id)]
    return render(request, cookies, session, "me.html", user_id=user_id, settings=settings, tags=tags, lists=lists,
                  lists_note=lists_note, history=history, titles=item_titles(services, history, audience), wards=wards,
                  complaints=filed, kinds=("complaint", "report", "appeal"), subject_types=_subject_types())


def item_titles(services: Services, history: users.HistoryOut, audience: Audience | None) -> dict[str, str]:
    """The catalog's title of each item of the shown events that the gate's `audience` may receive
    (the same safety filters as every list: a minor's age band, blocked items, elderly mode's fraud
    risk). Any other item keeps its bare id on the page, so posting an event for an item id never
    shows a minor, or anyone, a title their lists could not; with no audience (the gate refused, as
    in a minor's rest time) every item keeps its id."""
    catalog = services.catalog
    if catalog is None or audience is None:
        return {}
    shared = services.shared_state()
    allowed = audience.eligible(shared.blocked_items, catalog.age_rating, shared.fraud_risk)
    index = catalog.bundle.item_index
    return {e.item_id: str(catalog.titles[index[e.item_id]]) for e in history.events
            if e.item_id in index and allowed[index[e.item_id]]}


def _subject_types() -> tuple[str, ...]:
    return get_args(complaint_rules.SubjectType)


@router.post("/settings", responses={303: {"description": "changed"}, 403: {}})
async def change_settings(request: Request) -> Response:
    """One control: personalization on or off (and, for a guardian, minors mode)."""
    posted = await signed_form(request, cookies, _user, "/me/login")
    if isinstance(posted, RedirectResponse):
        return posted
    user_id, form, services = posted.who, posted.form, posted.services
    values: dict = {}
    if form.get("personalization") in ("on", "off"):
        values["personalization"] = form["personalization"] == "on"
    if form.get("minor_mode") in ("on", "off"):
        values["minor_mode"] = form["minor_mode"] == "on"

    def action() -> str:
        body = users.SettingsIn(**values)
        users.put_settings(user_id, body, services, _principal(request, user_id))
        if "personalization" in values:
            return ("Personalized recommendations are on / 个性化推荐已开启" if values["personalization"]
                    else "Personalized recommendations are off: your next list is not personalized / 个性化推荐已关闭")
        return "Minors mode changed / 未成年人模式已更改"

    return await act("/me", action)


@router.post("/tags/{tag}/{decision}", responses={303: {"description": "changed"}, 403: {}})
async def tag_decision(request: Request, tag: str, decision: str) -> Response:
    """Delete a tag, or mark its category "not interested" (the JSON tag routes)."""
    posted = await signed_form(request, cookies, _user, "/me/login")
    if isinstance(posted, RedirectResponse):
        return posted
    user_id, services = posted.who, posted.services
    if decision not in ("delete", "not-interested") or not 1 <= len(tag) <= 64:
        return redirect("/me", error=f"no action {decision[:20]!r} on tag {tag[:64]!r}")

    def action() -> str:
        principal = _principal(request, user_id)
        if decision == "delete":
            users.delete_tag(user_id, tag, services, principal)
            return f"tag {tag} deleted: it no longer shapes your lists / 标签已删除"
        users.add_tag(user_id, users.TagIn(tag=tag, action="not_interested"), services, principal)
        return f"not interested in {tag}: its items leave your personalized lists / 已标记不感兴趣"

    return await act("/me", action)


@router.post("/history/erase", responses={303: {"description": "erased"}, 403: {}})
async def erase_history(request: Request) -> Response:
    """Erase my interaction history (the JSON erasure route's function): the message says what was
    deleted and, as the route's `kept` does, that the served-list log is kept."""
    posted = await signed_form(request, cookies, _user, "/me/login")
    if isinstance(posted, RedirectResponse):
        return posted
    user_id, services = posted.who, posted.services

    def action() -> str:
        erased = users.erase_history(user_id, services, _principal(request, user_id))
        return (f"history erased / 历史记录已删除: {erased.events_deleted} events and {erased.seen_items_deleted} seen items "
                f"deleted; your next lists are not built from them. {erased.kept}")

    return await act("/me", action)


@router.post("/feedback/{request_id}/{item_id}/{kind}", responses={303: {"description": "changed"}, 403: {}})
async def item_feedback(request: Request, request_id: str, item_id: str, kind: str) -> Response:
    """"Not interested" in an item of a list served to me, or "fewer like this" (the JSON feedback route)."""
    posted = await signed_form(request, cookies, _user, "/me/login")
    if isinstance(posted, RedirectResponse):
        return posted
    user_id, services = posted.who, posted.services

    def action() -> str:
        body = users.FeedbackIn(request_id=request_id, item_id=item_id, kind=kind)
        users.post_feedback(user_id, body, services, _principal(request, user_id))
        if kind == "not_interested":
            return f"not interested in {item_id}: it leaves all your lists / 已标记不感兴趣"
        return f"fewer like {item_id}: it leaves your lists and its category ranks lower for a while / 将减少此类推荐"

    return await act("/me", action)


@router.post("/guardian/{minor_id}/controls", responses={303: {"description": "changed"}, 403: {}})
async def guardian_controls(request: Request, minor_id: str) -> Response:
    """A guardian's controls for a minor in their care (the JSON guardian route's function); an
    empty field leaves that rule at the configured default."""
    posted = await signed_form(request, cookies, _user, "/me/login")
    if isinstance(posted, RedirectResponse):
        return posted
    user_id, form, services = posted.who, posted.form, posted.services
    # The form's text as sent: the model reads and checks it, as it does the JSON route's body
    values = {name: form[name].strip() for name in ("daily_minutes", "curfew_start", "curfew_end", "max_age_rating")
              if form.get(name, "").strip()}

    def action() -> str:
        body = minors.GuardianControls.model_validate(values)
        guardians.put_controls(user_id, minor_id, body, services, _principal(request, user_id))
        return f"controls for {minor_id} saved / 已保存"

    return await act("/me", action)


@router.post("/complaints", responses={303: {"description": "filed"}, 403: {}})
async def file_complaint(request: Request) -> Response:
    posted = await signed_form(request, cookies, _user, "/me/login")
    if isinstance(posted, RedirectResponse):
        return posted
    user_id, form, services = posted.who, posted.form, posted.services

    def action() -> str:
        values = {key: form.get(key, "").strip() for key in ("kind", "subject_type", "subject_id", "text")}
        values["subject_id"] = values["subject_id"] or None
        try:
            body = complaint_rules.ComplaintIn.model_validate({**values, "user_id": user_id},
                                                              context={"config": services.settings.complaints})
        except ValidationError as exc:
            raise HTTPException(422, detail=one_line(exc)) from None
        row = complaints.file_complaint(body, services, _principal(request, user_id))
        return f"complaint {row['id']} received; answer due by {row['resolve_due'][:16].replace('T', ' ')} UTC / 已受理"

    return await act("/me", action)
