"""A client for the OpenAI-compatible chat-completions protocol (``POST {base_url}/chat/completions``), which
OpenAI, vLLM, Ollama (``/v1``) and llama.cpp's server speak.

Each request has a timeout; a 429, a 5xx or a broken connection is retried with exponential backoff (a
``Retry-After`` header is honoured, up to the backoff cap); anything else fails at once. Every error names the
endpoint and the HTTP status (never the API key). Tokens are counted from each answer's ``usage`` block; a
server that sends none is counted in ``TokenUsage.missing_usage`` rather than guessed.
"""

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from mlops_pipelines.lib.core.errors import MlopsError

RETRIED_STATUSES = frozenset({429, 500, 502, 503, 504})


class LlmError(MlopsError, RuntimeError):
    """The provider could not give an answer; the message names the endpoint and the status or the cause."""


@dataclass(frozen=True)
class Completion:
    """One answer: its text, the model the server says answered, and the tokens it counted (None: not reported)."""

    text: str
    model: str
    prompt_tokens: int | None
    completion_tokens: int | None
    attempts: int


@dataclass
class TokenUsage:
    """What a client spent so far: requests answered, tokens, retries, answers without a ``usage`` block."""

    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    retries: int = 0
    missing_usage: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass
class ChatClient:
    """``base_url`` includes the API prefix (``https://api.openai.com/v1``, ``http://127.0.0.1:11434/v1``)."""

    base_url: str
    api_key: str | None = field(default=None, repr=False)
    timeout_s: float = 30.0
    max_retries: int = 3
    backoff_s: float = 0.5  # first wait; doubles with each retry
    max_backoff_s: float = 20.0
    sleep: Callable[[float], None] = time.sleep
    usage: TokenUsage = field(default_factory=TokenUsage)

    @property
    def endpoint(self) -> str:
        return f"{self.base_url.rstrip('/')}/chat/completions"

    def complete(
        self,
        messages: Sequence[dict[str, str]],
        *,
        model: str,
        temperature: float | None = None,
        max_tokens: int | None = None,
    ) -> Completion:
        """The first choice's message for ``messages``; retried on 429/5xx/connection errors, LlmError when it
        cannot be had."""
        body: dict[str, Any] = {"model": model, "messages": list(messages)}
        if temperature is not None:
            body["temperature"] = temperature
        if max_tokens is not None:
            body["max_tokens"] = max_tokens
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        attempts = self.max_retries + 1
        with httpx.Client(timeout=self.timeout_s) as http:
            for attempt in range(1, attempts + 1):
                retry_after: float | None = None
                try:
                    response = http.post(self.endpoint, json=body, headers=headers)
                except httpx.TimeoutException as exc:
                    problem = f"no answer within {self.timeout_s:g}s ({type(exc).__name__})"
                except httpx.TransportError as exc:
                    problem = f"connection failed ({type(exc).__name__}: {exc})"
                else:
                    if response.status_code == 200:
                        return self._completion(response, attempt)
                    problem = f"HTTP {response.status_code}: {_snippet(response.text)}"
                    if response.status_code not in RETRIED_STATUSES:
                        raise LlmError(f"POST {self.endpoint}: {problem}")
                    retry_after = _retry_after(response.headers.get("retry-after"))
                if attempt == attempts:
                    raise LlmError(f"POST {self.endpoint}: {problem} (gave up after {attempts} attempts)")
                self.usage.retries += 1
                wait = self.backoff_s * 2 ** (attempt - 1) if retry_after is None else retry_after
                self.sleep(min(wait, self.max_backoff_s))
        raise AssertionError("unreachable")  # pragma: no cover

    def _completion(self, response: httpx.Response, attempts: int) -> Completion:
        try:
            payload = response.json()
            choice = payload["choices"][0]
            text = choice["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise LlmError(
                f"POST {self.endpoint}: HTTP 200 but not a chat completion ({type(exc).__name__}: {exc}): "
                f"{_snippet(response.text)}"
            ) from exc
        if not isinstance(text, str):
            raise LlmError(f"POST {self.endpoint}: HTTP 200 but choices[0].message.content is {type(text).__name__}")
        usage = payload.get("usage") or {}
        prompt_tokens, completion_tokens = usage.get("prompt_tokens"), usage.get("completion_tokens")
        self.usage.requests += 1
        if isinstance(prompt_tokens, int) and isinstance(completion_tokens, int):
            self.usage.prompt_tokens += prompt_tokens
            self.usage.completion_tokens += completion_tokens
        else:
            prompt_tokens = completion_tokens = None
            self.usage.missing_usage += 1
        return Completion(
            text=text,
            model=str(payload.get("model") or ""),
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            attempts=attempts,
        )


def _retry_after(value: str | None) -> float | None:
    """A Retry-After header in seconds (the HTTP-date form is not used by these servers: ignored)."""
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def _snippet(text: str, limit: int = 200) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[:limit] + "..."
