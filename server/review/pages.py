"""The reviewer web page at ``/review``: server-rendered, nothing from a CDN.

A session cookie (signed with ``PHENOSYNC_SECRET_KEY``, scoped to
``/review``, SameSite=Strict) carries the signed-in user; every form carries
a CSRF token kept in the session and compared in constant time.  The page
uses the same queue, claims and decisions as the JSON API.
"""

from __future__ import annotations

import hmac
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from tortoise.transactions import in_transaction

from schemas import errors
from schemas.observation import Decision
from server import throttle
from server.models.accounts import User
from server.models.reference import Phenophase, Project, Taxon
from server.passwords import verify_password
from server.quality import describe, explanations
from server.review import access, queue
from server.review.decisions import DecisionRequest, decide, decide_many
from server.review.detail import observation_detail, summaries
from server.settings import Settings

HERE = Path(__file__).resolve().parent.parent
templates = Jinja2Templates(directory=str(HERE / "templates" / "review"))
MAX_SKIPPED = 30
QUEUE_PAGE = 50
FILTERS = ("project", "taxon_id", "phenophase_id", "flag")
SECURITY_HEADERS = {"X-Frame-Options": "DENY", "Referrer-Policy": "same-origin",
                    "Cache-Control": "no-store"}


async def _form(request: Request) -> dict[str, list[str]]:
    """URL-encoded form fields (the page's forms send nothing else); a NUL,
    which no field holds and PostgreSQL cannot compare, is dropped."""
    form = parse_qs((await request.body()).decode("utf-8", "replace"), keep_blank_values=True)
    return {k.replace("\x00", ""): [v.replace("\x00", "") for v in values]
            for k, values in form.items()}


def _first(form: dict[str, list[str]], name: str) -> str:
    return (form.get(name) or [""])[0]


def _csrf(request: Request) -> str:
    token = request.session.get("csrf")
    if not token:
        token = request.session["csrf"] = secrets.token_urlsafe(32)
    return str(token)


def _check_csrf(request: Request, form: dict[str, list[str]]) -> None:
    expected = request.session.get("csrf")
    if not expected or not hmac.compare_digest(str(expected), _first(form, "csrf")):
        raise errors.PermissionDenied("The form expired or came from elsewhere: reload the page.",
                                      code="csrf_failed")


def _flash(request: Request, message: str, kind: str = "info") -> None:
    request.session["flash"] = {"message": message, "kind": kind}


def _render(request: Request, name: str, context: dict[str, Any], status: int = 200) -> Response:
    context = {"csrf": _csrf(request), "flash": request.session.pop("flash", None), **context}
    response = templates.TemplateResponse(request, name, context, status_code=status)
    response.headers.update(SECURITY_HEADERS)
    return response


async def _user(request: Request) -> User | None:
    user_id = request.session.get("user_id")
    if user_id is None:
        return None
    return await User.get_or_none(id=user_id, is_active=True)


def _to_login() -> Response:
    return RedirectResponse("/review/login", status_code=303)


def _lease_ms(request: Request) -> int:
    return int(request.app.state.settings.review_lease_minutes) * 60_000


def _filters(request: Request) -> dict[str, str]:
    return {k: v for k, v in request.session.get("filters", {}).items() if v}


async def _scope_and_filter(user: User, filters: dict[str, str]) -> tuple[queue.Scope,
                                                                         queue.QueueFilter]:
    project = None
    if filters.get("project"):
        project = await Project.get_or_none(slug=filters["project"], is_deleted=False)
    scope = await access.reviewer_scope(user, project)

    def number(name: str) -> int | None:
        raw = filters.get(name, "")
        return int(raw) if raw.isdigit() else None

    return scope, queue.QueueFilter(number("taxon_id"), number("phenophase_id"),
                                    filters.get("flag") or None)


# --- pages ------------------------------------------------------------------------

async def login_page(request: Request) -> Response:
    if request.method == "GET":
        return _render(request, "login.html", {})
    form = await _form(request)
    try:
        _check_csrf(request, form)
    except errors.PermissionDenied as error:
        return _render(request, "login.html", {"error": error.message}, status=403)
    username = _first(form, "username")
    address = request.client.host if request.client else None
    try:
        # The same throttle as the API's login: one may not guess here instead.
        await throttle.check(username, address,
                             request.app.state.settings.login_attempts_per_15min)
    except errors.TooManyRequests as error:
        response = _render(request, "login.html", {"error": error.message,
                                                   "username": username}, status=429)
        response.headers.update(error.headers)
        return response
    user = await User.get_or_none(username=username)
    ok = await verify_password(user.password_hash if user else None, _first(form, "password"))
    if user is None or not ok or not user.is_active:
        await throttle.failed(username, address)
        return _render(request, "login.html", {"error": errors.InvalidCredentials().message,
                                               "username": username},
                       status=401)
    await throttle.succeeded(username)
    request.session.clear()
    request.session.update({"user_id": user.id, "csrf": secrets.token_urlsafe(32)})
    return RedirectResponse("/review/", status_code=303)


async def logout(request: Request) -> Response:
    form = await _form(request)
    _check_csrf(request, form)
    request.session.clear()
    return _to_login()


