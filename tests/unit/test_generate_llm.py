"""The API generators against HTTP-level fakes (httpx2/httpx MockTransport): real SDK, real parsing."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest

from tiergate.components.generate.anthropic_backend import AnthropicBackend, make_client
from tiergate.components.generate.base import Outcome
from tiergate.components.generate.llm import LLMGenerator, ResponseCache
from tiergate.components.generate.openai_backend import OpenAICompatibleBackend
from tiergate.components.generate.plan import chunk_requests, plan_category
from tiergate.components.generate.step import generate_category, make_generator
from tiergate.errors import GenerationError
from tiergate.profiles import load_profile
from tiergate.taxonomy import GenerationCounts, Taxonomy

COUNTS = GenerationCounts(positives=6, hard_negatives=3, innocuous=0)


def _answer(prompt: str) -> str:
    """A well-formed answer: as many examples as the prompt lists contexts."""
    lines = [line for line in prompt.splitlines() if line[:1].isdigit() and ". " in line]
    return json.dumps({"examples": [f"example {i} for {prompt[10:30]!r}" for i, _ in enumerate(lines)]})


def _message(text: str, stop_reason: str = "end_turn") -> dict[str, Any]:
    return {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-test",
        "content": [{"type": "text", "text": text}],
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {"input_tokens": 1, "output_tokens": 1},
    }


def _batch(batch_id: str, status: str, count: int) -> dict[str, Any]:
    return {
        "id": batch_id,
        "type": "message_batch",
        "processing_status": status,
        "request_counts": {
            "processing": count if status != "ended" else 0,
            "succeeded": count if status == "ended" else 0,
            "errored": 0,
            "canceled": 0,
            "expired": 0,
        },
        "ended_at": None,
        "created_at": "2026-11-25T00:00:00Z",
        "expires_at": "2026-11-26T00:00:00Z",
        "archived_at": None,
        "cancel_initiated_at": None,
        "results_url": f"https://api.anthropic.com/v1/messages/batches/{batch_id}/results" if status == "ended" else None,
    }


class FakeAnthropic:
    """Enough of the Messages and Message Batches HTTP API to exercise the SDK end to end."""

    def __init__(self, behaviour: dict[int, str] | None = None):
        self.behaviour = behaviour or {}  # request position -> "refuse" | "malformed" | "errored"
        self.calls: Counter[str] = Counter()
        self.batches: dict[str, list[dict[str, Any]]] = {}
        self.polls = 0

    def handler(self, request: httpx2.Request) -> httpx2.Response:
        path = request.url.path
        if request.method == "POST" and path == "/v1/messages/batches":
            self.calls["create"] += 1
            body = json.loads(request.content)
            batch_id = f"msgbatch_{len(self.batches) + 1}"
            self.batches[batch_id] = body["requests"]
            return httpx2.Response(200, json=_batch(batch_id, "in_progress", len(body["requests"])))
        if request.method == "GET" and path.endswith("/results"):
            self.calls["results"] += 1
            batch_id = path.split("/")[-2]
            lines = []
            for position, item in enumerate(self.batches[batch_id]):
                behaviour = self.behaviour.get(position)
                prompt = item["params"]["messages"][0]["content"]
                if behaviour == "errored":
                    result: dict[str, Any] = {
                        "type": "errored",
                        "error": {"type": "error", "error": {"type": "api_error", "message": "boom"}},
                    }
                elif behaviour == "refuse":
                    result = {"type": "succeeded", "message": _message("", "refusal")}
                elif behaviour == "malformed":
                    result = {"type": "succeeded", "message": _message("Sure! Here are some examples: one, two")}
                else:
                    result = {"type": "succeeded", "message": _message(_answer(prompt))}
                lines.append(json.dumps({"custom_id": item["custom_id"], "result": result}))
            return httpx2.Response(200, content="\n".join(lines).encode(), headers={"content-type": "application/binary"})
        if request.method == "GET" and path.startswith("/v1/messages/batches/"):
            self.calls["retrieve"] += 1
            batch_id = path.split("/")[-1]
            self.polls += 1
            status = "ended" if self.polls >= 2 else "in_progress"
            return httpx2.Response(200, json=_batch(batch_id, status, len(self.batches[batch_id])))
        if request.method == "POST" and path == "/v1/messages":
            self.calls["message"] += 1
            if self.calls["message"] == 1 and self.behaviour.get(-1) == "429":
                return httpx2.Response(
                    429,
                    json={"type": "error", "error": {"type": "rate_limit_error", "message": "slow"}},
                    headers={"retry-after-ms": "1"},
                )
            body = json.loads(request.content)
            return httpx2.Response(200, json=_message(_answer(body["messages"][0]["content"])))
        return httpx2.Response(404, json={"type": "error", "error": {"type": "not_found_error", "message": path}})


class SimulatedCrash(BaseException):
    """Stands for the process being killed while it waits for a batch."""


def _crash(_: float) -> None:
    raise SimulatedCrash


def _anthropic_generator(
    taxonomy: Taxonomy,
    fake: FakeAnthropic,
    cache_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    sleep: Any = lambda _: None,
    **overrides: Any,
) -> LLMGenerator:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
    profile = load_profile("production", {"generator": {"examples_per_request": 3, "poll_interval_s": 0.01, **overrides}})
    client = make_client(profile.generator, httpx2.Client(transport=httpx2.MockTransport(fake.handler)))
    backend = AnthropicBackend(profile.generator, client, sleep=sleep)
    return LLMGenerator("anthropic", taxonomy, profile.generator, backend, ResponseCache(cache_dir), profile.seed)


def _requests(taxonomy: Taxonomy, category: str = "threats") -> list:
    return list(chunk_requests(plan_category(taxonomy, category, COUNTS, 42), 3))


def test_batch_generation_counts_refusals_and_malformed(
    taxonomy: Taxonomy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeAnthropic(behaviour={0: "refuse", 1: "malformed", 2: "errored"})
    generator = _anthropic_generator(taxonomy, fake, tmp_path, monkeypatch)
    results = generator.run(_requests(taxonomy))
    assert [result.outcome for result in results] == [Outcome.REFUSED, Outcome.MALFORMED, Outcome.ERROR]
    assert results[0].texts == [] and results[2].detail == "batch result errored"
    assert fake.calls["create"] == 1 and fake.calls["results"] == 1

    # Rerun: refusal and malformed answers come from the cache; only the errored request is asked again.
    fake.behaviour = {}
    rerun = generator.run(_requests(taxonomy))
    assert [result.cached for result in rerun] == [True, True, False]
    assert fake.calls["create"] == 2 and len(fake.batches["msgbatch_2"]) == 1
    assert rerun[2].outcome is Outcome.OK and len(rerun[2].texts) == 3


def test_batch_crash_then_resume_reuses_the_batch(taxonomy: Taxonomy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeAnthropic()
    crashing = _anthropic_generator(taxonomy, fake, tmp_path, monkeypatch, sleep=_crash)
    with pytest.raises(SimulatedCrash):
        crashing.run(_requests(taxonomy))
    assert fake.calls["create"] == 1
    assert list((tmp_path / "state").glob("*.json"))  # the batch id survived the crash

    generator = _anthropic_generator(taxonomy, fake, tmp_path, monkeypatch)
    results = generator.run(_requests(taxonomy))
    assert fake.calls["create"] == 1, "resume must poll the existing batch, not pay for a new one"
    assert all(result.outcome is Outcome.OK for result in results)
    assert not list((tmp_path / "state").glob("*.json"))
    third = generator.run(_requests(taxonomy))
    assert all(result.cached for result in third) and fake.calls["results"] == 1


def test_direct_mode_retries_429(taxonomy: Taxonomy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeAnthropic(behaviour={-1: "429"})
    generator = _anthropic_generator(taxonomy, fake, tmp_path, monkeypatch, use_batches=False)
    results = generator.run(_requests(taxonomy)[:1])
    assert results[0].outcome is Outcome.OK
    assert fake.calls["message"] == 2


def test_missing_api_key_is_a_clear_error(taxonomy: Taxonomy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(GenerationError, match="ANTHROPIC_API_KEY is not set"):
        make_generator(taxonomy, load_profile("production"), tmp_path)


def test_refused_category_is_reported_as_shortfall(taxonomy: Taxonomy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The log: Claude refuses csam. The run must say so, not ship a tiny category unnoticed."""
    fake = FakeAnthropic(behaviour={i: "refuse" for i in range(100)})
    generator = _anthropic_generator(taxonomy, fake, tmp_path / "cache", monkeypatch)
    profile = load_profile("production", {"generator": {"examples_per_request": 3}})
    manifest = generate_category(taxonomy, profile, "csam", tmp_path / "out", generator=generator)
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["refused_requests"] > 0 and report["shortfalls"]
    assert any(note.startswith("SHORTFALL csam/positive:") for note in manifest.notes)
    strict = load_profile("production", {"generator": {"examples_per_request": 3, "fail_on_shortfall": True}})
    with pytest.raises(GenerationError, match="shortfall"):
        generate_category(taxonomy, strict, "csam", tmp_path / "strict", generator=generator)


