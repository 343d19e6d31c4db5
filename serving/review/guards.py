"""The review app's guards around every request: security headers on every answer, and the per-token
rate limit on the JSON API's writes (services submitting items). Pure ASGI middleware: nothing here
reads a body, so the API's own streaming size cap stays in charge of that."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tiergate.serving.review.api import PREFIX
from tiergate.serving.review.ratelimit import TokenBucketLimiter, retry_after

# No inline script or style, nothing from another origin, no framing, forms only to this origin.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
]


class SecurityHeaders:
    """Adds HEADERS to every HTTP answer, and `Cache-Control: no-store` to all but the static files."""

    def __init__(self, app: ASGIApp, static_prefix: str = "/static/"):
        self.app = app
        self.static_prefix = static_prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = list(HEADERS)
        if not str(scope.get("path", "")).startswith(self.static_prefix):
            extra.append((b"cache-control", b"no-store"))

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                message["headers"] = [*message.get("headers", []), *(h for h in extra if h[0] not in present)]
            await send(message)

        await self.app(scope, receive, sending)


def _bearer_key(scope: Scope) -> str:
    """The rate-limit key of an API call: a digest of its bearer token (never the token), else the client address."""
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return "api:" + hashlib.sha256(token.strip().encode("utf-8")).hexdigest()
    client: Any = scope.get("client") or ("unknown", 0)
    return f"api-anonymous:{client[0]}"


class ApiRateLimit:
    """429 with Retry-After for a bearer token's POSTs to /api/v1 beyond its bucket (JSON, the API's error shape)."""

    def __init__(self, app: ASGIApp, limiter: TokenBucketLimiter):
        self.app = app
        self.limiter = limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("method") == "POST" and str(scope.get("path", "")).startswith(PREFIX + "/"):
            wait = self.limiter.take(_bearer_key(scope))
            if wait > 0:
                body = json.dumps({"error": f"rate limit: too many requests for this token; retry in {retry_after(wait)} s"})
                await send(
                    {
                        "type": "http.response.start",
                        "status": 429,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"retry-after", retry_after(wait).encode()),
                            (b"content-length", str(len(body)).encode()),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": body.encode()})
                return
        await self.app(scope, receive, send)
