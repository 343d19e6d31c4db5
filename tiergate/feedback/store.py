"""The feedback store's repository API: tokens, submissions, reviews, the audit trail.

Every write is one transaction that also appends its audit event: an item is stored with its audit
row, or nothing is and the caller gets an error. A submission's `(token, idempotency key)` is UNIQUE
in the database; a resubmission (a retry, a second thread) hits the constraint and gets the stored
item back. There is no read-then-write check to race: the constraint decides.

Callers get plain frozen views (`ItemView`, `ReviewView`, ...), never live ORM objects.
"""

from __future__ import annotations

import getpass
import hashlib
import re
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, case, func, select
from sqlalchemy.engine import URL
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload, sessionmaker

from tiergate.errors import InputDataError
from tiergate.feedback.db import database_errors, open_engine, redact
from tiergate.feedback.errors import Conflict, Forbidden, NotFound, StoreUnavailable, Unauthorized
from tiergate.feedback.limits import MAX_ID, NAME_CHARS
from tiergate.feedback.migrate import check_current
from tiergate.feedback.models import AuditEvent, Item, Review, ReviewLabel, Token, utcnow
from tiergate.feedback.schema import ReviewIn, Submission, check_review, check_submission
from tiergate.feedback.tokens import allows, new_token, parse_scopes, token_digest
from tiergate.records import Context
from tiergate.taxonomy import Taxonomy

if TYPE_CHECKING:
    from tiergate.profiles import FeedbackSettings

TOKEN_NAME = re.compile(rf"^[a-z0-9][a-z0-9._-]{{0,{NAME_CHARS - 1}}}$")


@dataclass(frozen=True)
class Principal:
    """Who is calling: a token that authenticated, with its scopes."""

    token_id: int
    name: str
    scopes: tuple[str, ...]

    @property
    def actor(self) -> str:
        return f"token:{self.name}"


@dataclass(frozen=True)
class TokenView:
    name: str
    scopes: tuple[str, ...]
    created_at: datetime
    created_by: str
    revoked: bool


@dataclass(frozen=True)
class ItemView:
    id: int
    text: str
    context: str
    source: str
    predicted: dict[str, Any]
    claimed: dict[str, str]
    reason: str
    reporter: str
    idempotency_key: str
    second_review: bool
    submitted_by: str
    created_at: datetime

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "text": self.text,
            "context": self.context,
            "source": self.source,
            "predicted": self.predicted,
            "labels": self.claimed,
            "reason": self.reason,
            "reporter": self.reporter,
            "idempotency_key": self.idempotency_key,
            "second_review": self.second_review,
            "submitted_by": self.submitted_by,
            "created_at": self.created_at.isoformat(),
        }


@dataclass(frozen=True)
class Submitted:
    item: ItemView
    created: bool  # False: the idempotency key was seen before and this is the item stored then


@dataclass(frozen=True)
class ReviewView:
    id: int
    item_id: int
    reviewer: str
    labels: dict[str, str]
    created_at: datetime


@dataclass(frozen=True)
class ReviewedItem:
    item: ItemView
    reviews: list[ReviewView] = field(default_factory=list)


@dataclass(frozen=True)
class AuditView:
    id: int
    at: datetime
    actor: str
    action: str
    target: str
    detail: dict[str, Any]


