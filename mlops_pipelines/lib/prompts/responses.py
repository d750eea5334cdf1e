"""Where the answers an evaluation scores come from: a provider speaking the chat-completions protocol, or a
recorded log of what production answered (the demo and CI, which reach no model).

The recorded log is JSONL, one answer a line::

    {"prompt": "market_summary", "version": "1", "case_id": "ms-btc-up", "response": "...", "model": "gpt-4o-mini",
     "prompt_tokens": 412, "completion_tokens": 96}

``prompt_tokens`` / ``completion_tokens`` may be null (not reported). The log is append-only: when a case was
answered more than once for a version, the last line counts. ``ChatCompletionsSource`` appends what it receives to
such a log when given one, so a live evaluation can be replayed offline.
"""

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

from mlops_pipelines.lib.core.errors import MlopsError, NotFound
from mlops_pipelines.lib.prompts.library import ModelSettings
from mlops_pipelines.lib.prompts.llm_client import ChatClient

Messages = Sequence[Mapping[str, str]]
RECORD_FIELDS = ("prompt", "version", "case_id", "response", "model", "prompt_tokens", "completion_tokens")


class RecordedResponsesError(MlopsError, ValueError):
    """A recorded-responses log is malformed; the message names the file, the line and the field."""


@dataclass(frozen=True)
class Response:
    """One answer to one case."""

    case_id: str
    text: str
    model: str
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


@dataclass(frozen=True)
class Responses:
    """The answers of one prompt version, and where they came from (``recorded:<file>`` or ``http:<endpoint>``)."""

    source: str
    by_case: dict[str, Response]


class ResponseSource(Protocol):
    def responses(
        self, prompt: str, version: str, rendered: Mapping[str, Messages | str], model: ModelSettings | None = None
    ) -> Responses:
        """The answers to ``rendered`` (case id -> the rendered prompt: chat messages, or one user message)."""
        ...


@dataclass(frozen=True)
class RecordedResponses:
    """Answers read from ``<directory>/<prompt>.jsonl`` (or from ``path`` itself when it is a file)."""

    path: Path

    def file_for(self, prompt: str) -> Path:
        return self.path if self.path.is_file() else self.path / f"{prompt}.jsonl"

    def responses(
        self, prompt: str, version: str, rendered: Mapping[str, Messages | str], model: ModelSettings | None = None
    ) -> Responses:
        """The recorded answers of this version to the cases in ``rendered`` (a case never answered is left out:
        the evaluation counts it as missing). NotFound when the log has no answer of this version at all."""
        path = self.file_for(prompt)
        if not path.is_file():
            raise NotFound(f"{path}: no recorded responses for prompt {prompt!r}")
        found: dict[str, Response] = {}
        for record in read_records(path):
            if record["prompt"] == prompt and str(record["version"]) == str(version):
                found[record["case_id"]] = Response(
                    case_id=record["case_id"],
                    text=record["response"],
                    model=record["model"],
                    prompt_tokens=record["prompt_tokens"],
                    completion_tokens=record["completion_tokens"],
                )
        if not found:
            raise NotFound(f"{path}: no recorded responses for prompt {prompt!r} version {version!r}")
        return Responses(source=f"recorded:{path}", by_case={k: v for k, v in found.items() if k in rendered})


def read_records(path: Path) -> list[dict]:
    """Every line of a recorded log, checked: RecordedResponsesError names the file, line and field."""
    records = []
    with path.open() as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            where = f"{path}: line {number}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise RecordedResponsesError(f"{where}: not JSON ({exc.msg})") from exc
            if not isinstance(record, dict):
                raise RecordedResponsesError(f"{where}: not a JSON object")
            for name in RECORD_FIELDS:
                if name not in record:
                    raise RecordedResponsesError(f"{where}: field {name!r} is missing")
            for name in ("prompt", "case_id", "response", "model"):
                if not isinstance(record[name], str):
                    raise RecordedResponsesError(f"{where}: field {name!r} must be a string")
            if not isinstance(record["version"], str | int) or isinstance(record["version"], bool):
                raise RecordedResponsesError(f"{where}: field 'version' must be a string")
            for name in ("prompt_tokens", "completion_tokens"):
                value = record[name]
                if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
                    raise RecordedResponsesError(f"{where}: field {name!r} must be a count of tokens or null")
            records.append(record)
    return records


def append_records(path: Path, prompt: str, version: str, responses: Sequence[Response]) -> None:
    """Append answers to a recorded log (the format ``RecordedResponses`` reads)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as out:
        for response in responses:
            record = asdict(response)
            record = {"prompt": prompt, "version": version, **record, "response": record.pop("text")}
            out.write(json.dumps({name: record[name] for name in RECORD_FIELDS}) + "\n")


@dataclass
class ChatCompletionsSource:
    """Answers asked of a live provider, one request per case; ``record_to``: a directory to append them to as
    ``<prompt>.jsonl`` (replayable by ``RecordedResponses``). ``model_override`` replaces the prompt's model name
    (a local server serves its own models)."""

    client: ChatClient
    model_override: str | None = None
    record_to: Path | None = None

    def responses(
        self, prompt: str, version: str, rendered: Mapping[str, Messages | str], model: ModelSettings | None = None
    ) -> Responses:
        name = self.model_override or (model.name if model else None)
        if not name:
            raise MlopsError(f"{self.client.endpoint}: no model to ask for {prompt!r} (set the prompt's model)")
        answers = []
        for case_id, prompt_text in rendered.items():
            messages = [{"role": "user", "content": prompt_text}] if isinstance(prompt_text, str) else prompt_text
            completion = self.client.complete(
                [dict(m) for m in messages],
                model=name,
                temperature=model.temperature if model else None,
                max_tokens=model.max_tokens if model else None,
            )
            answer = Response(
                case_id=case_id,
                text=completion.text,
                model=completion.model or name,
                prompt_tokens=completion.prompt_tokens,
                completion_tokens=completion.completion_tokens,
            )
            answers.append(answer)
            if self.record_to is not None:  # at once: answers already paid for survive a later failure
                append_records(self.record_to / f"{prompt}.jsonl", prompt, version, [answer])
        return Responses(source=f"http:{self.client.endpoint}", by_case={a.case_id: a for a in answers})


def build_response_source(
    kind: str,
    *,
    recorded_dir: Path,
    base_url: str | None = None,
    api_key: str | None = None,
    timeout_s: float = 30.0,
    max_retries: int = 3,
    model_override: str | None = None,
    record_to: Path | None = None,
) -> ResponseSource:
    """The source the settings name: ``recorded`` (the log under ``recorded_dir``) or ``http`` (``base_url``)."""
    if kind == "recorded":
        return RecordedResponses(recorded_dir)
    if kind == "http":
        if not base_url:
            raise MlopsError("the http response source needs the provider's base URL (MLOPS_LLM_BASE_URL)")
        client = ChatClient(base_url, api_key=api_key, timeout_s=timeout_s, max_retries=max_retries)
        return ChatCompletionsSource(client, model_override=model_override, record_to=record_to)
    raise MlopsError(f"unknown response source {kind!r}: use 'recorded' or 'http' (MLOPS_PROMPT_RESPONSES)")
