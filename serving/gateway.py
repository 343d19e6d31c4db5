"""The serving front door: a small aiohttp reverse proxy in front of Triton's HTTP port.

Triton cannot restrict inference per model, cap a request body or report a dead python stub in
its health endpoints (issue 15), so the one public HTTP port is this proxy:

- only health, server metadata and the ensemble (`GET /v2/models/<model>[/versions/<v>][/ready|/config]`,
  `POST .../infer`) are public; everything else (the inner models, repository and model control,
  logging, trace, statistics, shared memory) needs the header `tiergate-admin: <key>`, else 403;
- a body over `max_request_bytes` gets 413 (Content-Length checked first; a chunked body is counted
  as it arrives and never held beyond the cap); compressed request bodies get 415 (a small gzip
  body could inflate past the cap inside Triton; every Content-Encoding value is checked);
- a body not read whole within `body_timeout_s` gets 408 and the connection is closed; over
  `max_connections` requests in flight at once, the next gets 503 (a slow sender holds at most
  `max_connections` x `max_request_bytes` for at most `body_timeout_s`);
- every path segment is checked before use (no '..', no encoded slashes, no odd model names);
- `GET /tiergate/health/ready|live` answer 200/503 from the canary health check (`HealthMonitor`):
  what Kubernetes probes call;
- upstream answers pass through with their status; an unreachable upstream is a one-line 502;
- stopping: the listener closes first, requests in flight get their answers (bounded by the stop
  timeout), then the event loop ends with no pending task.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import re
import threading
from dataclasses import dataclass
from typing import Literal

import aiohttp
from aiohttp import web

from tiergate.errors import ServerError
from tiergate.serving.health import HealthState, base_url, valid_model_name
from tiergate.serving.server import ADMIN_HEADER

log = logging.getLogger(__name__)

DEFAULT_MAX_REQUEST_BYTES = 4 * 1024 * 1024
DEFAULT_BODY_TIMEOUT_S = 30.0
DEFAULT_MAX_CONNECTIONS = 64
SEGMENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
DROP_REQUEST = HOP_BY_HOP | {"host", "content-length", "accept-encoding", ADMIN_HEADER}
DROP_RESPONSE = HOP_BY_HOP | {"content-length", "server", "date"}
PUBLIC_SERVER_PATHS = {("v2",), ("v2", "health", "live"), ("v2", "health", "ready")}
Access = Literal["public", "admin"]


@dataclass(frozen=True)
class GatewayConfig:
    upstream: str  # Triton's HTTP, host:port (loopback)
    model: str  # the ensemble: the only model clients may reach without the admin header
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    admin_key: str | None = None  # None or empty: admin routes closed
    upstream_timeout_s: float = 120.0
    body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S  # the whole body must arrive within this: else 408
    max_connections: int = DEFAULT_MAX_CONNECTIONS  # requests in flight at once: the next gets 503

    def __post_init__(self) -> None:
        if not valid_model_name(self.model):
            raise ServerError(f"invalid model name {self.model[:40]!r}")
        if self.max_request_bytes < 1:
            raise ServerError("--max-request-bytes must be at least 1")
        if self.body_timeout_s <= 0:
            raise ServerError("--body-timeout-s must be > 0")
        if self.max_connections < 1:
            raise ServerError("--max-connections must be at least 1")


def access(method: str, segments: tuple[str, ...], model: str) -> Access:
    """Public for health, server metadata and the ensemble's metadata/ready/config/infer; admin otherwise."""
    if method == "HEAD":  # public wherever GET is (no body either way)
        method = "GET"
    if method == "GET" and segments in PUBLIC_SERVER_PATHS:
        return "public"
    if segments[:3] != ("v2", "models", model):
        return "admin"
    tail = segments[3:]
    if tail[:1] == ("versions",) and len(tail) >= 2:
        tail = tail[2:]
    if method == "GET" and tail in ((), ("ready",), ("config",)):
        return "public"
    if method == "POST" and tail == ("infer",):
        return "public"
    return "admin"


