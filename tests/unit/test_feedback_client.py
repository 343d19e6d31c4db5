"""FeedbackClient against a real peer: the review API (FastAPI) served by uvicorn on a loopback
port, backed by an SQLite feedback store. Nothing is mocked; a test middleware only delays or
loses answers, the way a network does."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from tests.feedback_helpers import INSULT, count, feedback_settings, new_store, principal
from tests.postgres_helpers import free_port
from tiergate.client import FeedbackClient
from tiergate.errors import InputDataError
from tiergate.feedback.errors import Conflict, FeedbackError, Forbidden, StoreUnavailable, Unauthorized
from tiergate.feedback.models import Item
from tiergate.feedback.store import FeedbackStore
from tiergate.serving.review.api import api_app
from tiergate.taxonomy import Taxonomy

THRESHOLDS = {"harassment": 0.5, "spam": 0.7, "threats": 0.3}


@dataclass
class Network:
    """What the test middleware does to answers: lose the next N (503 after the server acted), or hold
    every request until `release` is set."""

    lose_next: int = 0
    release: threading.Event = field(default_factory=threading.Event)
    hold: bool = False
    seen_keys: list[str] = field(default_factory=list)


class Flaky:
    """ASGI middleware: the request reaches the real app; its answer may be lost or delayed."""

    def __init__(self, app: Any, network: Network):
        self.app, self.network = app, network

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        network = self.network
        while network.hold and not network.release.is_set():
            await asyncio.sleep(0.01)
        if network.lose_next <= 0:
            await self.app(scope, receive, send)
            return
        network.lose_next -= 1

        async def swallow(message: dict[str, Any]) -> None:
            pass  # the app stored the item; its answer never arrives

        await self.app(scope, receive, swallow)
        await send({"type": "http.response.start", "status": 503, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": b'{"error": "upstream lost the answer"}'})


@dataclass
class Service:
    url: str
    store: FeedbackStore
    network: Network
    tokens: dict[str, str]


@pytest.fixture
def service(tmp_path: Path, taxonomy: Taxonomy) -> Iterator[Service]:
    store = new_store(f"sqlite:///{tmp_path / 'feedback.db'}", taxonomy)
    tokens = {
        "submit": principal(store, "chat-service", "submit")[0],
        "review": principal(store, "alice", "review")[0],
    }
    network = Network()
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(Flaky(api_app(store), network), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield Service(f"http://127.0.0.1:{port}", store, network, tokens)
    finally:
        network.release.set()
        server.should_exit = True
        thread.join(timeout=30)
        store.close()


FAST = {"client_retry_base_delay_s": 0.01, "client_retry_max_delay_s": 0.05, "sample_rate": 1.0}


def client(
    service: Service, scope: str = "submit", thresholds: dict[str, float] | None = None, rng: Any = None, **settings: Any
) -> FeedbackClient:
    """A client with fast retries and every boundary prediction sampled; `scope` names a token or is a raw one."""
    return FeedbackClient(
        service.url,
        service.tokens.get(scope, scope),
        settings=feedback_settings(**{**FAST, **settings}),
        thresholds=thresholds,
        rng=rng,
    )


def test_submit_stores_an_item_and_a_replay_returns_it(service: Service) -> None:
    with client(service) as feedback:
        first = feedback.submit(
            INSULT,
            "general/message",
            predicted={"harassment": 0.41, "spam": 0.02},
            labels=["harassment"],
            reason="user report",
            reporter="user-123",
            idempotency_key="report-1",
        )
        again = feedback.submit(
            INSULT,
            "general/message",
            {"harassment": 0.41, "spam": 0.02},
            ["harassment"],
            "user report",
            "user-123",
            idempotency_key="report-1",
        )
        with pytest.raises(Conflict, match="used for different content"):
            feedback.submit("something else", "general/message", idempotency_key="report-1")
    assert first.created and not again.created and first.id == again.id
    stored = service.store.item(first.id)
    assert stored.claimed == {"harassment": "positive"} and stored.predicted["scores"]["harassment"] == 0.41
    assert stored.submitted_by == "chat-service" and stored.source == "report"
    assert count(service.store, Item) == 1


def test_a_lost_answer_is_retried_with_the_same_key_and_stores_one_item(service: Service) -> None:
    service.network.lose_next = 2  # the first two answers are lost after the server stored the item
    with client(service) as feedback:
        result = feedback.submit(INSULT, "general/message", labels={"harassment": "positive"}, source="appeal")
    assert result.created is False  # the third attempt found what the first one stored
    assert count(service.store, Item) == 1
    assert service.store.item(result.id).source == "appeal"


def test_retries_run_out_into_one_clear_error(service: Service) -> None:
    service.network.lose_next = 100
    with client(service, client_retries=2) as feedback, pytest.raises(StoreUnavailable, match="answered 503: upstream lost"):
        feedback.submit(INSULT, "general/message")
    assert service.network.lose_next == 97  # one try and two retries
    assert count(service.store, Item) == 1  # all three carried one key: one item


def test_labels_outside_the_taxonomy_are_refused_before_anything_is_sent(service: Service, taxonomy: Taxonomy) -> None:
    nowhere = FeedbackClient(f"http://127.0.0.1:{free_port()}", "tgf_unused", settings=feedback_settings(), taxonomy=taxonomy)
    for call, message in [
        (lambda c: c.submit(INSULT, "general/message", labels=["harasment"]), "did you mean 'harassment'"),
        (lambda c: c.submit(INSULT, "general/message", labels={"harassment": "yes"}), "use positive or negative"),
        (lambda c: c.submit(INSULT, "general/message", predicted={"toxicity": 0.9}), "'toxicity' is not a category"),
        (lambda c: c.submit(INSULT, "teen/message"), "unknown audience 'teen'"),
        (lambda c: c.submit("x" * 5000, "general/message"), "the limit is 4000"),
    ]:
        with pytest.raises(InputDataError, match=message):
            call(nowhere)  # a check, not a connection error: nothing listens there
    nowhere.close()
    with pytest.raises(InputDataError, match="must look like http"):
        FeedbackClient("ftp://review", "tgf_x")


def test_hostile_inputs_and_a_wrong_server_are_clear_errors_never_raw_exceptions(taxonomy: Taxonomy) -> None:
    """numpy/NaN scores, a lone surrogate, a token that cannot be a header, and a 200 that is not the
    API's answer used to escape as TypeError / ValueError / UnicodeEncodeError / JSONDecodeError."""
    import numpy as np

    sent: list[httpx.Request] = []

    def wrong_server(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, html="<html>please log in</html>")

    feedback = FeedbackClient(
        "http://review.test",
        "tgf_ok",
        settings=feedback_settings(**FAST),
        taxonomy=taxonomy,
        transport=httpx.MockTransport(wrong_server),
    )
    for call, message in [
        (lambda: feedback.submit(INSULT, "general/message", predicted={"harassment": float("nan")}), "harassment is nan"),
        (lambda: feedback.submit(INSULT, "general/message", predicted={"harassment": 1.5}), "a score lies in 0..1"),
        (lambda: feedback.submit(INSULT, "general/message", predicted={"harassment": "high"}), "not a number"),
        (lambda: feedback.submit(INSULT + " \ud800", "general/message"), "not valid UTF-8"),
    ]:
        with pytest.raises(InputDataError, match=message):
            call()
    assert sent == []  # refused before anything went out
    with pytest.raises(FeedbackError, match="answered 200 without an item"):
        feedback.submit(INSULT, "general/message", predicted={"harassment": np.float32(0.5)})
    assert b'"harassment":0.5' in sent[0].content.replace(b" ", b"")  # numpy's float32 sent as a number
    with pytest.raises(InputDataError, match="'harasment' is not a category"):  # was "'h' is not a category"
        feedback.submit(INSULT, "general/message", labels="harasment")
    with pytest.raises(FeedbackError, match="without an item"):
        feedback.submit(INSULT, "general/message", labels="harassment")
    assert b'"labels":{"harassment":"positive"}' in sent[-1].content.replace(b" ", b"")
    feedback.close()
    with pytest.raises(FeedbackError, match="this FeedbackClient is closed"):  # was httpx's RuntimeError
        feedback.submit(INSULT, "general/message")
    for token in ("tgf_a\nb", "tgf_é", "tgf_a b"):
        with pytest.raises(InputDataError, match="printable ASCII without spaces, as"):
            FeedbackClient("http://review.test", token, settings=feedback_settings(), taxonomy=taxonomy)


