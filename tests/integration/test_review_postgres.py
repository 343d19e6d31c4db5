"""`tiergate review` on PostgreSQL, as the chart runs it: a real server from Debian's package, an empty
database that the command migrates up on start (the URL from TIERGATE_FEEDBACK_DB, as the Secret
sets it), then a login, a form post and the JSON API over real HTTP (uvicorn). No Triton: the pages
that need none are exercised, and the try-it page says in one line that Triton is unreachable."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.postgres_helpers import create_database
from tests.review_helpers import csrf_token
from tiergate.feedback.db import open_engine
from tiergate.feedback.migrate import current_revision, head_revision
from tiergate.feedback.store import FeedbackStore
from tiergate.profiles import load_profile
from tiergate.serving.server import free_port
from tiergate.taxonomy import Taxonomy

pytestmark = pytest.mark.slow


def test_review_service_migrates_an_empty_postgres_and_serves_reviews(
    postgres_server: str, taxonomy: Taxonomy, tmp_path: Path
) -> None:
    url = create_database(postgres_server)
    port = free_port()
    log = tmp_path / "review.log"
    dead_triton = f"http://127.0.0.1:{free_port()}"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "tiergate.cli.main", "review", "--port", str(port), "--triton-url", dead_triton],
            stdout=output,
            stderr=subprocess.STDOUT,
            env={**os.environ, "TIERGATE_FEEDBACK_DB": url},
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, log.read_text()[-2000:]
            try:
                if httpx.get(f"{base}/api/v1/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.3)
        settings = load_profile("local").feedback
        engine = open_engine(url, settings)
        assert current_revision(engine) == head_revision()  # migrated up from empty by the command itself
        store = FeedbackStore(engine, taxonomy, settings)
        reviewer, _ = store.create_token("alice", ["review"], "test")
        submitter, _ = store.create_token("chat-service", ["submit"], "test")

        with httpx.Client(base_url=base, timeout=30) as api:
            answer = api.post(
                "/api/v1/items",
                json={"text": "you are a useless idiot", "context": "general/message", "idempotency_key": "pg-1"},
                headers={"Authorization": f"Bearer {submitter}"},
            )
            assert answer.status_code == 201, answer.text
            item = answer.json()["item"]["id"]

        with httpx.Client(base_url=base, timeout=30) as browser:
            login = browser.get("/login?next=/queue")
            answer = browser.post("/login", data={"csrf_token": csrf_token(login.text), "next": "/queue", "token": reviewer})
            assert answer.status_code == 303 and answer.headers["location"] == "/queue"
            queue = browser.get("/queue")
            assert f'data-item="{item}"' in queue.text
            token = csrf_token(queue.text)
            labels = {"csrf_token": token, "action": "correct", "label.harassment": "positive"}
            answer = browser.post(f"/queue/{item}", data=labels)
            assert answer.status_code == 303
            tried = browser.post("/try", data={"csrf_token": token, "text": "hello", "audience": "general", "surface": "message"})
            assert tried.status_code == 502 and re.search(r"Triton: .*not reachable", tried.text)
            assert browser.post(f"/queue/{item}", data={"action": "skip"}).status_code == 403  # no CSRF token
        (entry,) = store.reviewed_items()
        assert entry.item.id == item and entry.reviews[0].labels == {"harassment": "positive"}
        assert [event.action for event in store.audit_trail()][-2:] == ["session.login", "review.create"]
        store.close()
    finally:
        process.terminate()
        process.wait(timeout=20)
    assert reviewer not in log.read_text() and submitter not in log.read_text()  # tokens are never logged
