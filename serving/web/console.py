"""The operator console (`/console`, Art. 7, Art. 8, Art. 11, Art. 14 (draft 13), Art. 22 (draft 26), Art. 23 (draft 19), Art. 24 (draft 20), Art. 28 (draft 24)): named accounts log in; operators
propose interventions and handle complaints, approvers approve another account's sensitive
proposals, auditors read everything and change nothing.

Each form calls the function the JSON admin route calls (serving/routes/admin.py, complaints.py),
with the logged-in account as the operator: the log records the account, never a typed name.
"""

from __future__ import annotations

import io
import tempfile
import zipfile
from datetime import UTC, date, datetime
from pathlib import Path

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from compliance import oversight
from compliance.logstore import new_request_id
from serving.auth import Principal
from serving.operators import Operator
from serving.routes import admin, complaints, content
from serving.services import Services, one_line
from serving.web.pages import act, posted_form, redirect, render, signed_form
from serving.web.session import Session, SessionCookies

router = APIRouter(prefix="/console", tags=["console (pages)"])
cookies = SessionCookies("console", "/console")
OPEN_COMPLAINTS = ("received", "acknowledged")


def _account(request: Request, session: Session) -> Operator | None:
    """The logged-in, still enabled account of this session (read from the database every time)."""
    if session.who is None:
        return None
    row = request.app.state.services.accounts.store.get(session.who)
    if row is None or row["disabled_at"] is not None:
        return None
    return Operator(row["name"], row["role"])


def _page(request: Request) -> tuple[Session, Operator | None]:
    session = cookies.load(request)
    return session, _account(request, session)


def _target(row: dict) -> str:
    return str(row.get("item_id") or row.get("category") or "")


# -- login ------------------------------------------------------------------------------------------
@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request) -> HTMLResponse:
    session = cookies.load(request)
    return render(request, cookies, session, "console_login.html")


@router.post("/login", response_class=HTMLResponse, responses={303: {"description": "logged in"}, 403: {}})
async def login(request: Request) -> Response:
    session, form = await posted_form(request, cookies)
    accounts = request.app.state.services.accounts
    operator = await run_in_threadpool(accounts.login, form.get("name", "")[:64], form.get("password", "")[:1024])
    if operator is None:
        return render(request, cookies, session, "console_login.html", status_code=401,
                      login_error="name or password: no enabled operator account matches")
    opened = await run_in_threadpool(cookies.login, request, operator.name)
    if not await run_in_threadpool(accounts.still_current, operator):  # reset or disabled while logging in
        await run_in_threadpool(cookies.logout, request, opened)
        return render(request, cookies, session, "console_login.html", status_code=401,
                      login_error="name or password: no enabled operator account matches")
    response = redirect("/console")
    cookies.save(request, response, opened)
    request.app.state.services.logstore.append("operators", {"action": "login", "name": operator.name, "via": "console"})
    return response


@router.post("/logout", responses={303: {"description": "logged out"}, 403: {}})
async def logout(request: Request) -> Response:
    session, _ = await posted_form(request, cookies)
    response = redirect("/console/login", message="logged out")
    cookies.save(request, response, await run_in_threadpool(cookies.logout, request, session))
    return response


# -- interventions (Art. 11, Art. 14 (draft 13)) --------------------------------------------------------------------
@router.get("", response_class=HTMLResponse)
def interventions_page(request: Request) -> Response:
    session, operator = _page(request)
    if operator is None:
        return redirect("/console/login")
    services: Services = request.app.state.services
    rows = services.store.list_interventions(now=services.clock())
    front = services.settings.policy.front_screen
    return render(
        request, cookies, session, "console_interventions.html", operator=operator, section="interventions",
        pending=[r for r in rows if r["status"] == oversight.PENDING], active=[r for r in rows if r["status"] == oversight.ACTIVE],
        may_change=oversight.may_change(operator.role), may_approve=oversight.may_approve(operator.role),
        surfaces=services.settings.surfaces, target=_target, front_surfaces=front.surfaces,
        sensitive=[f"{r.kind}{' (front screen)' if r.front_screen_only else ''}" for r in services.settings.oversight.sensitive],
        features=services.store.feature_entries(),
    )


