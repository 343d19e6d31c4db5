"""`tiergate feedback ...`: create and migrate the feedback store, manage tokens, submit and review
from scripts, export reviewed items as a dataset, and report reviewer agreement.

The database URL comes from `--db` or `TIERGATE_FEEDBACK_DB` and is printed only with its password
masked. Whoever holds the URL administers the store (tokens are created with it); writes of items
and reviews still need a token (`--token` or `TIERGATE_FEEDBACK_TOKEN`), so the audit trail names them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer

from tiergate.cli.options import OverwriteOption, ProfileOption

app = typer.Typer(
    help="The feedback store: reported and reviewed items, tokens, export back into training.", no_args_is_help=True
)
token_app = typer.Typer(help="Bearer tokens (stored hashed; the secret is shown once).", no_args_is_help=True)
app.add_typer(token_app, name="token")

TOKEN_ENV = "TIERGATE_FEEDBACK_TOKEN"
DbOption = Annotated[
    str | None,
    typer.Option(
        "--db", help="Database URL: sqlite:///PATH (or a bare path) or postgresql://... (default: $TIERGATE_FEEDBACK_DB)."
    ),
]
TokenOption = Annotated[
    str | None, typer.Option("--token", help=f"Bearer token (default: ${TOKEN_ENV}; prefer the variable: flags show in ps).")
]
LabelOption = Annotated[
    list[str] | None,
    typer.Option("--label", "-l", help="A category by name, NAME (positive) or NAME=positive|negative (repeatable)."),
]


def _store(db: str | None, profile: str) -> Any:
    from tiergate.feedback.db import open_engine, resolve_url
    from tiergate.feedback.store import FeedbackStore
    from tiergate.profiles import load_profile
    from tiergate.taxonomy import load_taxonomy

    settings = load_profile(profile).feedback
    return FeedbackStore(open_engine(resolve_url(db), settings), load_taxonomy(), settings)


def _token(value: str | None) -> str:
    from tiergate.feedback.errors import Unauthorized

    token = value or os.environ.get(TOKEN_ENV, "")
    if not token.strip():
        raise Unauthorized(f"no token: pass --token or set {TOKEN_ENV} (tiergate feedback token create makes one)")
    return token.strip()


def _labels(values: list[str] | None) -> dict[str, str]:
    labels: dict[str, str] = {}
    for value in values or []:
        name, _, state = value.partition("=")
        labels[name.strip()] = state.strip() or "positive"
    return labels


@app.command("init")
def init(db: DbOption = None, profile: ProfileOption = "local") -> None:
    """Create the store, or migrate an existing one up to this version's schema (safe to repeat)."""
    from tiergate.feedback.db import open_engine, redact, resolve_url
    from tiergate.feedback.migrate import upgrade
    from tiergate.profiles import load_profile

    url = resolve_url(db)
    engine = open_engine(url, load_profile(profile).feedback, create=True)
    try:
        revision = upgrade(engine)
    finally:
        engine.dispose()
    typer.echo(f"feedback store {redact(url)} is at schema revision {revision}")


@token_app.command("create")
def token_create(
    name: Annotated[str, typer.Option("--name", help="Who holds it: a service or a person (a-z 0-9 . _ -).")],
    scope: Annotated[list[str], typer.Option("--scope", help="submit (services), review (people), admin; repeatable.")],
    db: DbOption = None,
    profile: ProfileOption = "local",
) -> None:
    """Make a token and print it once on stdout (only its sha256 is stored: it cannot be shown again)."""
    from tiergate.feedback.store import cli_actor

    with _store(db, profile) as store:
        raw, view = store.create_token(name, scope, cli_actor())
    typer.echo(f"token {view.name!r} with scope {','.join(view.scopes)}: shown once, store it now", err=True)
    typer.echo(raw)


@token_app.command("list")
def token_list(db: DbOption = None, profile: ProfileOption = "local") -> None:
    """Token names, scopes, who made them and when (never a secret)."""
    with _store(db, profile) as store:
        for view in store.tokens():
            state = "revoked" if view.revoked else "active"
            typer.echo(f"{view.name}\t{','.join(view.scopes)}\t{state}\t{view.created_at.isoformat()}\t{view.created_by}")


@token_app.command("revoke")
def token_revoke(
    name: Annotated[str, typer.Option("--name", help="The token to revoke.")],
    db: DbOption = None,
    profile: ProfileOption = "local",
) -> None:
    """Revoke a token: every later call with it is refused (401)."""
    from tiergate.feedback.store import cli_actor

    with _store(db, profile) as store:
        store.revoke_token(name, cli_actor())
    typer.echo(f"token {name!r} revoked")


