"""A stand-in for an LLM provider: a tiny Starlette app speaking the OpenAI chat-completions protocol, served by
uvicorn on a free loopback port (real HTTP). It is not a model: it answers from a table (the last user message ->
the answer) and can be scripted to answer 429/5xx, to stall, or to send a malformed body."""

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route


@dataclass
class Scripted:
    status: int = 200
    body: Any = None  # a dict is sent as JSON, a str as text; None: the normal answer
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


@dataclass
class StandIn:
    base_url: str = ""
    answers: dict[str, str] = field(default_factory=dict)
    script: list[Scripted] = field(default_factory=list)  # consumed one per request, then normal answers
    requests: list[dict[str, Any]] = field(default_factory=list)
    send_usage: bool = True

    async def chat(self, request: Request) -> Response:
        body = await request.json()
        self.requests.append({"body": body, "authorization": request.headers.get("authorization")})
        step = self.script.pop(0) if self.script else Scripted()
        if step.delay_s:
            await asyncio.sleep(step.delay_s)
        if step.body is not None:
            if isinstance(step.body, str):
                return PlainTextResponse(step.body, status_code=step.status, headers=step.headers)
            return JSONResponse(step.body, status_code=step.status, headers=step.headers)
        if step.status != 200:
            return JSONResponse({"error": {"message": "scripted"}}, status_code=step.status, headers=step.headers)
        prompt = body["messages"][-1]["content"]
        text = self.answers.get(prompt, f"echo: {prompt}")
        payload: dict[str, Any] = {
            "id": f"chatcmpl-{len(self.requests)}",
            "object": "chat.completion",
            "model": body["model"] + "-served",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        }
        if self.send_usage:
            payload["usage"] = {
                "prompt_tokens": len(prompt.split()),
                "completion_tokens": len(text.split()),
                "total_tokens": len(prompt.split()) + len(text.split()),
            }
        return JSONResponse(payload)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def running_stand_in() -> Iterator[StandIn]:
    stand_in = StandIn()
    app = Starlette(routes=[Route("/v1/chat/completions", stand_in.chat, methods=["POST"])])
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the stand-in server did not start")
        time.sleep(0.02)
    stand_in.base_url = f"http://127.0.0.1:{port}/v1"
    try:
        yield stand_in
    finally:
        server.should_exit = True
        thread.join(timeout=10)
