"""CSRF protection for every form the review pages post.

- Logged in: a synchronizer token kept in the server-side session and written into each form; a post
  whose `csrf_token` field is missing or differs is refused (403, one line).
- The login form (no session yet): a double-submit pair. GET /login sets a cookie holding a random
  nonce signed with the app's secret and writes the same value into the form; POST /login must carry
  both, equal, with a valid signature. The cookies are SameSite=Strict besides.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from tiergate.errors import TiergateError

FIELD = "csrf_token"
LOGIN_COOKIE = "tiergate_login_csrf"
NONCE_BYTES = 32


class CsrfRefused(TiergateError):
    """A form post without the right CSRF token (403)."""

    status = 403

    def __init__(self) -> None:
        super().__init__("refused: the form's CSRF token is missing or wrong; reload the page and submit it again")


def check(expected: str, given: str | None) -> None:
    if not given or not hmac.compare_digest(expected.encode("utf-8"), given.encode("utf-8")):
        raise CsrfRefused()


class LoginCsrf:
    """Signed double-submit values for the login form: `nonce.signature`."""

    def __init__(self, secret: bytes):
        self._secret = secret

    def _sign(self, nonce: str) -> str:
        return hmac.new(self._secret, nonce.encode("ascii"), hashlib.sha256).hexdigest()

    def issue(self) -> str:
        nonce = secrets.token_urlsafe(NONCE_BYTES)
        return f"{nonce}.{self._sign(nonce)}"

    def verify(self, cookie: str | None, form: str | None) -> None:
        if not cookie or not form:
            raise CsrfRefused()
        check(cookie, form)
        nonce, _, signature = cookie.partition(".")
        if not nonce.isascii() or not hmac.compare_digest(self._sign(nonce), signature):
            raise CsrfRefused()
