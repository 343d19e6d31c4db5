"""The review service: one FastAPI app with the pages a reviewer uses (`pages.py`), the JSON API that
services submit to (`api.py`, part A's router, unchanged), the static files, and the guards around
them (security headers, per-token rate limits). `tiergate review` serves it with uvicorn.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles

from tiergate.errors import TiergateError
from tiergate.feedback.store import FeedbackStore
from tiergate.serving.review.api import PREFIX, api_router, error_response
from tiergate.serving.review.guards import ApiRateLimit, SecurityHeaders
from tiergate.serving.review.pages import CookieSecure, LoginRequired, PageContext, login_redirect, page_router, refusal
from tiergate.serving.review.ratelimit import TokenBucketLimiter
from tiergate.serving.review.triton import Classifier, TritonClassifier

STATIC = Path(__file__).resolve().parent / "static"


@dataclass(frozen=True)
class ReviewConfig:
    triton_url: str  # the Triton ensemble the try-it page classifies with (through the gateway in a cluster)
    cookie_secure: CookieSecure = "auto"  # auto: Secure cookies when the request came over TLS
    model: str = "tiergate"  # the ensemble's name


def review_app(store: FeedbackStore, config: ReviewConfig, classifier: Classifier | None = None) -> FastAPI:
    """The whole review service on one store; `classifier` replaces the Triton client (tests)."""
    settings = store.settings
    classifier = classifier or TritonClassifier(config.triton_url, settings.triton_timeout_s, store.taxonomy.labels, config.model)
    ctx = PageContext(store, classifier, config.cookie_secure)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        classifier.close()

    app = FastAPI(title="tiergate review", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.pages = ctx
    app.include_router(api_router(store))
    app.include_router(page_router(ctx))
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    api_limiter = TokenBucketLimiter(
        settings.api_rate_limit_per_minute, settings.api_rate_limit_burst, settings.rate_limit_max_keys
    )
    app.add_middleware(ApiRateLimit, limiter=api_limiter)
    app.add_middleware(SecurityHeaders)

    @app.exception_handler(LoginRequired)
    async def _login(_request: Request, error: LoginRequired) -> Response:
        return login_redirect(error)

    @app.exception_handler(TiergateError)
    async def _refused(request: Request, error: TiergateError) -> Response:
        """A refusal no route caught (the store away while a page checks its session): one line with
        its status (503 for the store), never a 500 with a traceback."""
        return error_response(error) if request.url.path.startswith(PREFIX + "/") else refusal(error)

    @app.exception_handler(RequestValidationError)
    async def _malformed(request: Request, error: RequestValidationError) -> Response:
        first = error.errors()[0] if error.errors() else {}
        where = ".".join(str(part) for part in first.get("loc", ())) or "request"
        message = f"{where}: {first.get('msg', 'invalid')}"
        if request.url.path.startswith(PREFIX + "/"):
            return JSONResponse({"error": message}, status_code=422)
        return PlainTextResponse(message + "\n", status_code=422)

    return app