@app.command("submit")
def submit(
    text: Annotated[str, typer.Argument(help="The text (quote it).")],
    context: Annotated[str, typer.Option("--context", help="AUDIENCE/SURFACE, e.g. general/message.")] = "general/message",
    label: LabelOption = None,
    source: Annotated[str, typer.Option("--source", help="report | override | appeal | uncertainty.")] = "report",
    reason: Annotated[str, typer.Option("--reason", help="Why it is sent.")] = "",
    reporter: Annotated[str, typer.Option("--reporter", help="Who reported it (an id, not a name).")] = "",
    key: Annotated[str | None, typer.Option("--key", help="Idempotency key: the same key twice stores one item.")] = None,
    url: Annotated[str | None, typer.Option("--url", help="The review service (http(s)://HOST[:PORT]); else --db.")] = None,
    db: DbOption = None,
    token: TokenOption = None,
    profile: ProfileOption = "local",
) -> None:
    """Send one item to the review queue, over HTTP (--url) or straight into the store (--db)."""
    from tiergate.feedback.schema import Submission, parse_model
    from tiergate.profiles import load_profile

    raw = _token(token)
    labels = _labels(label)
    if url:
        from tiergate.feedback_client import FeedbackClient

        with FeedbackClient(url, raw, settings=load_profile(profile).feedback) as client:
            result = client.submit(
                text, context, labels=labels, reason=reason, reporter=reporter, idempotency_key=key, source=source
            )
        item_id, created = result.id, result.created
    else:
        body = {"text": text, "context": context, "labels": labels, "source": source, "reason": reason, "reporter": reporter}
        submission = parse_model(Submission, {**body, "idempotency_key": key}, "item")
        with _store(db, profile) as store:
            stored = store.submit(store.authenticate(raw, "submit"), submission)
        item_id, created = stored.item.id, stored.created
    typer.echo(f"item {item_id} {'stored' if created else 'already stored under this key'}")


@app.command("review")
def review(
    item: Annotated[int, typer.Argument(help="The item id.")],
    label: LabelOption = None,
    db: DbOption = None,
    token: TokenOption = None,
    profile: ProfileOption = "local",
) -> None:
    """Label an item (scripting; people use the review UI): categories not named stay unknown."""
    with _store(db, profile) as store:
        stored = store.review(store.authenticate(_token(token), "review"), item, _labels(label))
    typer.echo(
        f"review {stored.id} of item {item} by {stored.reviewer}: " + ", ".join(f"{k}={v}" for k, v in stored.labels.items())
    )


@app.command("export")
def export(
    out: Annotated[Path, typer.Option("--out", help="Dataset folder to write (records.jsonl, manifest.json, ...).")],
    db: DbOption = None,
    min_agreement: Annotated[
        float | None, typer.Option("--min-agreement", help="Leave out items reviewers agree on less (default: the profile's).")
    ] = None,
    overwrite: OverwriteOption = False,
    profile: ProfileOption = "local",
) -> None:
    """Reviewed items as a dataset for `tiergate data merge` (source `human`, partial labels)."""
    from tiergate.feedback.export import export_feedback
    from tiergate.feedback.store import cli_actor

    shown = str(out).encode("utf-8", "backslashreplace").decode("utf-8")  # a path of undecodable bytes stays printable
    with _store(db, profile) as store:
        report = export_feedback(store, out, min_agreement, overwrite)
        store.record_event(cli_actor(), "export", shown[:128], {"exported": report["exported"], "left_out": report["left_out"]})
    left = ", ".join(f"{count} {reason.replace('_', ' ')}" for reason, count in report["left_out"].items() if count) or "none"
    typer.echo(f"exported {report['exported']} of {report['reviewed_items']} reviewed items to {shown} (left out: {left})")


@app.command("kappa")
def kappa(
    db: DbOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    profile: ProfileOption = "local",
) -> None:
    """Cohen's kappa per category over the items two reviewers labelled (first two reviews)."""
    from tiergate.feedback.agreement import category_kappa

    with _store(db, profile) as store:
        reviewed = store.reviewed_items()
        table = category_kappa([[r.labels for r in entry.reviews] for entry in reviewed], store.taxonomy.labels)
    if as_json:
        typer.echo(json.dumps({name: value.as_dict() for name, value in table.items()}, indent=2, sort_keys=True))
        return
    measured = {name: value for name, value in table.items() if value.pairs}
    if not measured:
        typer.echo("no category has been reviewed twice yet")
        return
    typer.echo("category\tpairs\tobserved\tkappa")
    for name, value in measured.items():
        shown = "n/a" if value.kappa is None else f"{value.kappa:.3f}"
        typer.echo(f"{name}\t{value.pairs}\t{value.observed:.3f}\t{shown}")
