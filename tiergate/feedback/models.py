"""The feedback store's tables (SQLAlchemy 2 ORM). The schema itself is built by the Alembic
migrations in `tiergate/feedback/migrations/`, never by `create_all`: these classes must match
them (tests compare the two).

- `tokens`: who may write; only a sha256 of the secret is stored.
- `items`: one text someone reported, appealed, overrode or the client sampled near a threshold.
  `(token_id, idempotency_key)` is UNIQUE: a retried submission finds the first, never a second row.
- `reviews` + `review_labels`: one reviewer's verdict on an item, per category by name
  (positive/negative); a category without a row stays unknown.
- `audit_events`: append-only (database triggers refuse UPDATE and DELETE).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import JSON, DateTime, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from tiergate.feedback.limits import (
    ACTION_CHARS,
    CATEGORY_CHARS,
    KEY_CHARS,
    NAME_CHARS,
    REPORTER_CHARS,
    SCOPES_CHARS,
    TARGET_CHARS,
)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSON}


class Token(Base):
    __tablename__ = "tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_CHARS), unique=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[str] = mapped_column(String(SCOPES_CHARS))  # comma-joined, sorted
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    created_by: Mapped[str] = mapped_column(String(NAME_CHARS))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class Item(Base):
    __tablename__ = "items"
    __table_args__ = (UniqueConstraint("token_id", "idempotency_key", name="uq_items_token_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_id: Mapped[int] = mapped_column(ForeignKey("tokens.id"))
    idempotency_key: Mapped[str] = mapped_column(String(KEY_CHARS))
    request_sha256: Mapped[str] = mapped_column(String(64))  # a replay with other content is refused, not merged
    text: Mapped[str] = mapped_column(Text)
    audience: Mapped[str] = mapped_column(String(NAME_CHARS))
    surface: Mapped[str] = mapped_column(String(NAME_CHARS))
    source: Mapped[str] = mapped_column(String(16))
    predicted: Mapped[dict[str, Any]] = mapped_column(JSON)  # {"scores": {name: float}, "flags": [name, ...]}
    claimed: Mapped[dict[str, Any]] = mapped_column(JSON)  # the submitter's labels {name: positive|negative}: a claim
    reason: Mapped[str] = mapped_column(Text)
    reporter: Mapped[str] = mapped_column(String(REPORTER_CHARS))
    second_review: Mapped[bool] = mapped_column(default=False)  # drawn for a second, independent review
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    reviews: Mapped[list[Review]] = relationship(back_populates="item", order_by="Review.id")


class Review(Base):
    __tablename__ = "reviews"
    __table_args__ = (UniqueConstraint("item_id", "token_id", name="uq_reviews_item_reviewer"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id"))
    token_id: Mapped[int] = mapped_column(ForeignKey("tokens.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    item: Mapped[Item] = relationship(back_populates="reviews")
    labels: Mapped[list[ReviewLabel]] = relationship(order_by="ReviewLabel.category")
    reviewer: Mapped[Token] = relationship()


class ReviewLabel(Base):
    __tablename__ = "review_labels"

    review_id: Mapped[int] = mapped_column(ForeignKey("reviews.id"), primary_key=True)
    category: Mapped[str] = mapped_column(String(CATEGORY_CHARS), primary_key=True)
    state: Mapped[str] = mapped_column(String(8))  # positive | negative


class AuditEvent(Base):
    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    actor: Mapped[str] = mapped_column(String(NAME_CHARS + 8))  # token:<name> or cli:<user>
    action: Mapped[str] = mapped_column(String(ACTION_CHARS))
    target: Mapped[str] = mapped_column(String(TARGET_CHARS))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON)