def _changer(operator: Operator) -> str:
    """The account's name when its role may change state (the JSON routes' rule), else 403."""
    if not oversight.may_change(operator.role):
        raise HTTPException(403, detail=f"account {operator.name!r} has role {operator.role!r}, which reads only")
    return operator.name


@router.post("/interventions", responses={303: {"description": "proposed"}, 403: {}})
async def propose(request: Request) -> Response:
    posted = await signed_form(request, cookies, _account, "/console/login")
    if isinstance(posted, RedirectResponse):
        return posted
    operator, form, services = posted.who, posted.form, posted.services

    def action() -> str:
        name = _changer(operator)
        values = {key: form[key].strip() for key in ("kind", "surface", "item_id", "category", "position", "factor", "reason",
                                                     "ttl_seconds") if form.get(key, "").strip()}
        try:
            body = admin.InterventionIn.model_validate(values)
        except ValidationError as exc:
            raise HTTPException(422, detail=one_line(exc)) from None
        row = admin.propose(services, body, name)
        if row["status"] == oversight.PENDING:
            return f"intervention {row['id']} proposed: it takes effect when another approver approves it"
        return f"intervention {row['id']} is in force"

    return await act("/console", action)


@router.post("/interventions/{intervention_id}/{decision}", responses={303: {"description": "decided"}, 403: {}})
async def decide(request: Request, intervention_id: int, decision: str) -> Response:
    posted = await signed_form(request, cookies, _account, "/console/login")
    if isinstance(posted, RedirectResponse):
        return posted
    operator, form, services = posted.who, posted.form, posted.services
    if decision not in ("approve", "reject", "revoke") or not 1 <= intervention_id < 2**63:
        return redirect("/console", error=f"no action {decision!r} on intervention {intervention_id}")

    def action() -> str:
        if decision == "revoke":
            admin.revoke(services, intervention_id, _changer(operator))
            return f"intervention {intervention_id} revoked"
        reason = form.get("reason", "").strip()
        if not 3 <= len(reason) <= 500:
            raise HTTPException(422, detail="reason: 3 to 500 characters: say why")
        row = admin.decide(services, intervention_id, operator, approve=decision == "approve", reason=reason)
        return f"intervention {row['id']} {'approved: in force from the next request' if decision == 'approve' else 'rejected'}"

    return await act("/console", action)


# -- feature library (Art. 9) ------------------------------------------------------------------------
@router.post("/features", responses={303: {"description": "added"}, 403: {}})
async def add_feature(request: Request) -> Response:
    posted = await signed_form(request, cookies, _account, "/console/login")
    if isinstance(posted, RedirectResponse):
        return posted
    operator, form, services = posted.who, posted.form, posted.services

    def action() -> str:
        name = _changer(operator)
        values = {key: form[key].strip() for key in ("kind", "pattern", "exemplar_item_id", "threshold", "category", "note")
                  if form.get(key, "").strip()}
        try:
            body = content.FeatureIn.model_validate(values)
        except ValidationError as exc:
            raise HTTPException(422, detail=one_line(exc)) from None
        entry = content.add_feature(body, services, name)
        return f"feature-library entry {entry['id']} added: {entry['matched_items']} items blocked from the next request"

    return await act("/console", action)


@router.post("/features/{entry_id}/remove", responses={303: {"description": "removed"}, 403: {}})
async def remove_feature(request: Request, entry_id: str) -> Response:
    posted = await signed_form(request, cookies, _account, "/console/login")
    if isinstance(posted, RedirectResponse):
        return posted
    operator, services = posted.who, posted.services

    def action() -> str:
        content.remove_feature(entry_id[:64], services, _changer(operator))
        return f"feature-library entry {entry_id[:64]} removed"

    return await act("/console", action)


# -- complaints (Art. 22 (draft 26)) ---------------------------------------------------------------------------
def complaint_queue(rows: list[dict], now: datetime) -> list[dict]:
    """Open complaints first, the overdue among them first, then by the nearest deadline."""
    queue = []
    for row in rows:
        open_ = row["status"] in OPEN_COMPLAINTS
        due = row["acknowledge_due"] if row["status"] == "received" else row["resolve_due"]
        queue.append({**row, "open": open_, "due": due, "overdue": open_ and due < now})
    return sorted(queue, key=lambda r: (not r["open"], not r["overdue"], r["due"] if r["open"] else -r["updated_at"].timestamp()))