def _error(status: int, message: str) -> web.Response:
    response = web.json_response({"error": message}, status=status)
    if status in (408, 413, 415, 503):  # the rest of the body is never read (nor decoded), the connection closes
        response.force_close()
    return response


class Gateway:
    def __init__(self, config: GatewayConfig, health: HealthState | None = None):
        self.config = config
        self.health = health
        self.upstream = base_url(config.upstream)
        self._session: aiohttp.ClientSession | None = None
        self.in_flight = 0  # proxied requests being handled now (one event loop: no lock needed)

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self.config.max_request_bytes)
        app.router.add_get("/tiergate/health/ready", self.ready)
        app.router.add_get("/tiergate/health/live", self.live)
        app.router.add_route("*", "/{tail:.*}", self.proxy)
        app.cleanup_ctx.append(self._client)
        return app

    async def _client(self, app: web.Application):  # type: ignore[no-untyped-def]
        timeout = aiohttp.ClientTimeout(total=self.config.upstream_timeout_s, connect=5.0)
        async with aiohttp.ClientSession(timeout=timeout, auto_decompress=False) as session:
            self._session = session
            yield

    async def ready(self, request: web.Request) -> web.Response:
        ok = self.health is not None and self.health.ready
        detail = self.health.detail if self.health is not None else "no health monitor"
        return web.json_response({"ready": ok, "detail": detail}, status=200 if ok else 503)

    async def live(self, request: web.Request) -> web.Response:
        ok = self.health is not None and self.health.live
        detail = self.health.detail if self.health is not None else "no health monitor"
        return web.json_response({"live": ok, "detail": detail}, status=200 if ok else 503)

    def _admin(self, request: web.Request) -> bool:
        given, key = request.headers.get(ADMIN_HEADER), self.config.admin_key
        if not given or not key:
            return False
        return hmac.compare_digest(given.encode("utf-8", "replace"), key.encode("utf-8"))

    async def _body(self, request: web.Request) -> bytes | web.Response:
        cap = self.config.max_request_bytes
        if request.content_length is not None and request.content_length > cap:
            return _error(413, f"request body of {request.content_length} bytes is over the limit of {cap}")
        body = bytearray()
        try:
            async with asyncio.timeout(self.config.body_timeout_s):
                async for chunk in request.content.iter_chunked(64 * 1024):
                    body += chunk
                    if len(body) > cap:
                        return _error(413, f"request body is over the limit of {cap} bytes")
        except TimeoutError:
            return _error(408, f"request body not received within {self.config.body_timeout_s:g}s")
        return bytes(body)

    async def proxy(self, request: web.Request) -> web.StreamResponse:
        if self.in_flight >= self.config.max_connections:
            return _error(503, f"busy: {self.config.max_connections} requests in flight already; retry later")
        self.in_flight += 1
        try:
            return await self._proxy(request)
        finally:
            self.in_flight -= 1

    async def _proxy(self, request: web.Request) -> web.StreamResponse:
        raw_path = request.raw_path.split("?", 1)[0]
        segments = tuple(raw_path.split("/")[1:])
        if not segments or not all(SEGMENT.fullmatch(part) and ".." not in part for part in segments):
            return _error(400, "invalid path: names may use letters, digits, '_', '-' and '.' only")
        admin = self._admin(request)
        if access(request.method, segments, self.config.model) == "admin" and not admin:
            if segments[:2] == ("v2", "models") and len(segments) > 2 and segments[2] != self.config.model:
                return _error(
                    403,
                    f"forbidden: {segments[2][:40]!r} is not the public model; the public model here is {self.config.model!r} "
                    "(the others are admin-only)",
                )
            shown = "/" + "/".join(segments)
            shown = shown if len(shown) <= 100 else shown[:97] + "..."  # never echo more than a short prefix
            return _error(403, f"forbidden: {request.method} {shown} needs the {ADMIN_HEADER} header")
        values = request.headers.getall("Content-Encoding", [])  # every header line, every listed coding
        if any(item.strip().lower() not in ("identity", "") for value in values for item in value.split(",")):
            return _error(415, "compressed request bodies are not accepted")
        body = await self._body(request)
        if isinstance(body, web.Response):
            return body
        headers = {name: value for name, value in request.headers.items() if name.lower() not in DROP_REQUEST}
        headers["Accept-Encoding"] = "identity"
        if admin and self.config.admin_key:
            headers[ADMIN_HEADER] = self.config.admin_key  # Triton's own restricted APIs check the same key
        query = request.rel_url.raw_query_string
        url = f"{self.upstream}{raw_path}" + (f"?{query}" if query else "")
        assert self._session is not None
        try:
            async with self._session.request(request.method, url, data=body, headers=headers, allow_redirects=False) as upstream:
                payload = await upstream.read()
                kept = {name: value for name, value in upstream.headers.items() if name.lower() not in DROP_RESPONSE}
                return web.Response(status=upstream.status, body=payload, headers=kept)
        except TimeoutError:
            return _error(504, f"upstream {self.config.upstream} did not answer within {self.config.upstream_timeout_s:g}s")
        except aiohttp.ClientError as error:
            return _error(502, f"upstream {self.config.upstream} unreachable: {type(error).__name__}")


