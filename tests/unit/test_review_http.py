"""The review service over HTTP (FastAPI's TestClient on the real app, SQLite store, a stand-in for
Triton): login and sessions, CSRF, rate limits, scopes, escaping, the queue's actions, the pages."""

from __future__ import annotations

import html
import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.feedback_helpers import submission
from tests.review_helpers import FLASH, Service, csrf_token, logged_in, login, service
from tiergate.feedback.errors import StoreUnavailable
from tiergate.paths import PROJECT_ROOT
from tiergate.serving.review.csrf import LoginCsrf
from tiergate.serving.review.pages import PAGES, SESSION_COOKIE
from tiergate.taxonomy import Taxonomy

PREDICTED = {"scores": {"harassment": 0.81, "threats": 0.12}, "flags": ["harassment"]}


@pytest.fixture
def svc(tmp_path: Path, taxonomy: Taxonomy) -> Service:
    return service(tmp_path, taxonomy)


def queue_item(svc: Service, text: str = "you are a useless idiot", **fields: object) -> int:
    return svc.store.submit(svc.submit_principal, submission(text, **fields)).item.id


# --- login and sessions ---------------------------------------------------------------------------


@pytest.mark.parametrize("page", PAGES)
def test_an_unauthenticated_page_redirects_to_the_login(svc: Service, page: str) -> None:
    answer = TestClient(svc.app).get(page, follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == f"/login?next={page}"


def test_login_sets_an_httponly_strict_cookie_that_does_not_hold_the_token(svc: Service) -> None:
    client = TestClient(svc.app)
    answer = login(client, svc.reviewer, "/try")
    assert answer.status_code == 303 and answer.headers["location"] == "/try"
    cookie = next(value for value in answer.headers.get_list("set-cookie") if value.startswith(SESSION_COOKIE + "="))
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Secure" not in cookie  # plain HTTP here
    assert svc.reviewer not in cookie and svc.reviewer[4:20] not in cookie
    assert client.get("/try").status_code == 200
    audit = [event for event in svc.store.audit_trail() if event.action == "session.login"]
    assert [event.actor for event in audit] == ["token:alice"]
    assert svc.reviewer not in str(svc.store.audit_trail())


def test_cookies_are_secure_behind_tls_or_when_asked(tmp_path: Path, taxonomy: Taxonomy) -> None:
    for mode, base in (("auto", "https://testserver"), ("always", "http://testserver")):
        svc = service(tmp_path / mode, taxonomy, cookie_secure=mode)
        answer = login(TestClient(svc.app, base_url=base), svc.reviewer)
        cookies = answer.headers.get_list("set-cookie")
        assert all("Secure" in cookie for cookie in cookies), (mode, cookies)


def test_a_token_without_the_review_scope_is_refused(svc: Service) -> None:
    client = TestClient(svc.app)
    answer = login(client, svc.submitter)
    assert answer.status_code == 403
    assert "token 'chat-service' has scope submit; this needs 'review'" in html.unescape(answer.text)
    assert SESSION_COOKIE not in answer.headers.get("set-cookie", "")
    assert client.get("/queue", follow_redirects=False).status_code == 303
    unknown = login(client, "tgf_" + "x" * 43)
    assert unknown.status_code == 401 and "unknown or revoked token" in unknown.text


def test_a_revoked_token_ends_its_session_and_logout_ends_it_too(svc: Service) -> None:
    client = logged_in(svc.app, svc.reviewer)
    svc.store.revoke_token("alice", "test")
    answer = client.get("/queue", follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"].startswith("/login")
    other = logged_in(svc.app, svc.other_reviewer)
    page = other.get("/queue")
    assert other.post("/logout", data={"csrf_token": csrf_token(page.text)}, follow_redirects=False).status_code == 303
    assert other.get("/queue", follow_redirects=False).status_code == 303


def test_login_redirects_only_to_the_apps_own_pages(svc: Service) -> None:
    client = TestClient(svc.app)
    page = client.get("/login?next=https://evil.example/")
    assert 'name="next" value="/queue"' in page.text
    answer = client.post(
        "/login",
        data={"csrf_token": csrf_token(page.text), "next": "//evil.example/", "token": svc.reviewer},
        follow_redirects=False,
    )
    assert answer.headers["location"] == "/queue"


# --- CSRF -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("given", [None, "", "wrong"])
def test_a_form_post_without_the_sessions_csrf_token_is_refused(svc: Service, given: str | None) -> None:
    item = queue_item(svc, predicted=PREDICTED)
    client = logged_in(svc.app, svc.reviewer)
    form = {} if given is None else {"csrf_token": given}
    for path, data in (
        ("/try", {**form, "text": "hello there", "audience": "general", "surface": "message"}),
        (f"/queue/{item}", {**form, "action": "confirm"}),
        ("/logout", form),
    ):
        answer = client.post(path, data=data, follow_redirects=False)
        assert answer.status_code == 403, path
        assert answer.text == "refused: the form's CSRF token is missing or wrong; reload the page and submit it again\n"
    assert svc.store.reviewed_items() == [] and svc.classifier.calls == []


def test_login_needs_its_signed_double_submit_pair(svc: Service) -> None:
    client = TestClient(svc.app)
    page = client.get("/login")
    value = csrf_token(page.text)
    client.cookies.clear()
    answer = client.post("/login", data={"csrf_token": value, "token": svc.reviewer}, follow_redirects=False)
    assert answer.status_code == 403 and "CSRF" in answer.text  # the form's value alone, without its cookie
    forged = LoginCsrf(b"another secret").issue()  # a pair made without the app's secret
    client.cookies.set("tiergate_login_csrf", forged, path="/login")
    answer = client.post("/login", data={"csrf_token": forged, "token": svc.reviewer}, follow_redirects=False)
    assert answer.status_code == 403 and SESSION_COOKIE not in answer.headers.get("set-cookie", "")


# --- rate limits ----------------------------------------------------------------------------------


def test_form_posts_beyond_the_tokens_bucket_get_429_with_retry_after(tmp_path: Path, taxonomy: Taxonomy) -> None:
    svc = service(tmp_path, taxonomy, rate_limit_burst=3, rate_limit_per_minute=1)
    client = logged_in(svc.app, svc.reviewer)
    token = csrf_token(client.get("/try").text)
    form = {"csrf_token": token, "text": "hello there", "audience": "general", "surface": "message"}
    assert [client.post("/try", data=form).status_code for _ in range(3)] == [200, 200, 200]
    answer = client.post("/try", data=form)
    assert answer.status_code == 429 and int(answer.headers["retry-after"]) >= 1
    assert answer.text.startswith("rate limit: too many requests for this token")
    assert len(svc.classifier.calls) == 3
    # per token: another reviewer is not held back by alice's bucket
    other = logged_in(svc.app, svc.other_reviewer)
    assert other.post("/try", data={**form, "csrf_token": csrf_token(other.get("/try").text)}).status_code == 200


def test_api_posts_beyond_the_tokens_bucket_get_429_json(tmp_path: Path, taxonomy: Taxonomy) -> None:
    svc = service(tmp_path, taxonomy, api_rate_limit_burst=2, api_rate_limit_per_minute=1)
    client = TestClient(svc.app)
    headers = {"Authorization": f"Bearer {svc.submitter}"}
    body = {"text": "you are a useless idiot", "context": "general/message"}
    statuses = [
        client.post("/api/v1/items", json={**body, "idempotency_key": f"k{i}"}, headers=headers).status_code for i in range(3)
    ]
    assert statuses == [201, 201, 429]
    answer = client.post("/api/v1/items", json=body, headers=headers)
    assert answer.status_code == 429 and answer.headers["retry-after"].isdigit()
    assert answer.json()["error"].startswith("rate limit")
    other = {"Authorization": f"Bearer {svc.reviewer}"}  # a different token has its own bucket (and here the wrong scope)
    assert client.post("/api/v1/items", json=body, headers=other).status_code == 403


def test_login_attempts_are_limited_per_client_address(tmp_path: Path, taxonomy: Taxonomy) -> None:
    svc = service(tmp_path, taxonomy, login_rate_limit_burst=2, login_rate_limit_per_minute=1)
    client = TestClient(svc.app)
    assert [login(client, "tgf_wrong").status_code for _ in range(2)] == [401, 401]
    answer = login(client, svc.reviewer)
    assert answer.status_code == 429 and "retry-after" in answer.headers
    assert answer.text.startswith("rate limit: too many requests for logins from this address;")  # not "this token"


# --- escaping and input ---------------------------------------------------------------------------


def test_a_queued_script_is_shown_escaped_never_run(svc: Service) -> None:
    hostile = '<script>alert("x")</script> you are a useless idiot <img src=x onerror=alert(1)>'
    queue_item(svc, hostile, reason="<b>bold</b>", reporter="<i>r</i>")
    page = logged_in(svc.app, svc.reviewer).get("/queue")
    assert page.status_code == 200
    assert "<script>alert" not in page.text and "<img src=x" not in page.text and "<b>bold" not in page.text
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page.text and "&lt;img src=x onerror=alert(1)&gt;" in page.text
    assert re.findall(r"<script[^>]*>", page.text) == ['<script src="/static/review.js" defer>']
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp and "frame-ancestors 'none'" in csp


def test_try_it_shows_scores_flags_and_routing_and_escapes_the_text(svc: Service) -> None:
    client = logged_in(svc.app, svc.reviewer)
    token = csrf_token(client.get("/try").text)
    answer = client.post("/try", data={"csrf_token": token, "text": "<b>you idiot</b>", "audience": "adult", "surface": "bio"})
    assert answer.status_code == 200 and svc.classifier.calls == [("<b>you idiot</b>", "adult/bio")]
    assert "&lt;b&gt;you idiot&lt;/b&gt;" in answer.text and "<b>you idiot" not in answer.text
    assert re.search(r'id="routing">T3 exploitation harm<', answer.text)
    assert re.search(r'id="flags">harassment<', answer.text) and "0.930" in answer.text
    bad = client.post("/try", data={"csrf_token": token, "text": "hi", "audience": "teen", "surface": "bio"})
    assert bad.status_code == 422 and "teen" in bad.text
    long = client.post("/try", data={"csrf_token": token, "text": "a" * 4001, "audience": "general", "surface": "bio"})
    assert long.status_code == 422 and "the limit is 4000" in long.text


def test_oversized_or_non_form_posts_are_refused(svc: Service) -> None:
    client = logged_in(svc.app, svc.reviewer)
    token = csrf_token(client.get("/try").text)
    big = client.post("/try", data={"csrf_token": token, "text": "a" * 70000, "audience": "general", "surface": "bio"})
    assert big.status_code == 413
    assert client.post("/try", json={"csrf_token": token}).status_code == 415


def test_hostile_api_bodies_and_ids_get_one_line_never_a_500(svc: Service) -> None:
    """Lone surrogates (valid JSON escapes), JSON nested past the parser's depth and ids beyond any
    row were 500s with a traceback in the log; each is one line with a 4xx now."""
    client = TestClient(svc.app, raise_server_exceptions=False)
    submitter = {"Authorization": f"Bearer {svc.submitter}", "content-type": "application/json"}
    reviewer = {"Authorization": f"Bearer {svc.reviewer}", "content-type": "application/json"}
    for body, message in [
        (b'{"text": "you are a useless idiot \\ud800", "context": "general/message"}', "text is not valid UTF-8"),
        (b'{"text": "you idiot", "context": "general/message", "reason": "\\udc00"}', "reason is not valid UTF-8"),
        (b"[" * 30000 + b"]" * 30000, "request body is not JSON"),
    ]:
        answer = client.post("/api/v1/items", content=body, headers=submitter)
        assert answer.status_code == 422 and message in answer.json()["error"], answer.text
    deep = client.post(f"/api/v1/items/{queue_item(svc)}/reviews", content=b"[" * 30000 + b"]" * 30000, headers=reviewer)
    assert deep.status_code == 422
    huge = 10**22
    assert client.get(f"/api/v1/items/{huge}", headers=reviewer).json() == {"error": f"no item {huge}"}
    review = client.post(f"/api/v1/items/{huge}/reviews", json={"labels": {"harassment": "positive"}}, headers=reviewer)
    assert review.status_code == 404
    page = logged_in(svc.app, svc.reviewer)
    token = csrf_token(page.get("/queue").text)
    for action in ("confirm", "correct"):
        answer = page.post(f"/queue/{huge}", data={"csrf_token": token, "action": action, "label.harassment": "positive"})
        assert answer.status_code == 404 and answer.text == f"no item {huge}\n"
    assert svc.store.items()[-1].text == "you are a useless idiot" and len(svc.store.items()) == 1


def test_the_store_away_is_one_503_line_on_every_page_and_never_names_the_database(
    svc: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pages used to answer 500 (a traceback in the log) when the store failed while checking the
    session, and the login and health answers showed anyone the database's user, host and name."""
    client = logged_in(svc.app, svc.reviewer)
    token = csrf_token(client.get("/queue").text)

    def away(*_args: object, **_kwargs: object) -> None:
        raise StoreUnavailable("feedback database postgresql+psycopg://reviewer:***@db.internal:5432/feedback: refused")

    for name in ("authenticate", "pending", "reviewed_items", "review", "ping", "record_event"):
        monkeypatch.setattr(svc.store, name, away)
    client = TestClient(svc.app, raise_server_exceptions=False, cookies=client.cookies)
    form = {"csrf_token": token, "action": "skip", "text": "hi", "audience": "general", "surface": "bio"}
    answers = [client.get(page, follow_redirects=False) for page in PAGES]
    answers += [client.post(page, data=form, follow_redirects=False) for page in ("/queue/1", "/try", "/logout")]
    anonymous = TestClient(svc.app, raise_server_exceptions=False)
    answers.append(login(anonymous, svc.reviewer))
    answers.append(anonymous.get("/api/v1/health"))
    headers = {"Authorization": f"Bearer {svc.submitter}"}
    answers.append(anonymous.post("/api/v1/items", json={"text": "hi", "context": "general/message"}, headers=headers))
    for answer in answers:
        assert answer.status_code == 503, (answer.request.url, answer.status_code, answer.text)
        assert "the feedback database is unavailable" in answer.text and "db.internal" not in answer.text


# --- the queue ------------------------------------------------------------------------------------


def test_confirm_labels_what_the_model_decided_and_correct_labels_the_form(svc: Service) -> None:
    first = queue_item(svc, "you are a useless idiot", predicted=PREDICTED)
    second = queue_item(svc, "see you at the cafe on friday", predicted=PREDICTED)
    client = logged_in(svc.app, svc.reviewer)
    page = client.get("/queue")
    assert f'data-item="{first}"' in page.text
    assert 'data-key="y"' in page.text and 'data-key="c"' in page.text and 'data-key="s"' in page.text
    assert "<kbd>Y</kbd>" in page.text  # the shortcuts are shown on the page
    token = csrf_token(page.text)
    answer = client.post(f"/queue/{first}", data={"csrf_token": token, "action": "confirm"})
    assert FLASH.search(answer.text).group(1) == f"item {first} confirmed: harassment positive, 1 negative"  # type: ignore[union-attr]
    assert f'data-item="{second}"' in answer.text
    labels = {"label.harassment": "negative", "label.threats": "unknown", "label.spam": "positive"}
    client.post(f"/queue/{second}", data={"csrf_token": token, "action": "correct", **labels})
    reviews = {entry.item.id: entry.reviews[0].labels for entry in svc.store.reviewed_items()}
    assert reviews == {
        first: {"harassment": "positive", "threats": "negative"},
        second: {"harassment": "negative", "spam": "positive"},
    }
    assert 'id="empty"' in client.get("/queue").text


def test_skip_shows_the_next_item_and_skipped_items_come_back(svc: Service) -> None:
    first, second = queue_item(svc, "first text here"), queue_item(svc, "second text here")
    client = logged_in(svc.app, svc.reviewer)
    token = csrf_token(client.get("/queue").text)
    page = client.post(f"/queue/{first}", data={"csrf_token": token, "action": "skip"})
    assert f'data-item="{second}"' in page.text and "1 skipped" in page.text
    page = client.post(f"/queue/{second}", data={"csrf_token": token, "action": "skip"})
    assert 'id="empty"' in page.text
    page = client.post("/queue/skipped", data={"csrf_token": token})
    assert f'data-item="{first}"' in page.text and svc.store.reviewed_items() == []


@pytest.mark.parametrize(
    ("form", "status", "message"),
    [
        ({"action": "correct", "label.harasment": "positive"}, 422, "did you mean 'harassment'?"),
        ({"action": "correct", "label.harassment": "maybe"}, 422, "use positive or negative"),
        ({"action": "correct"}, 422, "a review labels at least one category"),
        ({"action": "confirm"}, 422, "carries no model prediction to confirm"),
        ({"action": "delete"}, 422, "action must be one of confirm, correct, skip"),
    ],
)
def test_bad_reviews_are_refused_by_name_with_one_line(svc: Service, form: dict[str, str], status: int, message: str) -> None:
    item = queue_item(svc)  # no prediction
    client = logged_in(svc.app, svc.reviewer)
    answer = client.post(f"/queue/{item}", data={"csrf_token": csrf_token(client.get("/queue").text), **form})
    assert answer.status_code == status and message in answer.text and answer.text.count("\n") == 1
    assert svc.store.reviewed_items() == []


def test_a_second_review_by_the_same_reviewer_is_a_conflict(svc: Service) -> None:
    item = queue_item(svc, predicted=PREDICTED)
    client = logged_in(svc.app, svc.reviewer)
    token = csrf_token(client.get("/queue").text)
    first = client.post(f"/queue/{item}", data={"csrf_token": token, "action": "confirm"}, follow_redirects=False)
    assert first.status_code == 303
    again = client.post(f"/queue/{item}", data={"csrf_token": token, "action": "confirm"})
    assert again.status_code == 409 and "has already reviewed item" in again.text


def test_hover_text_is_each_categorys_definition_and_boundary(svc: Service, taxonomy: Taxonomy) -> None:
    queue_item(svc, predicted=PREDICTED)
    page = logged_in(svc.app, svc.reviewer).get("/queue").text
    for tier in sorted(taxonomy.tiers):
        assert f"T{tier} · " in page
    category = taxonomy.category("harassment")
    title = re.search(r'<span class="name" title="([^"]*)">harassment</span>', page)
    assert title and category.definition.strip()[:40] in title.group(1).replace("&#39;", "'")
    assert "Not this: " in title.group(1)
    assert page.count('type="radio"') == 3 * len(taxonomy.labels)


# --- disagreements and agreement ------------------------------------------------------------------


def test_disagreements_and_kappa_pages(svc: Service) -> None:
    alice = svc.store.authenticate(svc.reviewer, "review")
    bob = svc.store.authenticate(svc.other_reviewer, "review")
    for index, (a, b) in enumerate([("positive", "negative"), ("positive", "positive"), ("negative", "negative")]):
        item = queue_item(svc, f"text number {index} here")
        svc.store.review(alice, item, {"harassment": a})
        svc.store.review(bob, item, {"harassment": b})
    client = logged_in(svc.app, svc.reviewer)
    page = client.get("/disagreements").text
    assert "text number 0 here" in page and "text number 1 here" not in page
    assert "alice: <b class=\"state-positive\">positive</b> · bob: <b class=\"state-negative\">negative</b>" in page
    agreement = client.get("/agreement").text
    cells = r'data-category="harassment">.*?<td>(\d+)</td>\s*<td>([\d.]+)</td>\s*<td class="kappa">([^<]+)<'
    row = re.search(cells, agreement, re.S)
    assert row and row.groups() == ("3", "0.67", "0.40")
    assert "3 reviewed item(s), 3 with two or more reviews" in agreement


def test_health_probes_and_static_files(svc: Service) -> None:
    client = TestClient(svc.app)
    assert client.get("/healthz").text == "alive\n"
    assert client.get("/api/v1/health").json() == {"status": "ok"}
    script = client.get("/static/review.js")
    assert script.status_code == 200 and "data-key" in script.text and "http" not in script.text.lower()
    assert "cache-control" not in script.headers or "no-store" not in script.headers["cache-control"]
    assert client.get("/login").headers["cache-control"] == "no-store"


def test_the_pages_ship_in_the_package_and_load_nothing_from_elsewhere() -> None:
    pyproject = (PROJECT_ROOT / "pyproject.toml").read_text()
    assert '"tiergate.serving.review" = ["templates/*.html", "static/*.css", "static/*.js"]' in pyproject
    folder = PROJECT_ROOT / "serving" / "review"
    files = [*folder.glob("templates/*.html"), *folder.glob("static/*")]
    assert {path.suffix for path in files} == {".html", ".css", ".js"}
    for path in files:
        assert not re.search(r"https?://|//[a-z]", path.read_text()), f"{path.name} refers to another origin"


# --- the parts on their own -----------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_refills_at_its_rate_per_key_and_bounds_its_memory() -> None:
    from tiergate.serving.review.ratelimit import TokenBucketLimiter, retry_after

    clock = Clock()
    limiter = TokenBucketLimiter(per_minute=6, burst=2, max_keys=3, clock=clock)
    assert [limiter.take("a"), limiter.take("a")] == [0.0, 0.0]
    assert limiter.take("a") == pytest.approx(10.0) and retry_after(limiter.take("a")) == "10"
    assert limiter.take("b") == 0.0  # its own bucket
    clock.now += 10
    assert limiter.take("a") == 0.0 and limiter.take("a") > 0
    for key in "cdefg":
        limiter.take(key)
    assert len(limiter._buckets) == 3


def test_sessions_expire_when_idle_or_old_and_the_oldest_goes_past_the_cap() -> None:
    from tiergate.serving.review.sessions import SessionStore

    clock = Clock()
    sessions = SessionStore(idle_s=10, max_s=25, max_sessions=2, clock=clock)
    first, session = sessions.create("tgf_secret", "alice")
    assert "tgf_secret" not in repr(session) and session.csrf not in repr(session)
    for _ in range(3):
        clock.now += 8
        assert sessions.get(first) is session  # used within the idle time
    clock.now += 2
    assert sessions.get(first) is None  # 26 s old: past max_s
    idle, _ = sessions.create("t", "bob")
    clock.now += 11
    assert sessions.get(idle) is None
    ids = [sessions.create("t", f"r{i}")[0] for i in range(3)]
    assert sessions.get(ids[0]) is None and sessions.get(ids[2]) is not None and len(sessions) == 2
    assert sessions.get(None) is None and sessions.get("forged") is None


def test_the_login_pair_is_refused_when_tampered() -> None:
    from tiergate.serving.review.csrf import CsrfRefused

    pair = LoginCsrf(b"k" * 32)
    value = pair.issue()
    pair.verify(value, value)
    nonce, _, signature = value.partition(".")
    for cookie, form in ((value, value + "x"), (None, value), (value, None), (f"x{nonce}.{signature}",) * 2, ("é.x",) * 2):
        with pytest.raises(CsrfRefused):
            pair.verify(cookie, form)


def test_review_command_refuses_a_bad_triton_url_and_a_missing_database(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from tiergate.cli.main import app

    runner = CliRunner()
    answer = runner.invoke(app, ["review", "--db", f"sqlite:///{tmp_path}/f.db", "--triton-url", "http://h/path"])
    assert answer.exit_code != 0 and "has a path or query" in str(answer.exception)
    assert not (tmp_path / "f.db").exists()  # refused before the store is touched
    answer = runner.invoke(app, ["review"], env={"TIERGATE_FEEDBACK_DB": ""})
    assert "no feedback database" in str(answer.exception)
    assert "--cookie-secure" in runner.invoke(app, ["review", "--help"]).output


def test_review_command_says_in_one_line_when_it_cannot_listen(tmp_path: Path) -> None:
    """A port in use (or a host not of this machine) was uvicorn's exit 3 after the 'review service on' banner."""
    import socket

    from typer.testing import CliRunner

    from tiergate.cli.main import app
    from tiergate.errors import InputDataError

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        answer = CliRunner().invoke(app, ["review", "--db", f"sqlite:///{tmp_path}/f.db", "--port", port])
    assert isinstance(answer.exception, InputDataError), (answer.exit_code, answer.output)
    assert str(answer.exception) == f"cannot listen on 127.0.0.1:{port}: Address already in use"
    assert "review service on" not in answer.output


def test_make_review_points_the_review_service_at_what_make_serve_serves() -> None:
    """`make review` runs `tiergate serve` on runs/latest and `tiergate review` against its HTTP port."""
    import inspect

    from tiergate.cli.serve_cmd import serve

    makefile = (PROJECT_ROOT / "Makefile").read_text()
    recipe = makefile.split("\nreview:", 1)[1].split("\n\n", 1)[0]
    port = inspect.signature(serve).parameters["http_port"].default
    assert "$(TIERGATE) serve --model-repo runs/latest/model_repository &" in recipe
    assert f"$(TIERGATE) review --db \"$(REVIEW_DB)\" --triton-url http://127.0.0.1:{port}" in recipe
    assert "kill $$serve" in recipe  # the background server goes when the review service does
    assert "REVIEW_DB ?= sqlite:///runs/feedback.db" in makefile
