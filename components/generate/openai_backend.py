"""OpenAI-compatible backend: any local chat-completions server (vLLM, llama.cpp, Ollama)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from tiergate.components.generate.llm import Completion, Prompt, ResponseCache
from tiergate.errors import GenerationError
from tiergate.profiles import GeneratorSettings

log = logging.getLogger(__name__)
RETRYABLE_STATUS = {408, 409, 429, 500, 502, 503, 504}


class OpenAICompatibleBackend:
    def __init__(
        self,
        settings: GeneratorSettings,
        http_client: httpx.Client | None = None,
        sleep: Callable[[float], None] = time.sleep,
        api_key: str | None = None,
    ):
        if not settings.base_url:
            raise GenerationError("the openai-compatible generator needs generator.base_url, e.g. http://localhost:8000/v1")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.client = http_client or httpx.Client(timeout=settings.request_timeout_s)
        self.base_url = settings.base_url.rstrip("/")
        self.headers = headers
        self.settings = settings
        self.model = settings.model
        self.sleep = sleep

    def _post(self, body: dict[str, Any]) -> httpx.Response | str:
        """POST with exponential backoff on transient failures; returns the response or an error text."""
        last_error = ""
        for attempt in range(self.settings.max_retries + 1):
            try:
                response = self.client.post(f"{self.base_url}/chat/completions", json=body, headers=self.headers)
            except httpx.TransportError as error:
                last_error = f"{type(error).__name__}: {error}"
            else:
                if response.status_code not in RETRYABLE_STATUS:
                    return response
                last_error = f"HTTP {response.status_code}"
            delay = self.settings.retry_base_delay_s * (2**attempt)
            log.warning("chat completion failed (%s), retry %d in %.1fs", last_error, attempt + 1, delay)
            self.sleep(delay)
        return last_error

    def complete(self, prompts: Mapping[str, Prompt], cache: ResponseCache, job_name: str) -> dict[str, Completion]:
        answers: dict[str, Completion] = {}
        for key, prompt in prompts.items():
            body = {
                "model": self.model,
                "messages": [{"role": "system", "content": prompt.system}, {"role": "user", "content": prompt.user}],
                "max_tokens": prompt.max_tokens,
                "temperature": prompt.temperature,
                "seed": prompt.seed,
            }
            outcome = self._post(body)
            if isinstance(outcome, str):
                completion = Completion(text="", error=outcome)
            elif outcome.status_code >= 400:
                completion = Completion(text="", error=f"HTTP {outcome.status_code}: {outcome.text[:200]}")
            else:
                completion = self._parse(outcome)
            cache.put(key, completion)
            answers[key] = completion
        return answers

    @staticmethod
    def _parse(response: httpx.Response) -> Completion:
        try:
            choice = response.json()["choices"][0]
            text = choice["message"].get("content") or ""
            finish = choice.get("finish_reason")
        except (ValueError, KeyError, IndexError, TypeError) as error:
            return Completion(text="", error=f"unexpected response shape: {error}")
        refusal = choice["message"].get("refusal")
        return Completion(text=text, stop_reason=finish, refused=bool(refusal) or finish == "content_filter")
