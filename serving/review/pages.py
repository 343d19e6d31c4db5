"""The review pages: login, try it, the review queue, disagreements, agreement.

Every page but the login needs a session of a token with scope `review` (or `admin`); without one
it redirects to the login. Every form post carries the session's CSRF token and counts against the
reviewer token's rate limit. Templates autoescape: texts from the queue are shown, never run.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import quote

import jinja2
from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from tiergate.errors import ClassificationError, InputDataError, TiergateError
from tiergate.feedback.errors import Forbidden, Unauthorized, http_status
from tiergate.feedback.schema import check_text
from tiergate.feedback.store import FeedbackStore, Principal
from tiergate.records import Context
from tiergate.serving.review import csrf
from tiergate.serving.review.api import public_message
from tiergate.serving.review.forms import read_form
from tiergate.serving.review.ratelimit import TokenBucketLimiter, retry_after
from tiergate.serving.review.sessions import Session, SessionStore
from tiergate.serving.review.triton import Classifier
from tiergate.serving.review.views import (
    STATES,
    disagreements,
    form_labels,
    kappa_table,
    model_decisions,
    queue_item,
    try_result,
)

log = logging.getLogger(__name__)
TEMPLATES = Path(__file__).resolve().parent / "templates"
SESSION_COOKIE = "tiergate_session"
PAGES = ("/queue", "/try", "/disagreements", "/agreement")
HOME = "/queue"
CookieSecure = Literal["auto", "always", "never"]
ACTIONS = ("confirm", "correct", "skip")


class LoginRequired(Exception):
    """No live session: the page redirects to the login, then back to `next`."""

    def __init__(self, next_page: str):
        super().__init__(next_page)
        self.next_page = next_page


class RateLimited(TiergateError):
    status = 429

    def __init__(self, wait_s: float, who: str = "this token"):
        self.retry_after = retry_after(wait_s)
        super().__init__(f"rate limit: too many requests for {who}; retry in {self.retry_after} s")


@dataclass
class PageContext:
    """What the pages share: the store, the classifier, sessions, limits, templates."""

    store: FeedbackStore
    classifier: Classifier
    cookie_secure: CookieSecure = "auto"
    sessions: SessionStore = field(init=False)
    limiter: TokenBucketLimiter = field(init=False)
    login_limiter: TokenBucketLimiter = field(init=False)
    login_csrf: csrf.LoginCsrf = field(init=False)
    templates: jinja2.Environment = field(init=False)

    def __post_init__(self) -> None:
        settings = self.store.settings
        self.sessions = SessionStore(settings.session_idle_s, settings.session_max_s, settings.max_sessions)
        self.limiter = TokenBucketLimiter(settings.rate_limit_per_minute, settings.rate_limit_burst, settings.rate_limit_max_keys)
        self.login_limiter = TokenBucketLimiter(
            settings.login_rate_limit_per_minute, settings.login_rate_limit_burst, settings.rate_limit_max_keys
        )
        self.login_csrf = csrf.LoginCsrf(secrets.token_bytes(32))  # per process: a restart invalidates open login forms
        self.templates = jinja2.Environment(
            loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True, undefined=jinja2.StrictUndefined
        )

    def secure(self, request: Request) -> bool:
        """Cookies get `Secure` when asked to always, or (auto) when the request came over TLS."""
        return self.cookie_secure == "always" or (self.cookie_secure == "auto" and request.url.scheme == "https")

    def render(
        self, request: Request, name: str, status: int = 200, session: Session | None = None, **values: Any
    ) -> HTMLResponse:
        page = self.templates.get_template(name).render(
            session=session,
            csrf_token=session.csrf if session else "",
            flash=session.take_flash() if session else "",
            path=request.url.path,
            max_text_chars=self.store.settings.max_text_chars,
            **values,
        )
        return HTMLResponse(page, status_code=status)


def refusal(error: Exception) -> Response:
    """A refused request as one plain line with its status (429 carries Retry-After)."""
    status = getattr(error, "status", None) or http_status(error)
    headers = {"Retry-After": error.retry_after} if isinstance(error, RateLimited) else None
    return PlainTextResponse(public_message(error) + "\n", status_code=status, headers=headers)


def safe_next(value: str | None) -> str:
    """Only this app's own pages: never an open redirect."""
    return value if value in PAGES else HOME


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def page_router(ctx: PageContext) -> APIRouter:
    router = APIRouter()
    store, taxonomy, settings = ctx.store, ctx.store.taxonomy, ctx.store.settings

    async def reviewer(request: Request) -> tuple[Session, Principal]:
        session_id = request.cookies.get(SESSION_COOKIE)
        session = ctx.sessions.get(session_id)
        if session is None:
            raise LoginRequired(request.url.path)
        try:
            principal = await run_in_threadpool(store.authenticate, session.token, "review")
        except (Unauthorized, Forbidden):
            ctx.sessions.drop(session_id)  # revoked (or re-scoped) since the login: the session ends with it
            raise LoginRequired(request.url.path) from None
        return session, principal

    async def posted(request: Request, session: Session, principal: Principal) -> dict[str, str]:
        """A form post of a logged-in reviewer: rate limit, then the form, then its CSRF token."""
        wait = ctx.limiter.take(f"token:{principal.name}")
        if wait > 0:
            raise RateLimited(wait)
        form = await read_form(request, settings.max_request_bytes)
        csrf.check(session.csrf, form.get(csrf.FIELD))
        return form

    def login_page(request: Request, next_page: str, error: str = "", status: int = 200) -> Response:
        value = ctx.login_csrf.issue()
        response = ctx.render(request, "login.html", status, next_page=next_page, login_csrf=value, error=error)
        response.set_cookie(
            csrf.LOGIN_COOKIE, value, httponly=True, samesite="strict", secure=ctx.secure(request), path="/login"
        )
        return response

    @router.get("/", include_in_schema=False)
    def home() -> Response:
        return RedirectResponse(HOME, status_code=303)

    @router.get("/favicon.ico", include_in_schema=False)
    def favicon() -> Response:
        return Response(status_code=204)  # no icon, and no 404 in every browser console

    @router.get("/healthz", include_in_schema=False)
    def alive() -> Response:
        """Liveness: the process answers (readiness is /api/v1/health, which asks the store)."""
        return PlainTextResponse("alive\n")

    @router.get("/login", response_class=HTMLResponse)
    def login_form(request: Request, next_page: Annotated[str | None, Query(alias="next")] = None) -> Response:
        if ctx.sessions.get(request.cookies.get(SESSION_COOKIE)) is not None:
            return RedirectResponse(safe_next(next_page), status_code=303)
        return login_page(request, safe_next(next_page))

    @router.post("/login")
    async def login(request: Request) -> Response:
        try:
            wait = ctx.login_limiter.take(f"login:{client_address(request)}")
            if wait > 0:
                raise RateLimited(wait, "logins from this address")  # no token is known yet: the limit is per address
            form = await read_form(request, settings.max_request_bytes)
            ctx.login_csrf.verify(request.cookies.get(csrf.LOGIN_COOKIE), form.get(csrf.FIELD))
        except TiergateError as error:
            return refusal(error)
        next_page = safe_next(form.get("next"))
        try:
            principal = await run_in_threadpool(store.authenticate, form.get("token", ""), "review")
        except (Unauthorized, Forbidden) as error:
            return login_page(request, next_page, str(error), error.status)
        except TiergateError as error:
            return refusal(error)
        ctx.sessions.drop(request.cookies.get(SESSION_COOKIE))
        session_id, _ = ctx.sessions.create(form["token"].strip(), principal.name)
        await run_in_threadpool(store.record_event, principal.actor, "session.login", f"token:{principal.name}", {})
        log.info("reviewer %s logged in", principal.name)
        response = RedirectResponse(next_page, status_code=303)
        response.set_cookie(SESSION_COOKIE, session_id, httponly=True, samesite="strict", secure=ctx.secure(request), path="/")
        response.delete_cookie(csrf.LOGIN_COOKIE, path="/login", secure=ctx.secure(request), httponly=True, samesite="strict")
        return response

    @router.post("/logout")
    async def logout(request: Request) -> Response:
        try:
            session, principal = await reviewer(request)
            await posted(request, session, principal)
        except TiergateError as error:
            return refusal(error)
        ctx.sessions.drop(request.cookies.get(SESSION_COOKIE))
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/", secure=ctx.secure(request), httponly=True, samesite="strict")
        return response

    # --- try it ---------------------------------------------------------------------------------

    def try_page(request: Request, session: Session, status: int = 200, **values: Any) -> Response:
        defaults: dict[str, Any] = {
            "text": "",
            "audience": taxonomy.contexts.audiences[0],
            "surface": taxonomy.contexts.surfaces[0],
            "result": None,
            "error": "",
            "model_version": "",
        }
        return ctx.render(
            request,
            "try.html",
            status,
            session,
            audiences=taxonomy.contexts.audiences,
            surfaces=taxonomy.contexts.surfaces,
            triton_url=ctx.classifier.url,
            **{**defaults, **values},
        )

    @router.get("/try", response_class=HTMLResponse)
    async def try_form(request: Request) -> Response:
        session, _ = await reviewer(request)
        return try_page(request, session)

    @router.post("/try")
    async def try_classify(request: Request) -> Response:
        session, principal = await reviewer(request)
        try:
            form = await posted(request, session, principal)
        except TiergateError as error:
            return refusal(error)
        shown: dict[str, Any] = {field: form.get(field, "") for field in ("text", "audience", "surface")}
        try:
            text = check_text(shown["text"], settings.max_text_chars)
            context = Context.parse(
                f"{shown['audience']}/{shown['surface']}", taxonomy.contexts.audiences, taxonomy.contexts.surfaces
            )
            result = await run_in_threadpool(ctx.classifier.classify, text, str(context))
        except ClassificationError as error:
            return try_page(request, session, 502, error=f"Triton: {error}", **shown)
        except InputDataError as error:
            return try_page(request, session, 422, error=str(error), **shown)
        return try_page(
            request, session, result=try_result(taxonomy, result), model_version=ctx.classifier.model_version, **shown
        )

    # --- the queue ------------------------------------------------------------------------------

    @router.get("/queue", response_class=HTMLResponse)
    async def queue(request: Request) -> Response:
        session, principal = await reviewer(request)
        pending = await run_in_threadpool(store.pending, principal, len(session.skipped) + 1)
        following = next((item for item in pending if item.id not in session.skipped), None)
        return ctx.render(
            request,
            "queue.html",
            session=session,
            entry=queue_item(taxonomy, following) if following else None,
            skipped=len(session.skipped),
            states=STATES,
        )

    @router.post("/queue/skipped")
    async def unskip(request: Request) -> Response:
        session, principal = await reviewer(request)
        try:
            await posted(request, session, principal)
        except TiergateError as error:
            return refusal(error)
        session.skipped.clear()
        session.flash = "skipped items are back in the queue"
        return RedirectResponse("/queue", status_code=303)

    @router.post("/queue/{item_id}")
    async def decide(item_id: int, request: Request) -> Response:
        session, principal = await reviewer(request)
        try:
            form = await posted(request, session, principal)
            action = form.get("action", "")
            if action not in ACTIONS:
                raise InputDataError(f"action must be one of {', '.join(ACTIONS)}")
            if action == "skip":
                session.skipped.add(item_id)
                session.flash = f"item {item_id} skipped"
                return RedirectResponse("/queue", status_code=303)
            if action == "confirm":
                item = await run_in_threadpool(store.item, item_id)
                labels = model_decisions(taxonomy, item.predicted)
                if not labels:
                    raise InputDataError(f"item {item_id} carries no model prediction to confirm; set the labels and correct")
            else:
                labels = form_labels(taxonomy, form)
            review = await run_in_threadpool(store.review, principal, item_id, labels)
        except TiergateError as error:
            return refusal(error)
        positives = [name for name, state in review.labels.items() if state == "positive"]
        session.flash = (
            f"item {item_id} {'confirmed' if action == 'confirm' else 'labelled'}: "
            f"{', '.join(positives) or 'nothing'} positive, {len(review.labels) - len(positives)} negative"
        )
        return RedirectResponse("/queue", status_code=303)

    # --- agreement ------------------------------------------------------------------------------

    @router.get("/disagreements", response_class=HTMLResponse)
    async def disputed(request: Request) -> Response:
        session, _ = await reviewer(request)
        reviewed = await run_in_threadpool(store.reviewed_items)
        return ctx.render(request, "disagreements.html", session=session, entries=disagreements(reviewed))

    @router.get("/agreement", response_class=HTMLResponse)
    async def agreement(request: Request) -> Response:
        session, _ = await reviewer(request)
        reviewed = await run_in_threadpool(store.reviewed_items)
        return ctx.render(request, "agreement.html", session=session, **kappa_table(taxonomy, reviewed))

    return router


def login_redirect(error: LoginRequired) -> Response:
    return RedirectResponse(f"/login?next={quote(safe_next(error.next_page), safe='/')}", status_code=303)
