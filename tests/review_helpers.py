"""Shared by the review service's tests: a store with tokens, the app on it, a logged-in client."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.feedback_helpers import feedback_settings, new_store
from tiergate.client import Classification
from tiergate.feedback.store import FeedbackStore, Principal
from tiergate.serving.review.app import ReviewConfig, review_app
from tiergate.taxonomy import Taxonomy

CSRF = re.compile(r'name="csrf_token" value="([^"]*)"')
FLASH = re.compile(r'id="flash">([^<]*)<')


class FakeClassifier:
    """Stands in for the Triton client in HTTP tests (the browser test uses a real Triton)."""

    url = "http://triton.test:8000"
    model_version = "fake-1"

    def __init__(self, taxonomy: Taxonomy):
        self.labels = taxonomy.labels
        self.calls: list[tuple[str, str]] = []

    def classify(self, text: str, context: str) -> Classification:
        self.calls.append((text, context))
        scores = {name: 0.01 for name in self.labels} | {"harassment": 0.93}
        return Classification(text, context, scores, ["harassment"], 3, False)

    def close(self) -> None:
        pass


@dataclass
class Service:
    store: FeedbackStore
    app: FastAPI
    classifier: FakeClassifier
    reviewer: str  # raw tokens
    other_reviewer: str
    submitter: str
    submit_principal: Principal


def service(tmp_path: Path, taxonomy: Taxonomy, cookie_secure: str = "auto", **settings: Any) -> Service:
    store = new_store(f"sqlite:///{tmp_path / 'feedback.db'}", taxonomy, feedback_settings(**settings))
    reviewer, _ = store.create_token("alice", ["review"], "test")
    other, _ = store.create_token("bob", ["review"], "test")
    submitter, _ = store.create_token("chat-service", ["submit"], "test")
    classifier = FakeClassifier(taxonomy)
    app = review_app(store, ReviewConfig(classifier.url, cookie_secure), classifier)  # type: ignore[arg-type]  # a str mode
    return Service(store, app, classifier, reviewer, other, submitter, store.authenticate(submitter, "submit"))


def csrf_token(html: str) -> str:
    found = CSRF.search(html)
    assert found, "no CSRF field on the page"
    return found.group(1)


def login(client: TestClient, token: str, next_page: str = "/queue") -> Any:
    page = client.get(f"/login?next={next_page}")
    return client.post(
        "/login", data={"csrf_token": csrf_token(page.text), "next": next_page, "token": token}, follow_redirects=False
    )


def logged_in(app: FastAPI, token: str, base_url: str = "http://testserver") -> TestClient:
    client = TestClient(app, base_url=base_url)
    answer = login(client, token)
    assert answer.status_code == 303, answer.text
    return client
