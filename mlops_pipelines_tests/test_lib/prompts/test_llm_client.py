"""The chat-completions client against a stand-in provider on loopback (real HTTP, not a model)."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from mlops_pipelines.lib.prompts.library import ModelSettings
from mlops_pipelines.lib.prompts.llm_client import ChatClient, LlmError
from mlops_pipelines.lib.prompts.responses import (
    ChatCompletionsSource,
    RecordedResponses,
    build_response_source,
)
from mlops_pipelines_tests.test_lib.prompts.chat_stand_in import Scripted, StandIn, running_stand_in


@pytest.fixture(scope="module")
def stand_in() -> Iterator[StandIn]:
    with running_stand_in() as server:
        yield server


@pytest.fixture
def provider(stand_in: StandIn) -> StandIn:
    stand_in.answers.clear()
    stand_in.script.clear()
    stand_in.requests.clear()
    stand_in.send_usage = True
    return stand_in


def client(provider: StandIn, waits: list[float], **options) -> ChatClient:
    return ChatClient(provider.base_url, api_key="sk-secret-123", sleep=waits.append, **options)


def test_answers_and_counts_tokens_from_usage(provider: StandIn) -> None:
    provider.answers["hello there"] = "general kenobi"
    chat = client(provider, [])
    first = chat.complete([{"role": "user", "content": "hello there"}], model="m", temperature=0.0, max_tokens=50)
    chat.complete([{"role": "user", "content": "one two three"}], model="m")
    assert (first.text, first.model, first.prompt_tokens, first.completion_tokens) == (
        "general kenobi",
        "m-served",
        2,
        2,
    )
    assert (chat.usage.requests, chat.usage.prompt_tokens, chat.usage.completion_tokens) == (2, 5, 2 + 4)
    sent = provider.requests[0]
    assert sent["body"]["temperature"] == 0.0 and sent["body"]["max_tokens"] == 50
    assert sent["authorization"] == "Bearer sk-secret-123"


def test_missing_usage_is_counted_not_guessed(provider: StandIn) -> None:
    provider.send_usage = False
    chat = client(provider, [])
    answer = chat.complete([{"role": "user", "content": "x"}], model="m")
    assert answer.prompt_tokens is None and chat.usage.missing_usage == 1 and chat.usage.total_tokens == 0


def test_429_and_5xx_are_retried_with_backoff_and_retry_after(provider: StandIn) -> None:
    provider.script[:] = [Scripted(429, headers={"retry-after": "1.5"}), Scripted(503), Scripted(502)]
    waits: list[float] = []
    chat = client(provider, waits, backoff_s=0.25)
    answer = chat.complete([{"role": "user", "content": "after retries"}], model="m")
    assert answer.text == "echo: after retries" and answer.attempts == 4
    assert waits == [1.5, 0.5, 1.0]  # Retry-After honoured, then 0.25 * 2**(attempt-1)
    assert chat.usage.retries == 3


def test_gives_up_naming_the_endpoint_and_status(provider: StandIn) -> None:
    provider.script[:] = [Scripted(503)] * 3
    chat = client(provider, [], max_retries=2)
    with pytest.raises(LlmError) as caught:
        chat.complete([{"role": "user", "content": "x"}], model="m")
    message = str(caught.value)
    assert f"POST {provider.base_url}/chat/completions" in message and "HTTP 503" in message
    assert "after 3 attempts" in message and "sk-secret" not in message


def test_a_client_error_is_not_retried(provider: StandIn) -> None:
    provider.script[:] = [Scripted(401, body={"error": {"message": "invalid api key"}})]
    waits: list[float] = []
    with pytest.raises(LlmError, match=r"chat/completions: HTTP 401: .*invalid api key"):
        client(provider, waits).complete([{"role": "user", "content": "x"}], model="m")
    assert waits == [] and len(provider.requests) == 1


def test_a_stalled_provider_times_out_and_is_retried(provider: StandIn) -> None:
    provider.script[:] = [Scripted(delay_s=2.0), Scripted(delay_s=2.0)]
    chat = client(provider, [], timeout_s=0.3, max_retries=1)
    with pytest.raises(LlmError, match=r"no answer within 0.3s .*after 2 attempts"):
        chat.complete([{"role": "user", "content": "x"}], model="m")


def test_a_malformed_answer_names_the_endpoint(provider: StandIn) -> None:
    provider.script[:] = [Scripted(200, body={"choices": []})]
    with pytest.raises(LlmError, match=r"chat/completions: HTTP 200 but not a chat completion"):
        client(provider, []).complete([{"role": "user", "content": "x"}], model="m")


def test_nothing_listening_is_a_connection_error(provider: StandIn) -> None:
    chat = ChatClient("http://127.0.0.1:9/v1", max_retries=1, sleep=lambda s: None)
    with pytest.raises(LlmError, match=r"POST http://127.0.0.1:9/v1/chat/completions: connection failed"):
        chat.complete([{"role": "user", "content": "x"}], model="m")


def test_live_answers_are_recorded_and_replay_identically(provider: StandIn, tmp_path: Path) -> None:
    provider.answers.update({"render a": "answer a", "render b": "answer b"})
    source = build_response_source(
        "http", recorded_dir=tmp_path / "unused", base_url=provider.base_url, record_to=tmp_path / "log"
    )
    assert isinstance(source, ChatCompletionsSource)
    live = source.responses(
        "market_summary",
        "3",
        {"a": "render a", "b": "render b"},
        ModelSettings(name="gpt-x", temperature=0.1, max_tokens=100),
    )
    assert live.source == f"http:{provider.base_url}/chat/completions"
    assert {k: v.text for k, v in live.by_case.items()} == {"a": "answer a", "b": "answer b"}
    replay = RecordedResponses(tmp_path / "log").responses("market_summary", "3", {"a": "", "b": ""})
    assert replay.by_case == live.by_case
    assert provider.requests[0]["body"]["model"] == "gpt-x"


def test_settings_choose_the_response_source(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from mlops_pipelines.catalog.prompt_evaluation import RECORDED_RESPONSES_DIR
    from mlops_pipelines.lib.core.errors import ConfigError
    from mlops_pipelines.settings import Settings

    for name in ("MLOPS_PROMPT_RESPONSES", "MLOPS_PROMPT_RECORDED_DIR", "MLOPS_LLM_BASE_URL", "MLOPS_LLM_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MLOPS_DATA_DIR", str(tmp_path))
    default = Settings.from_env().response_source()
    assert default == RecordedResponses(RECORDED_RESPONSES_DIR)
    monkeypatch.setenv("MLOPS_PROMPT_RESPONSES", "http")
    with pytest.raises(ConfigError, match="MLOPS_PROMPT_RESPONSES=http needs MLOPS_LLM_BASE_URL"):
        Settings.from_env()
    monkeypatch.setenv("MLOPS_LLM_BASE_URL", "http://127.0.0.1:11434/v1/")
    monkeypatch.setenv("MLOPS_LLM_API_KEY", "sk-secret-123")
    settings = Settings.from_env()
    source = settings.response_source()
    assert (
        isinstance(source, ChatCompletionsSource)
        and source.client.endpoint == "http://127.0.0.1:11434/v1/chat/completions"
    )
    assert settings.secret_variables["llm_api_key"] == "MLOPS_LLM_API_KEY" and "sk-secret" not in repr(settings)
    monkeypatch.setenv("MLOPS_PROMPT_RESPONSES", "carrier-pigeon")
    with pytest.raises(ConfigError, match="MLOPS_PROMPT_RESPONSES must be 'recorded' or 'http'"):
        Settings.from_env()


def test_answers_received_before_a_failure_are_kept(provider: StandIn, tmp_path: Path) -> None:
    provider.script[:] = [Scripted(), Scripted(401)]  # the first case is answered, the second refused
    source = build_response_source(
        "http", recorded_dir=tmp_path, base_url=provider.base_url, record_to=tmp_path / "log", max_retries=0
    )
    with pytest.raises(LlmError, match="HTTP 401"):
        source.responses(
            "p", "1", {"a": "render a", "b": "render b"}, ModelSettings(name="m", temperature=0, max_tokens=100)
        )
    kept = RecordedResponses(tmp_path / "log").responses("p", "1", {"a": "", "b": ""})
    assert list(kept.by_case) == ["a"] and kept.by_case["a"].text == "echo: render a"
