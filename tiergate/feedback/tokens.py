"""Bearer tokens: random secrets shown once, stored only as a sha256 digest.

A token is 32 random bytes (URL-safe text) behind a recognisable prefix, so a leaked one is easy to
grep for. A fast hash is right here: the secret is random, not a password, so there is nothing to
guess from the digest (scrypt would only slow every request). Scopes: `submit` (services send
items), `review` (people label them), `admin` (everything, and tokens).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable

from tiergate.errors import InputDataError

SCOPES = ("submit", "review", "admin")
ADMIN = "admin"
PREFIX = "tgf_"
SECRET_BYTES = 32  # 256 bits: a property of the token format, not a tunable


def new_token() -> str:
    return PREFIX + secrets.token_urlsafe(SECRET_BYTES)


def token_digest(raw: str) -> str:
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


def parse_scopes(values: Iterable[str]) -> tuple[str, ...]:
    """Sorted, unique, known scopes; an unknown one is an error naming the known ones."""
    scopes = sorted({value.strip().lower() for value in values if value.strip()})
    unknown = [scope for scope in scopes if scope not in SCOPES]
    if unknown:
        raise InputDataError(f"unknown scope {unknown[0]!r}; known: {', '.join(SCOPES)}")
    if not scopes:
        raise InputDataError(f"a token needs at least one scope: {', '.join(SCOPES)}")
    return tuple(scopes)


def allows(scopes: Iterable[str], needed: str) -> bool:
    """`admin` may do anything; otherwise the scope itself is needed."""
    held = set(scopes)
    return needed in held or ADMIN in held