@router.get("/complaints", response_class=HTMLResponse)
def complaints_page(request: Request) -> Response:
    session, operator = _page(request)
    if operator is None:
        return redirect("/console/login")
    services: Services = request.app.state.services
    now = services.clock()
    queue = complaint_queue(services.store.list_complaints(limit=500), now)
    return render(request, cookies, session, "console_complaints.html", operator=operator, section="complaints",
                  queue=queue, now=now, may_change=oversight.may_change(operator.role))


@router.post("/complaints/{complaint_id}/{step}", responses={303: {"description": "done"}, 403: {}})
async def complaint_step(request: Request, complaint_id: str, step: str) -> Response:
    posted = await signed_form(request, cookies, _account, "/console/login")
    if isinstance(posted, RedirectResponse):
        return posted
    operator, form, services = posted.who, posted.form, posted.services
    if step not in ("acknowledge", "resolve") or len(complaint_id) > 64:
        return redirect("/console/complaints", error=f"no step {step[:20]!r} for complaint {complaint_id[:64]!r}")

    def action() -> str:
        name = _changer(operator)
        if step == "acknowledge":
            complaints._transition(services, complaint_id, "acknowledged", name)
            return f"complaint {complaint_id} acknowledged"
        try:
            body = complaints.ResolutionIn(status=form.get("status", ""), resolution=form.get("resolution", "").strip())
        except ValidationError as exc:
            raise HTTPException(422, detail=one_line(exc)) from None
        complaints._transition(services, complaint_id, body.status, name, body.resolution)
        return f"complaint {complaint_id} {body.status}"

    return await act("/console/complaints", action)


# -- records: trending, the log's integrity, the Art. 8 review, the filing ---------------------------
@router.get("/records", response_class=HTMLResponse)
def records_page(request: Request) -> Response:
    session, operator = _page(request)
    if operator is None:
        return redirect("/console/login")
    services: Services = request.app.state.services
    trending, trending_error = None, ""
    if services.catalog is not None:
        try:  # the trending route itself, as shown to this console account (and logged as such)
            trending = content.trending(services, new_request_id(), f"console:{operator.name}", Principal("development", None), k=20)
        except HTTPException as exc:
            trending_error = str(exc.detail)
    else:
        trending_error = services.model_error or "model not loaded"
    verification = admin.log_verification(services)
    manifest = services.catalog.bundle.manifest if services.catalog is not None else {}
    return render(request, cookies, session, "console_records.html", operator=operator, section="records",
                  trending=trending, trending_error=trending_error, verification=verification,
                  review=manifest.get("review"), model_version=services.catalog.model_version if services.catalog else None)


@router.get("/filing.zip", responses={200: {"content": {"application/zip": {}}}, 303: {}})
def filing_package(request: Request) -> Response:
    """The filing package (Art. 23 (draft 19), Art. 24 (draft 20)) of the model being served: filing.json, .md and .html in a zip."""
    from serving.web.filing import filing_for_bundle

    session, operator = _page(request)
    if operator is None:
        return redirect("/console/login")
    services: Services = request.app.state.services
    if services.catalog is None:
        return redirect("/console/records", error=f"no model loaded: {services.model_error}")
    filing = filing_for_bundle(services.settings, services.catalog.bundle, services.catalog.model_version, None,
                               date.today())
    from compliance.filing import write_filing

    buffer = io.BytesIO()
    with tempfile.TemporaryDirectory() as folder:
        written = write_filing(folder, filing)
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in written.values():
                archive.write(path, Path(path).name)
    services.logstore.append("operators", {"action": "filing_download", "name": operator.name})
    stamp = datetime.now(UTC).strftime("%Y%m%d")
    return Response(buffer.getvalue(), media_type="application/zip",
                    headers={"Content-Disposition": f'attachment; filename="filing-{stamp}.zip"'})