class GatewayServer:
    """The gateway on its own event loop in a thread: `start()` returns once it listens (or raises ServerError).

    `stop()` closes the listener at once, lets requests in flight finish (up to `drain_timeout_s`),
    then ends the loop with `asyncio.run`'s own clean-up: no task is left pending.
    """

    def __init__(
        self, config: GatewayConfig, host: str, port: int, health: HealthState | None = None, drain_timeout_s: float = 20.0
    ):
        self.gateway = Gateway(config, health)
        self.host, self.port = host, port
        self.drain_timeout_s = drain_timeout_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._listening = threading.Event()
        self._error: OSError | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"{self.host}:{self.port}"

    async def _serve(self) -> None:
        self._loop, self._stopping = asyncio.get_running_loop(), asyncio.Event()
        runner = web.AppRunner(self.gateway.app(), access_log=None, handle_signals=False, shutdown_timeout=self.drain_timeout_s)
        await runner.setup()
        try:
            try:
                site = web.TCPSite(runner, self.host, self.port)
                await site.start()
            except OSError as error:
                self._error = error
                return
            if self.port == 0:
                self.port = int(runner.addresses[0][1])
            self._listening.set()
            await self._stopping.wait()
        finally:
            self._listening.set()
            try:
                await runner.cleanup()  # listener closed, in-flight requests answered (bounded), then the client session
            except Exception as error:  # stopping never raises: the process is on its way out
                log.warning("gateway cleanup: %s", error)

    def _main(self) -> None:
        try:
            asyncio.run(self._serve())
        except Exception as error:  # never a traceback from the gateway's thread
            self._error = self._error or OSError(str(error))
            self._listening.set()
            log.warning("gateway: %s", error)

    def start(self) -> GatewayServer:
        self._thread = threading.Thread(target=self._main, name="tiergate-gateway", daemon=True)
        self._thread.start()
        if not self._listening.wait(30) or self._error is not None:
            error = self._error
            self.stop()
            detail = (error.strerror or str(error)) if error is not None else "not listening after 30s"
            raise ServerError(f"the gateway cannot listen on {self.host}:{self.port}: {detail}")
        log.info("gateway on http://%s -> %s (model %s)", self.url, self.gateway.upstream, self.gateway.config.model)
        return self

    def stop(self, timeout_s: float | None = None) -> None:
        """Close the listener, answer the requests in flight (up to the drain timeout), end the loop."""
        if self._thread is None:
            return
        loop, stopping = self._loop, self._stopping
        if loop is not None and stopping is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop ended on its own meanwhile
                loop.call_soon_threadsafe(stopping.set)
        self._thread.join((timeout_s if timeout_s is not None else self.drain_timeout_s) + 10.0)
        self._thread = None

    def __enter__(self) -> GatewayServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
