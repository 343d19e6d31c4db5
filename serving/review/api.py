"""The review service's JSON API (`/api/v1`): the server side of the contract written down in
`tiergate.feedback_client`. Every write needs a bearer token with the right scope; every body is
size-capped and validated against the taxonomy before the store sees it; every error is one line
`{"error": ...}` with the status the store's error class names.

`api_router(store)` is what the review web app mounts; `api_app(store)` serves the API alone.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from tiergate.errors import InputDataError, TiergateError
from tiergate.feedback.errors import StoreUnavailable, http_status
from tiergate.feedback.schema import ReviewIn, Submission, parse_model
from tiergate.feedback.store import FeedbackStore, Principal, ReviewView

log = logging.getLogger(__name__)
PREFIX = "/api/v1"


class BodyTooLarge(InputDataError):
    """A body over `feedback.max_request_bytes` (413)."""

    status = 413


def bearer(request: Request) -> str | None:
    """The token of `Authorization: Bearer <token>`; None when the header is missing or another scheme."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


async def read_capped(request: Request, limit: int, what: str = "request body") -> bytes:
    """The raw body, read up to `limit` bytes: a declared or streamed larger one is refused before it is all read."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(f"{what} of {declared} bytes is over the limit of {limit}")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise BodyTooLarge(f"{what} is over the limit of {limit} bytes")
    return bytes(body)


async def read_json(request: Request, limit: int) -> Any:
    """The body as JSON, read up to `limit` bytes (a larger one is refused before it is all read)."""
    body = await read_capped(request, limit)
    try:
        return json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):  # RecursionError: nested deeper than the parser goes
        raise InputDataError("request body is not JSON (UTF-8)") from None


UNAVAILABLE = "the feedback database is unavailable; try again shortly"


def public_message(error: Exception) -> str:
    """The one line a caller is shown. The store's failures name the database (host, user, path): that
    goes to the log, and the caller, who may not even have logged in, reads that it is unavailable."""
    if isinstance(error, StoreUnavailable):
        log.warning("%s", error)
        return UNAVAILABLE
    return " ".join(str(error).split())[:500]


def error_response(error: Exception) -> JSONResponse:
    status = error.status if isinstance(error, BodyTooLarge) else http_status(error)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse({"error": public_message(error)}, status_code=status, headers=headers)


def _review_json(review: ReviewView) -> dict[str, Any]:
    return {
        "id": review.id,
        "item_id": review.item_id,
        "reviewer": review.reviewer,
        "labels": review.labels,
        "created_at": review.created_at.isoformat(),
    }


def api_router(store: FeedbackStore) -> APIRouter:
    """The `/api/v1` routes on one store. The store is synchronous: its calls run in the thread pool,
    never on the event loop."""
    router = APIRouter(prefix=PREFIX)
    limit = store.settings.max_request_bytes

    def authenticated(request: Request, scope: str) -> Principal:
        return store.authenticate(bearer(request), scope)

    @router.get("/health")
    def health() -> JSONResponse:
        try:
            store.ping()
        except StoreUnavailable as error:
            return error_response(error)
        return JSONResponse({"status": "ok"})

    @router.post("/items")
    async def submit_item(request: Request) -> JSONResponse:
        try:
            principal = await run_in_threadpool(authenticated, request, "submit")
            submission = parse_model(Submission, await read_json(request, limit), "item")
            result = await run_in_threadpool(store.submit, principal, submission)
        except TiergateError as error:
            return error_response(error)
        return JSONResponse(
            {"item": result.item.as_dict(), "created": result.created}, status_code=201 if result.created else 200
        )

    @router.get("/items/{item_id}")
    def get_item(item_id: int, request: Request) -> JSONResponse:
        try:
            authenticated(request, "review")
            item = store.item(item_id)
        except TiergateError as error:
            return error_response(error)
        return JSONResponse({"item": item.as_dict()})

    @router.post("/items/{item_id}/reviews")
    async def review_item(item_id: int, request: Request) -> JSONResponse:
        try:
            principal = await run_in_threadpool(authenticated, request, "review")
            review = parse_model(ReviewIn, await read_json(request, limit), "review")
            stored = await run_in_threadpool(store.review, principal, item_id, review)
        except TiergateError as error:
            return error_response(error)
        return JSONResponse({"review": _review_json(stored)}, status_code=201)

    return router


def api_app(store: FeedbackStore) -> FastAPI:
    """The API alone (tests, and services that want no UI); the review web app mounts `api_router`."""
    app = FastAPI(title="tiergate review API", docs_url=None, redoc_url=None, openapi_url=None)
    app.include_router(api_router(store))

    @app.exception_handler(RequestValidationError)
    async def _malformed(_request: Request, error: RequestValidationError) -> JSONResponse:
        first = error.errors()[0] if error.errors() else {}
        where = ".".join(str(part) for part in first.get("loc", ())) or "request"
        return JSONResponse({"error": f"{where}: {first.get('msg', 'invalid')}"}, status_code=422)

    return app