def cli_actor() -> str:
    """The audit name of a person at the CLI (who holds the database URL, hence admin rights)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"cli:{user}"[: NAME_CHARS + 8]


def _share_draw(*parts: str) -> float:
    """A stable number in [0, 1) from the parts: the same item always draws the same way."""
    return int(hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()[:12], 16) / 16**12


def _check_id(item_id: int) -> None:
    """An id no row can have is "no such item", not a database error (SQLite overflows, PostgreSQL
    answers out of range, which would read as a transient failure)."""
    if not 0 < item_id <= MAX_ID:
        raise NotFound(f"no item {item_id}")


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)  # SQLite returns naive UTC


def _item_view(item: Item, submitted_by: str) -> ItemView:
    return ItemView(
        id=item.id,
        text=item.text,
        context=f"{item.audience}/{item.surface}",
        source=item.source,
        predicted=dict(item.predicted),
        claimed=dict(item.claimed),
        reason=item.reason,
        reporter=item.reporter,
        idempotency_key=item.idempotency_key,
        second_review=item.second_review,
        submitted_by=submitted_by,
        created_at=_aware(item.created_at),
    )


def _review_view(review: Review) -> ReviewView:
    return ReviewView(
        id=review.id,
        item_id=review.item_id,
        reviewer=review.reviewer.name,
        labels={label.category: label.state for label in review.labels},
        created_at=_aware(review.created_at),
    )


class FeedbackStore:
    """One store on one database. Thread-safe: every call runs in its own session and transaction."""

    def __init__(self, engine: Engine, taxonomy: Taxonomy, settings: FeedbackSettings, check_schema: bool = True):
        self.engine = engine
        self.taxonomy = taxonomy
        self.settings = settings
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        if check_schema:
            with database_errors(engine.url):
                check_current(engine)

    @classmethod
    def open(cls, url: str | URL, taxonomy: Taxonomy | None = None, settings: FeedbackSettings | None = None) -> FeedbackStore:
        """A store on an existing, migrated database (`tiergate feedback init` makes one)."""
        from tiergate.feedback.db import default_settings
        from tiergate.taxonomy import load_taxonomy

        settings = settings or default_settings()
        return cls(open_engine(url, settings), taxonomy or load_taxonomy(), settings)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> FeedbackStore:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # --- transactions ---------------------------------------------------------------------------

    @contextmanager
    def _transaction(self) -> Iterator[Session]:
        with database_errors(self.engine.url), self._sessions.begin() as session:
            yield session

    def _audit(self, session: Session, actor: str, action: str, target: str, detail: Mapping[str, Any]) -> None:
        session.add(AuditEvent(at=utcnow(), actor=actor, action=action, target=target, detail=dict(detail)))

    # --- tokens ---------------------------------------------------------------------------------

    def create_token(self, name: str, scopes: Sequence[str], actor: str) -> tuple[str, TokenView]:
        """A new token; the raw secret is returned once and stored nowhere (only its digest is)."""
        if not TOKEN_NAME.match(name):
            raise InputDataError(f"token name {name!r} must be 1-{NAME_CHARS} of a-z 0-9 . _ - (starting with a letter or digit)")
        checked = parse_scopes(scopes)
        raw = new_token()
        try:
            with self._transaction() as session:
                token = Token(
                    name=name, token_sha256=token_digest(raw), scopes=",".join(checked), created_at=utcnow(), created_by=actor
                )
                session.add(token)
                session.flush()
                self._audit(session, actor, "token.create", f"token:{name}", {"scopes": list(checked)})
                view = TokenView(name, checked, _aware(token.created_at), actor, False)
        except IntegrityError:
            raise Conflict(f"a token named {name!r} exists; choose another name or revoke it first") from None
        return raw, view

    def revoke_token(self, name: str, actor: str) -> None:
        with self._transaction() as session:
            token = session.scalars(select(Token).where(Token.name == name)).one_or_none()
            if token is None:
                raise NotFound(f"no token named {name!r}")
            if token.revoked_at is None:
                token.revoked_at = utcnow()
                self._audit(session, actor, "token.revoke", f"token:{name}", {})

    def tokens(self) -> list[TokenView]:
        with self._transaction() as session:
            rows = session.scalars(select(Token).order_by(Token.name)).all()
            return [
                TokenView(
                    row.name, tuple(row.scopes.split(",")), _aware(row.created_at), row.created_by, row.revoked_at is not None
                )
                for row in rows
            ]

    def authenticate(self, raw: str | None, scope: str) -> Principal:
        """The caller behind a bearer token, if it holds `scope`; the token is never echoed."""
        if not raw or not raw.strip():
            raise Unauthorized("no token: send 'Authorization: Bearer <token>' (tiergate feedback token create makes one)")
        with self._transaction() as session:
            token = session.scalars(select(Token).where(Token.token_sha256 == token_digest(raw.strip()))).one_or_none()
            if token is None or token.revoked_at is not None:
                raise Unauthorized("unknown or revoked token")
            principal = Principal(token.id, token.name, tuple(token.scopes.split(",")))
        if not allows(principal.scopes, scope):
            raise Forbidden(f"token {principal.name!r} has scope {','.join(principal.scopes)}; this needs {scope!r}")
        return principal

    # --- items ----------------------------------------------------------------------------------

    def submit(self, principal: Principal, submission: Submission) -> Submitted:
        """Store one item, or return the one stored before under the same idempotency key."""
        if not allows(principal.scopes, "submit"):
            raise Forbidden(f"token {principal.name!r} may not submit items (scope {','.join(principal.scopes)})")
        checked = check_submission(self.taxonomy, submission, self.settings.max_text_chars, self.settings.max_reason_chars)
        key = checked.idempotency_key or uuid.uuid4().hex
        digest = checked.request_sha256
        second = _share_draw(principal.name, key, digest) < self.settings.second_review_share
        try:
            with self._transaction() as session:
                item = Item(
                    token_id=principal.token_id,
                    idempotency_key=key,
                    request_sha256=digest,
                    text=checked.text,
                    audience=checked.context.audience,
                    surface=checked.context.surface,
                    source=checked.source,
                    predicted=checked.predicted,
                    claimed=checked.claimed,
                    reason=checked.reason,
                    reporter=checked.reporter,
                    second_review=second,
                    created_at=utcnow(),
                )
                session.add(item)
                session.flush()  # the UNIQUE (token, key) constraint answers here
                detail = {"source": checked.source, "idempotency_key": key, "text_chars": len(checked.text)}
                self._audit(session, principal.actor, "item.submit", f"item:{item.id}", detail)
                view = _item_view(item, principal.name)
            return Submitted(view, True)
        except IntegrityError:
            existing = self._by_key(principal, key)
            if existing is None:
                raise StoreUnavailable(f"item not stored: a database constraint refused it ({redact(self.engine.url)})") from None
            if existing[1] != digest:
                raise Conflict(
                    f"idempotency key {key!r} was used for different content (item {existing[0].id}); use a new key"
                ) from None
            return Submitted(existing[0], False)

    def _by_key(self, principal: Principal, key: str) -> tuple[ItemView, str] | None:
        with self._transaction() as session:
            item = session.scalars(
                select(Item).where(Item.token_id == principal.token_id, Item.idempotency_key == key)
            ).one_or_none()
            return None if item is None else (_item_view(item, principal.name), item.request_sha256)

    def item(self, item_id: int) -> ItemView:
        _check_id(item_id)
        with self._transaction() as session:
            row = session.execute(
                select(Item, Token.name).join(Token, Item.token_id == Token.id).where(Item.id == item_id)
            ).first()
            if row is None:
                raise NotFound(f"no item {item_id}")
            return _item_view(row[0], row[1])

    def items(self) -> list[ItemView]:
        with self._transaction() as session:
            rows = session.execute(select(Item, Token.name).join(Token, Item.token_id == Token.id).order_by(Item.id)).all()
            return [_item_view(item, name) for item, name in rows]

    # --- reviews --------------------------------------------------------------------------------

    def review(self, principal: Principal, item_id: int, review: ReviewIn | Mapping[str, str]) -> ReviewView:
        """One reviewer's labels for an item; a second review by the same reviewer is refused."""
        if not allows(principal.scopes, "review"):
            raise Forbidden(f"token {principal.name!r} may not review items (scope {','.join(principal.scopes)})")
        _check_id(item_id)
        labels = check_review(self.taxonomy, review if isinstance(review, ReviewIn) else ReviewIn(labels=dict(review)))
        try:
            with self._transaction() as session:
                if session.get(Item, item_id) is None:
                    raise NotFound(f"no item {item_id}")
                row = Review(item_id=item_id, token_id=principal.token_id, created_at=utcnow())
                session.add(row)
                session.flush()
                session.add_all(ReviewLabel(review_id=row.id, category=name, state=state) for name, state in labels.items())
                self._audit(session, principal.actor, "review.create", f"item:{item_id}", {"review": row.id, "labels": labels})
                view = ReviewView(row.id, item_id, principal.name, labels, _aware(row.created_at))
        except IntegrityError:
            raise Conflict(f"{principal.name!r} has already reviewed item {item_id}") from None
        return view

    def reviewed_items(self) -> list[ReviewedItem]:
        """Every item with at least one review, reviews oldest first: the input of agreement and export."""
        with self._transaction() as session:
            items = session.scalars(
                select(Item)
                .where(Item.reviews.any())
                .options(
                    selectinload(Item.reviews).selectinload(Review.labels),
                    selectinload(Item.reviews).selectinload(Review.reviewer),
                )
                .order_by(Item.id)
            ).all()
            names = {token_id: name for token_id, name in session.execute(select(Token.id, Token.name))}
            return [
                ReviewedItem(_item_view(item, names[item.token_id]), [_review_view(r) for r in item.reviews]) for item in items
            ]

    def pending(self, reviewer: Principal | None = None, limit: int | None = None) -> list[ItemView]:
        """Items that still need a review (a second one for items drawn for it); with `reviewer`, not
        those they reviewed already. Boundary cases (source `uncertainty`) first, then oldest first."""
        reviews = select(func.count(Review.id)).where(Review.item_id == Item.id).correlate(Item).scalar_subquery()
        query = (
            select(Item, Token.name)
            .join(Token, Item.token_id == Token.id)
            .where(reviews < case((Item.second_review, 2), else_=1))
            .order_by(case((Item.source == "uncertainty", 0), else_=1), Item.id)
            .limit(limit)
        )
        if reviewer is not None:
            query = query.where(~Item.reviews.any(Review.token_id == reviewer.token_id))
        with self._transaction() as session:
            return [_item_view(item, name) for item, name in session.execute(query).all()]

    def ping(self) -> None:
        """One round trip to the database (health checks); raises StoreUnavailable when it fails."""
        with self._transaction() as session:
            session.execute(select(1))

    # --- audit ----------------------------------------------------------------------------------

    def audit_trail(self) -> list[AuditView]:
        with self._transaction() as session:
            rows = session.scalars(select(AuditEvent).order_by(AuditEvent.id)).all()
            return [AuditView(row.id, _aware(row.at), row.actor, row.action, row.target, dict(row.detail)) for row in rows]

    def record_event(self, actor: str, action: str, target: str, detail: Mapping[str, Any]) -> None:
        """An audit event on its own (an export, for instance)."""
        with self._transaction() as session:
            self._audit(session, actor, action, target, detail)


def item_context(item: ItemView, taxonomy: Taxonomy) -> Context:
    return Context.parse(item.context, taxonomy.contexts.audiences, taxonomy.contexts.surfaces)
