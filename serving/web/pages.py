"""What both areas share: the Jinja2 environment, reading a posted form behind its CSRF check and
the session's login, and the redirect-after-post with a message."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar
from urllib.parse import urlencode

from fastapi import HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from markupsafe import Markup
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from serving.services import Services, one_line
from serving.web.session import CSRF_FIELD, Session, SessionCookies

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).with_name("templates")))


def bilingual(chinese: str, english: str) -> Markup:
    """A label in both languages, each marked with its language (screen readers switch voice)."""
    return Markup('<span lang="zh-CN">{}</span> / <span lang="en">{}</span>').format(chinese, english)


TEMPLATES.env.globals["bi"] = bilingual
MAX_FORM_FIELDS = 20


def render(request: Request, cookies: SessionCookies, session: Session, template: str, status_code: int = 200,
           **context) -> HTMLResponse:
    services = request.app.state.services
    settings = services.settings
    context.update(csrf_field=CSRF_FIELD, csrf_token=cookies.token(request, session), service_name=settings.service_name,
                   filing_number=settings.filing_number, message=request.query_params.get("msg", "")[:500],
                   error=request.query_params.get("error", "")[:500])
    response = TEMPLATES.TemplateResponse(request, template, context, status_code=status_code)
    response.headers["Cache-Control"] = "no-store"
    response.headers["Content-Security-Policy"] = "default-src 'self'; style-src 'self'; form-action 'self'; frame-ancestors 'none'"
    if session.fresh:
        cookies.save(request, response, session)
    return response


async def posted_form(request: Request, cookies: SessionCookies) -> tuple[Session, dict[str, str]]:
    """The session and the posted fields, after the CSRF check (403 without a valid token)."""
    session = cookies.load(request)
    try:
        form = await request.form(max_files=0, max_fields=MAX_FORM_FIELDS)
    except Exception:  # not a form, too many fields, a broken multipart body: not this session's form
        form = {}
    fields = {key: value for key, value in form.items() if isinstance(value, str)}
    cookies.check_csrf(request, session, fields.get(CSRF_FIELD))
    return session, fields


Who = TypeVar("Who")


@dataclass(frozen=True)
class SignedForm(Generic[Who]):
    """A posted form that passed the CSRF check, from a logged-in session: who posted it (the
    area's account), its fields, and the worker's services."""

    who: Who
    form: dict[str, str]
    services: Services


async def signed_form(request: Request, cookies: SessionCookies, account: Callable[[Request, Session], Who | None],
                      login_path: str) -> SignedForm[Who] | RedirectResponse:
    """Every form handler's first step: the CSRF check (403), then the session's account as
    `account` reads it (None: not logged in, or no longer allowed), else back to `login_path`."""
    session, form = await posted_form(request, cookies)
    who = account(request, session)
    if who is None:
        return redirect(login_path, error="log in first")
    return SignedForm(who, form, request.app.state.services)


def redirect(path: str, message: str = "", error: str = "") -> RedirectResponse:
    query = urlencode({k: v for k, v in (("msg", message), ("error", error)) if v})
    return RedirectResponse(f"{path}?{query}" if query else path, status_code=303)


async def act(path: str, action: Callable[[], str]) -> RedirectResponse:
    """Run `action` (a call of the JSON routes' own functions) in the thread pool; back to `path`
    with its message, or with the error the JSON route would have answered."""
    try:
        message = await run_in_threadpool(action)
    except HTTPException as exc:
        return redirect(path, error=str(exc.detail))
    except (ValidationError, ValueError) as exc:
        return redirect(path, error=one_line(exc))
    return redirect(path, message=message)