class FakeChatServer:
    def __init__(self, script: list[str]):
        self.script = list(script)  # per call: "429", "filter", "garbage", "bad-shape" or "ok"
        self.calls = 0

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        action = self.script.pop(0) if self.script else "ok"
        body = json.loads(request.content)
        if action == "429":
            return httpx.Response(429, json={"error": "rate limited"})
        if action == "bad-shape":
            return httpx.Response(200, json={"unexpected": True})
        content = {"filter": "", "garbage": "not json at all", "ok": _answer(body["messages"][1]["content"])}[action]
        finish = "content_filter" if action == "filter" else "stop"
        return httpx.Response(
            200, json={"choices": [{"message": {"role": "assistant", "content": content}, "finish_reason": finish}]}
        )


def test_openai_compatible_generator(taxonomy: Taxonomy, tmp_path: Path) -> None:
    server = FakeChatServer(["429", "ok", "filter", "garbage", "bad-shape", "bad-shape", "bad-shape"])
    profile = load_profile(
        "local",
        {
            "generator": {
                "kind": "openai-compatible",
                "model": "llama",
                "base_url": "http://llm.local/v1",
                "examples_per_request": 3,
                "max_retries": 2,
            }
        },
    )
    backend = OpenAICompatibleBackend(
        profile.generator, httpx.Client(transport=httpx.MockTransport(server.handler)), sleep=lambda _: None
    )
    generator = LLMGenerator("openai-compatible", taxonomy, profile.generator, backend, ResponseCache(tmp_path), profile.seed)
    requests = _requests(taxonomy, "spam")
    results = generator.run(requests)
    assert [result.outcome for result in results] == [Outcome.OK, Outcome.REFUSED, Outcome.MALFORMED]
    calls = server.calls
    server.script = ["bad-shape"]
    assert generator.run(requests)[0].cached
    assert server.calls == calls  # everything answered was cached; nothing re-asked

    with pytest.raises(GenerationError, match="base_url"):
        OpenAICompatibleBackend(load_profile("local", {"generator": {"kind": "openai-compatible"}}).generator)