def test_unauthorised_and_malformed_requests_get_clear_errors(service: Service) -> None:
    with client(service, "tgf_not-a-real-token") as stranger, pytest.raises(Unauthorized, match=r"401.*unknown or revoked"):
        stranger.submit(INSULT, "general/message")
    with client(service, "review") as reviewer, pytest.raises(Forbidden, match=r"403.*needs 'submit'"):
        reviewer.submit(INSULT, "general/message")
    # a client whose own cap is larger: the server still applies its cap
    with client(service, max_text_chars=5000) as feedback, pytest.raises(InputDataError, match=r"422.*the limit is 4000"):
        feedback.submit("y" * 4500, "general/message")
    answer = httpx.post(
        f"{service.url}/api/v1/items", content=b"{not json", headers={"Authorization": f"Bearer {service.tokens['submit']}"}
    )
    assert answer.status_code == 422 and answer.json() == {"error": "request body is not JSON (UTF-8)"}
    answer = httpx.post(f"{service.url}/api/v1/items", json={"text": INSULT, "context": "general/message"})
    assert answer.status_code == 401 and answer.headers["www-authenticate"] == "Bearer"
    huge = httpx.post(
        f"{service.url}/api/v1/items",
        content=b"x" * (service.store.settings.max_request_bytes + 1),
        headers={"Authorization": f"Bearer {service.tokens['submit']}"},
    )
    assert huge.status_code == 413
    assert count(service.store, Item) == 0


