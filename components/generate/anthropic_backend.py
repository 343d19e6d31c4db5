"""Anthropic backend: Message Batches for volume (resumable), or direct calls.

Resume: a created batch's id is written to the cache's state folder *before* polling,
so a crashed run picks the same batch up instead of paying for it twice; each answer
is cached as soon as the results stream yields it.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

import anthropic

from tiergate.components.generate.llm import Completion, Prompt, ResponseCache
from tiergate.errors import GenerationError
from tiergate.hashing import read_json, write_json
from tiergate.profiles import GeneratorSettings

log = logging.getLogger(__name__)


def make_client(settings: GeneratorSettings, http_client: Any = None) -> anthropic.Anthropic:
    """A client for the profile; `http_client` (an httpx2.Client, the SDK's transport) lets tests fake HTTP."""
    api_key = os.environ.get(settings.api_key_env)
    if not api_key:
        raise GenerationError(
            f"{settings.api_key_env} is not set; the anthropic generator needs an API key "
            "(in the cluster it comes from the Kubernetes Secret named in the pipeline settings)"
        )
    kwargs: dict[str, Any] = {"api_key": api_key, "max_retries": settings.max_retries, "timeout": settings.request_timeout_s}
    if settings.base_url:
        kwargs["base_url"] = settings.base_url
    if http_client is not None:
        kwargs["http_client"] = http_client
    return anthropic.Anthropic(**kwargs)


def _params(model: str, prompt: Prompt) -> dict[str, Any]:
    """Messages API params. The current API takes no `temperature`; variety comes from the prompt's variation tag."""
    return {
        "model": model,
        "max_tokens": prompt.max_tokens,
        "system": prompt.system,
        "messages": [{"role": "user", "content": prompt.user}],
    }


def _completion_from_message(message: Any) -> Completion:
    text = "".join(getattr(block, "text", "") for block in message.content or [])
    stop_reason = getattr(message, "stop_reason", None)
    return Completion(text=text, stop_reason=stop_reason, refused=stop_reason == "refusal")


class AnthropicBackend:
    def __init__(self, settings: GeneratorSettings, client: anthropic.Anthropic, sleep: Callable[[float], None] = time.sleep):
        self.settings = settings
        self.model = settings.model
        self.client = client
        self.sleep = sleep

    def complete(self, prompts: Mapping[str, Prompt], cache: ResponseCache, job_name: str) -> dict[str, Completion]:
        if self.settings.use_batches:
            return self._complete_batch(prompts, cache, job_name)
        return self._complete_direct(prompts, cache)

    def _complete_direct(self, prompts: Mapping[str, Prompt], cache: ResponseCache) -> dict[str, Completion]:
        answers: dict[str, Completion] = {}
        for key, prompt in prompts.items():
            try:
                message = self.client.messages.create(**_params(self.model, prompt))
                completion = _completion_from_message(message)
            except anthropic.APIError as error:  # retries already exhausted by the SDK
                completion = Completion(text="", error=f"{type(error).__name__}: {error}")
            cache.put(key, completion)
            answers[key] = completion
        return answers

    def _complete_batch(self, prompts: Mapping[str, Prompt], cache: ResponseCache, job_name: str) -> dict[str, Completion]:
        custom_ids = {key[:64]: key for key in prompts}
        state_path = cache.state_path(job_name)
        batch_id = None
        if state_path.is_file():
            state = read_json(state_path)
            if set(state.get("custom_ids", [])) >= set(custom_ids):
                batch_id = state["batch_id"]
                log.info("resuming message batch %s for %s", batch_id, job_name)
        if batch_id is None:
            requests = [{"custom_id": cid, "params": _params(self.model, prompts[key])} for cid, key in custom_ids.items()]
            batch = self.client.messages.batches.create(requests=requests)  # type: ignore[arg-type]
            batch_id = batch.id
            write_json(state_path, {"batch_id": batch_id, "custom_ids": sorted(custom_ids)})
            log.info("created message batch %s with %d requests", batch_id, len(requests))
        waited = 0.0
        while True:
            batch = self.client.messages.batches.retrieve(batch_id)
            if batch.processing_status == "ended":
                break
            if waited >= self.settings.max_wait_s:
                raise GenerationError(
                    f"message batch {batch_id} still {batch.processing_status} after {waited:.0f}s; rerun to resume"
                )
            counts = batch.request_counts
            log.info("batch %s: %s processing, %s succeeded", batch_id, counts.processing, counts.succeeded)
            self.sleep(self.settings.poll_interval_s)
            waited += self.settings.poll_interval_s
        answers: dict[str, Completion] = {}
        for item in self.client.messages.batches.results(batch_id):
            key = custom_ids.get(item.custom_id)
            if key is None:
                continue
            result = item.result
            if result.type == "succeeded":
                completion = _completion_from_message(result.message)
            else:
                completion = Completion(text="", error=f"batch result {result.type}")
            cache.put(key, completion)
            answers[key] = completion
        state_path.unlink(missing_ok=True)
        return answers
