"""Reading a page's form post: `application/x-www-form-urlencoded` only, the body capped before it is
all read, one value per field (a repeated field is malformed, not silently the first or the last)."""

from __future__ import annotations

from urllib.parse import parse_qsl

from fastapi import Request

from tiergate.errors import InputDataError
from tiergate.serving.review.api import read_capped

FORM_TYPE = "application/x-www-form-urlencoded"
MAX_FIELDS = 200  # the queue form's fields: one per category plus a few; far above what any page posts


class NotAForm(InputDataError):
    status = 415


async def read_form(request: Request, limit: int) -> dict[str, str]:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    declared = request.headers.get("content-length")
    if not content_type and declared in (None, "0"):
        return {}  # an empty post (a bare button): a form with no fields, refused later for what it lacks
    if content_type != FORM_TYPE:
        raise NotAForm(f"expected a form ({FORM_TYPE}), got {content_type or 'no content type'}")
    body = await read_capped(request, limit, what="form")
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False, max_num_fields=MAX_FIELDS)
    except UnicodeDecodeError:
        raise InputDataError("form is not UTF-8") from None
    except ValueError:
        raise InputDataError(f"form has more than {MAX_FIELDS} fields") from None
    form: dict[str, str] = {}
    for key, value in pairs:
        if key in form:
            raise InputDataError(f"form field {key[:40]!r} is given twice")
        form[key] = value
    return form
