"""`tiergate review`: the review service (pages for reviewers, the JSON API for services) on the
feedback store, against a live Triton ensemble for the try-it page. Migrates the store up on start."""

from __future__ import annotations

import socket
from enum import StrEnum
from typing import Annotated

import typer

from tiergate.cli.feedback_cmd import DbOption
from tiergate.cli.options import ProfileOption


def listen(host: str, port: int) -> socket.socket:
    """The listening socket, bound before anything says the service is up: an address in use or a
    host that is not this machine's is one line (exit 2), not uvicorn's exit 3 after a banner."""
    from tiergate.errors import InputDataError

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        raise InputDataError(f"cannot listen on {host}:{port}: {error.strerror or error}") from None
    return sock


class CookieSecureMode(StrEnum):
    auto = "auto"
    always = "always"
    never = "never"


def review(
    db: DbOption = None,
    triton_url: Annotated[
        str,
        typer.Option("--triton-url", help="The Triton ensemble for the try-it page: http(s)://HOST[:PORT] (a gateway)."),
    ] = "http://127.0.0.1:8000",
    host: Annotated[str, typer.Option("--host", help="Address to listen on (0.0.0.0: all interfaces).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on.", min=1, max=65535)] = 8080,
    cookie_secure: Annotated[
        CookieSecureMode,
        typer.Option("--cookie-secure", help="Secure session cookies: auto (when the request came over TLS), always, never."),
    ] = CookieSecureMode.auto,
    forwarded_allow_ips: Annotated[
        str | None,
        typer.Option(
            "--forwarded-allow-ips",
            help="Proxies whose X-Forwarded-For/-Proto to trust (comma-separated IPs or networks): the client address "
            "for login limits and the scheme for Secure cookies. Default: trust none.",
        ),
    ] = None,
    profile: ProfileOption = "local",
) -> None:
    """Serve the review service: try it, the review queue, disagreements, agreement, and /api/v1.

    Log in with a token of scope review (tiergate feedback token create --name YOU --scope review).
    Ctrl-C or SIGTERM stops it.
    """
    import uvicorn

    from tiergate.feedback.db import open_engine, redact, resolve_url
    from tiergate.feedback.migrate import upgrade
    from tiergate.feedback.store import FeedbackStore
    from tiergate.profiles import load_profile
    from tiergate.serving.review.app import ReviewConfig, review_app
    from tiergate.serving.review.triton import TritonClassifier
    from tiergate.taxonomy import load_taxonomy

    settings = load_profile(profile).feedback
    url = resolve_url(db)
    taxonomy = load_taxonomy()
    classifier = TritonClassifier(triton_url, settings.triton_timeout_s, taxonomy.labels)  # refuses a malformed URL first
    engine = open_engine(url, settings, create=True)
    try:
        revision = upgrade(engine)
    finally:
        engine.dispose()
    sock = listen(host, port)
    store = FeedbackStore(open_engine(url, settings), taxonomy, settings)
    app = review_app(store, ReviewConfig(triton_url, cookie_secure.value), classifier)
    shown_host = f"[{host}]" if ":" in host else host
    typer.echo(f"feedback store {redact(url)} at schema revision {revision}; try-it classifies with {classifier.url}", err=True)
    typer.echo(
        f"review service on http://{shown_host}:{port}; log in with a token of scope review "
        f"(tiergate feedback token create --name YOU --scope review --db {redact(url)})",
        err=True,
    )
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        proxy_headers=forwarded_allow_ips is not None,
        forwarded_allow_ips=forwarded_allow_ips,
        server_header=False,
        log_level="info",
    )
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
        store.close()
