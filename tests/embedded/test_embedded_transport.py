"""The embedded transport's contract, on a fake engine: options, errors, slots, deadlines."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import anyio
import pytest

from agents.llm.embedded import transport as tr
from agents.llm.embedded._engine import ChatResult, EngineSettings
from agents.llm.embedded._request import build_body, to_completion
from agents.llm.errors import (
    BackendNotAvailableError,
    BadRequestError,
    ContextTooLongError,
    LLMTimeoutError,
    MalformedResponseError,
    OverloadedError,
    UnavailableError,
)
from agents.llm.transport import Transport
from agents.llm.types import ChatMessage, GenerationParams

MSGS = [ChatMessage(role="user", content="Rewrite: write a poem.")]


def config(model: str = "", concurrency: int = 8, **options: Any) -> SimpleNamespace:
    return SimpleNamespace(model=model, concurrency=concurrency, options=options)


@dataclass
class FakeEngine:
    """Blocks each chat until `gate` opens or the call is cancelled; records what it saw."""

    settings: EngineSettings
    gate: threading.Event = field(default_factory=threading.Event)
    entered: threading.Semaphore = field(default_factory=lambda: threading.Semaphore(0))
    returned: threading.Semaphore = field(default_factory=lambda: threading.Semaphore(0))
    bodies: list[dict[str, Any]] = field(default_factory=list)
    active: int = 0
    peak: int = 0
    cancelled: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def chat(self, body: dict[str, Any], cancel: threading.Event) -> ChatResult:
        with self.lock:
            self.bodies.append(body)
            self.active += 1
            self.peak = max(self.peak, self.active)
        self.entered.release()
        try:
            while not self.gate.wait(0.005):  # a fake llama.cpp decoding loop
                if cancel.is_set():
                    with self.lock:
                        self.cancelled += 1
                    return ChatResult(cancelled=True)
            return ChatResult(
                text="A harder poem.", finish_reason="stop", prompt_tokens=7, completion_tokens=4
            )
        finally:
            with self.lock:
                self.active -= 1
            self.returned.release()


@pytest.fixture
def engines(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[list[FakeEngine]]:
    made: list[FakeEngine] = []

    def acquire(settings: EngineSettings) -> FakeEngine:
        made.append(FakeEngine(settings))
        return made[-1]

    monkeypatch.setattr(tr, "_xllamacpp_installed", lambda: True)
    monkeypatch.setattr(tr, "locate_sources", lambda preset: [])
    monkeypatch.setattr(tr, "ensure_model_file", lambda preset, cache: tmp_path / "m.gguf")
    monkeypatch.setattr(tr, "acquire", acquire)
    monkeypatch.setattr(tr, "release", lambda engine: None)
    yield made
    for e in made:
        e.gate.set()


async def _acquire_n(sem: threading.Semaphore, n: int) -> None:
    for _ in range(n):
        assert await anyio.to_thread.run_sync(sem.acquire, True, 10)


async def test_send_returns_completion_with_usage_and_latency(engines: list[FakeEngine]) -> None:
    t: Transport = tr.create_transport(config("smollm2-135m"))  # mypy checks the protocol
    assert isinstance(t, tr.EmbeddedTransport)
    await t.start()
    engines[0].gate.set()
    c = await t.send(MSGS, GenerationParams(max_tokens=9, seed=3), timeout_s=10)
    assert (c.text, c.prompt_tokens, c.completion_tokens) == ("A harder poem.", 7, 4)
    assert (c.backend, c.model) == ("embedded", "smollm2-135m")
    assert c.latency_s > 0
    assert engines[0].bodies[0]["max_tokens"] == 9
    await t.aclose()


async def test_at_most_slots_calls_run_in_llama_cpp(engines: list[FakeEngine]) -> None:
    t = tr.create_transport(config(slots=2))
    await t.start()
    eng = engines[0]

    async def call() -> None:
        await t.send(MSGS, GenerationParams(), timeout_s=30)

    async with anyio.create_task_group() as tg:
        for _ in range(5):
            tg.start_soon(call)
        await _acquire_n(eng.entered, 2)
        await anyio.wait_all_tasks_blocked()
        stats = t.statistics()
        assert (stats.slots, stats.in_flight, stats.waiting) == (2, 2, 3)
        eng.gate.set()
    assert eng.peak == 2
    assert len(eng.bodies) == 5
    await t.aclose()


async def test_deadline_raises_timeout_and_cancels_the_generation(
    engines: list[FakeEngine],
) -> None:
    t = tr.create_transport(config(slots=1))
    await t.start()
    with pytest.raises(LLMTimeoutError, match=r"within 0\.05 s"):
        await t.send(MSGS, GenerationParams(), timeout_s=0.05)
    await _acquire_n(engines[0].returned, 1)  # the worker thread stopped, slot is free
    assert engines[0].cancelled == 1
    engines[0].gate.set()
    assert (await t.send(MSGS, GenerationParams(), timeout_s=10)).text == "A harder poem."
    await t.aclose()


async def test_outer_cancellation_also_stops_the_generation(engines: list[FakeEngine]) -> None:
    t = tr.create_transport(config())
    await t.start()
    with anyio.move_on_after(0.05):
        await t.send(MSGS, GenerationParams(), timeout_s=60)
    await _acquire_n(engines[0].returned, 1)
    assert engines[0].cancelled == 1
    await t.aclose()


async def test_send_after_close_is_unavailable(engines: list[FakeEngine]) -> None:
    t = tr.create_transport(config())
    await t.aclose()
    with pytest.raises(UnavailableError, match="closed"):
        await t.send(MSGS, GenerationParams(), timeout_s=5)


@pytest.mark.parametrize(
    ("cfg", "match"),
    [
        pytest.param(config("gpt-9"), "unknown preset 'gpt-9'", id="unknown-preset"),
        pytest.param(config(threads=0), "threads", id="bad-threads"),
        pytest.param(config(colour="blue"), "colour", id="unknown-option"),
        pytest.param(config("smollm2-135m", preset="qwen2.5-coder-0.5b"), "disagree", id="clash"),
    ],
)
def test_bad_options_raise_config_error(
    engines: list[FakeEngine], cfg: SimpleNamespace, match: str
) -> None:
    with pytest.raises(tr.EmbeddedConfigError, match=match):
        tr.create_transport(cfg)


def test_defaults_pick_the_default_preset_and_cap_slots_by_concurrency(
    engines: list[FakeEngine],
) -> None:
    t = tr.create_transport(config(concurrency=1))
    assert t.model == "qwen2.5-coder-0.5b"
    assert t.statistics().slots == 1
    assert tr.create_transport(config()).statistics().slots == tr.DEFAULT_SLOTS


def test_missing_runtime_says_which_extra_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tr, "_xllamacpp_installed", lambda: False)
    with pytest.raises(BackendNotAvailableError, match=r"pip install 'evolagents\[embedded\]'"):
        tr.create_transport(config())


def test_missing_model_file_path_is_reported(engines: list[FakeEngine], tmp_path: Path) -> None:
    with pytest.raises(BackendNotAvailableError, match="does not exist"):
        tr.create_transport(config(model_path=str(tmp_path / "nope.gguf")))


def test_body_maps_every_generation_param() -> None:
    params = GenerationParams(
        temperature=0.2, top_p=0.9, max_tokens=16, stop=("\n",), seed=5, repeat_penalty=1.1
    )
    body = build_body(MSGS, params, default_max_tokens=512)
    assert body["messages"] == [{"role": "user", "content": "Rewrite: write a poem."}]
    assert {k: body[k] for k in ("temperature", "top_p", "max_tokens", "stop", "seed")} == {
        "temperature": 0.2,
        "top_p": 0.9,
        "max_tokens": 16,
        "stop": ["\n"],
        "seed": 5,
    }
    assert body["repeat_penalty"] == 1.1
    assert build_body(MSGS, GenerationParams(), 77)["max_tokens"] == 77


@pytest.mark.parametrize(
    "params", [pytest.param(GenerationParams(n=2), id="n>1"), pytest.param(None, id="no-messages")]
)
def test_unservable_requests_are_bad_requests(params: GenerationParams | None) -> None:
    with pytest.raises(BadRequestError):
        build_body(MSGS if params else [], params or GenerationParams(), 1)


@pytest.mark.parametrize(
    ("result", "error"),
    [
        pytest.param(
            ChatResult(error={"code": 400, "type": "exceed_context_size_error", "message": "x"}),
            ContextTooLongError,
            id="context",
        ),
        pytest.param(ChatResult(error={"code": 400, "message": "bad"}), BadRequestError, id="400"),
        pytest.param(ChatResult(error={"code": 503, "message": "busy"}), OverloadedError, id="503"),
        pytest.param(ChatResult(malformed="TypeError: x"), MalformedResponseError, id="malformed"),
        pytest.param(ChatResult(cancelled=True), LLMTimeoutError, id="cancelled"),
    ],
)
def test_llama_cpp_errors_map_to_typed_errors(result: ChatResult, error: type[Exception]) -> None:
    with pytest.raises(error):
        to_completion(result, latency_s=0.1, model="m")


def test_corrupt_model_file_fails_to_load_with_a_fatal_error(tmp_path: Path) -> None:
    pytest.importorskip("xllamacpp", reason="xllamacpp not installed (the embedded extra)")
    from agents.llm.embedded._engine import Engine

    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + bytes(range(256)) * 8)
    with pytest.raises(BackendNotAvailableError, match="could not load"):
        Engine(EngineSettings(bad, slots=1, threads=1, batch_threads=1))