async def queue_page(request: Request) -> Response:
    user = await _user(request)
    if user is None:
        return _to_login()
    if "project" in request.query_params or "apply" in request.query_params:
        request.session["filters"] = {k: request.query_params.get(k, "") for k in FILTERS}
        request.session["skipped"] = []
    filters = _filters(request)
    try:
        scope, flt = await _scope_and_filter(user, filters)
    except errors.PermissionDenied as error:
        return _render(request, "queue.html", {"user": user, "denied": error.message},
                       status=403)
    conn = request.app.state.database.connection()
    items = await summaries(await queue.peek(conn, scope, flt, QUEUE_PAGE))
    for item in items:
        item["flag_titles"] = [describe(c).title for c in item["flags"]]
    return _render(request, "queue.html", {
        "user": user, "items": items, "filters": filters,
        "projects": await Project.filter(id__in=list(scope.projects)).order_by("name"),
        "taxa": await Taxon.filter(is_deleted=False).order_by("scientific_name"),
        "phenophases": await Phenophase.filter(is_deleted=False).order_by("name"),
        "flag_codes": explanations(),
    })


async def next_item(request: Request) -> Response:
    user = await _user(request)
    if user is None:
        return _to_login()
    try:
        scope, flt = await _scope_and_filter(user, _filters(request))
    except errors.PermissionDenied:
        return RedirectResponse("/review/", status_code=303)
    skipped = tuple(request.session.get("skipped", []))
    database = request.app.state.database
    if database.dialect == "postgres":
        async with in_transaction() as conn:
            ids, _ = await queue.claim(conn, scope, flt, 1, _lease_ms(request), skipped)
    else:
        ids, _ = await queue.claim(database.connection(), scope, flt, 1, _lease_ms(request),
                                   skipped)
    if not ids:
        _flash(request, "Nothing left to review with these filters. Thank you!")
        return RedirectResponse("/review/", status_code=303)
    return RedirectResponse(f"/review/items/{ids[0]}", status_code=303)


async def item_page(request: Request) -> Response:
    user = await _user(request)
    if user is None:
        return _to_login()
    try:
        detail = await observation_detail(user, request.path_params["observation_id"])
    except (errors.PermissionDenied, errors.NotFound) as error:
        return _render(request, "queue.html", {"user": user, "denied": error.message},
                       status=error.status)
    return _render(request, "item.html", {
        "user": user, "o": detail,
        "taxa": await Taxon.filter(is_deleted=False).order_by("scientific_name"),
        "phenophases": await Phenophase.filter(is_deleted=False).order_by("name"),
        "placeholder": "/review/static/placeholder.svg",
    })


async def decide_item(request: Request) -> Response:
    user = await _user(request)
    if user is None:
        return _to_login()
    form = await _form(request)
    _check_csrf(request, form)
    oid = request.path_params["observation_id"]

    def number(name: str) -> int | None:
        raw = _first(form, name)
        return int(raw) if raw.isdigit() else None

    try:
        decision = Decision(_first(form, "decision"))
        verify = decision is Decision.VERIFY
        result = await decide(user, DecisionRequest(
            oid, decision,
            corrected_taxon_id=number("corrected_taxon_id") if verify else None,
            corrected_phenophase_id=number("corrected_phenophase_id") if verify else None,
            comment=_first(form, "comment")[:2000],
        ), lease_ms=_lease_ms(request))
    except ValueError:
        _flash(request, "Choose verify, reject or needs info.", "error")
        return RedirectResponse(f"/review/items/{oid}", status_code=303)
    except errors.PhenosyncError as error:
        _flash(request, error.message, "error")
        target = f"/review/items/{oid}" if error.code == "lease_expired" else "/review/next"
        return RedirectResponse(target, status_code=303)
    _flash(request, f"{decision.replace('_', ' ').capitalize()}: saved "
                    f"({result['outcome']}, now {result['review_status'].replace('_', ' ')}).")
    return RedirectResponse("/review/next", status_code=303)


async def skip_item(request: Request) -> Response:
    user = await _user(request)
    if user is None:
        return _to_login()
    form = await _form(request)
    _check_csrf(request, form)
    oid = request.path_params["observation_id"]
    await queue.release(request.app.state.database.connection(), user.id, oid)
    request.session["skipped"] = [*request.session.get("skipped", []), oid][-MAX_SKIPPED:]
    return RedirectResponse("/review/next", status_code=303)


async def bulk_verify(request: Request) -> Response:
    user = await _user(request)
    if user is None:
        return _to_login()
    form = await _form(request)
    _check_csrf(request, form)
    ids = form.get("ids", [])[:100]
    results = await decide_many(
        user, [DecisionRequest(i, Decision.VERIFY) for i in ids], lease_ms=_lease_ms(request)
    )
    done = sum(r["status"] == "applied" for r in results)
    failed = [r["error"]["message"] for r in results if r["status"] != "applied"]
    _flash(request, f"Verified {done} of {len(ids)} selected."
           + (f" Not verified: {failed[0]}" if failed else ""),
           "error" if failed else "info")
    return RedirectResponse("/review/", status_code=303)


def routes(settings: Settings) -> list[BaseRoute]:
    """``/review`` and its static files, with the session middleware on them only."""
    return [Mount("/review", routes=[
        Route("/", queue_page, methods=["GET"]),
        Route("/login", login_page, methods=["GET", "POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/next", next_item, methods=["GET"]),
        Route("/items/{observation_id}", item_page, methods=["GET"]),
        Route("/items/{observation_id}/decision", decide_item, methods=["POST"]),
        Route("/items/{observation_id}/skip", skip_item, methods=["POST"]),
        Route("/bulk", bulk_verify, methods=["POST"]),
        Mount("/static", StaticFiles(directory=str(HERE / "static" / "review")),
              name="review-static"),
    ], middleware=[Middleware(
        SessionMiddleware, secret_key=str(settings.secret_key), session_cookie="phenosync_review",
        path="/review", same_site="strict", max_age=12 * 3600,
    )])]