def test_reviews_over_the_api(service: Service) -> None:
    with client(service) as feedback:
        item = feedback.submit(INSULT, "general/message").id
    headers = {"Authorization": f"Bearer {service.tokens['review']}"}
    answer = httpx.post(
        f"{service.url}/api/v1/items/{item}/reviews", json={"labels": {"harassment": "positive"}}, headers=headers
    )
    assert answer.status_code == 201 and answer.json()["review"]["labels"] == {"harassment": "positive"}
    again = httpx.post(f"{service.url}/api/v1/items/{item}/reviews", json={"labels": {"harassment": "negative"}}, headers=headers)
    assert again.status_code == 409
    assert httpx.get(f"{service.url}/api/v1/items/{item}", headers=headers).json()["item"]["text"] == INSULT
    assert httpx.get(f"{service.url}/api/v1/items/999", headers=headers).status_code == 404
    assert httpx.get(f"{service.url}/api/v1/health").json() == {"status": "ok"}


def test_log_prediction_sends_boundary_cases_in_the_background(service: Service) -> None:
    feedback = client(service, thresholds=THRESHOLDS, rng=random.Random(1))
    assert feedback.log_prediction(INSULT, "general/message", {"harassment": 0.52, "spam": 0.1, "threats": 0.0})
    assert not feedback.log_prediction("have a nice day", "general/message", {"harassment": 0.01, "spam": 0.1, "threats": 0.0})
    stats = feedback.close()
    assert (stats.sampled, stats.sent, stats.dropped, stats.failed, stats.pending) == (1, 1, 0, 0, 0)
    (item,) = service.store.items()
    assert item.source == "uncertainty" and item.text == INSULT and "harassment 0.520 (threshold 0.500)" in item.reason
    assert item.predicted["flags"] == ["harassment"]


def test_log_prediction_never_blocks_and_drops_and_counts_when_full(service: Service) -> None:
    service.network.hold = True  # the service stalls: the sender waits on its first request
    feedback = client(service, thresholds=THRESHOLDS, client_queue_size=1)
    scores = {"harassment": 0.5, "spam": 0.1, "threats": 0.0}
    started = time.monotonic()
    queued = [feedback.log_prediction(f"{INSULT} {index}", "general/message", scores) for index in range(50)]
    assert time.monotonic() - started < 0.5  # 50 calls, none waited on the stalled service
    stats = feedback.stats
    assert stats.sampled + stats.dropped == 50 and stats.sampled == sum(queued)
    assert stats.dropped >= 48  # a queue of one: one in flight, at most one waiting
    service.network.release.set()
    final = feedback.close()
    assert final.sent == final.sampled and final.failed == 0 and final.pending == 0
    assert count(service.store, Item) == final.sent


def test_close_gives_up_after_its_timeout(service: Service) -> None:
    service.network.hold = True
    feedback = client(service, thresholds=THRESHOLDS, client_timeout_s=30)
    feedback.log_prediction(INSULT, "general/message", {"harassment": 0.5, "spam": 0.1, "threats": 0.0})
    feedback.log_prediction(INSULT + "!", "general/message", {"harassment": 0.5, "spam": 0.1, "threats": 0.0})
    started = time.monotonic()
    stats = feedback.close(timeout_s=0.3)
    assert time.monotonic() - started < 2
    assert stats.sent == 0 and stats.sampled == 2
    assert not feedback.log_prediction(INSULT, "general/message", {"harassment": 0.5, "spam": 0.1, "threats": 0.0})
    assert feedback.stats.dropped == 1  # after close, nothing is queued
