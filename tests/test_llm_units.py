"""The LLM layer's parts that need no server and no model: JSON extraction, specs, batching, failures."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Literal

import pytest
from pydantic import BaseModel, Field

from wildfeedback.llm import (
    Backend,
    CachedBackend,
    Completion,
    Failure,
    LLMError,
    OpenAICompatBackend,
    Request,
    Sampling,
    Usage,
    call_structured_sync,
    extract_json,
    gather_bounded,
    make_backend,
)
from wildfeedback.llm.embedded import EmbeddedBackend, _Job
from wildfeedback.llm.jsontext import NoJSONError, describe_schema, with_json_instruction
from wildfeedback.llm.openai_compat import resolve_api_key


@pytest.mark.parametrize(
    "text",
    [
        '{"a": 1}',
        '  {"a": 1}\n',
        '```json\n{"a": 1}\n```',
        '```\n{"a": 1}\n```',
        'Sure! Here is the JSON:\n```json\n{"a": 1}\n```\nHope it helps.',
        'The answer is {"a": 1} as requested.',
        'Thinking {not json} ... then {"a": 1} and {"b": 2}',
        '{"a": 1,}',
        '{\n  "a": 1,\n}\nDone.',
    ],
)
def test_extract_json_finds_the_object(text: str) -> None:
    assert extract_json(text) == {"a": 1}


def test_extract_json_arrays_and_refusals() -> None:
    assert extract_json("Result: [1, 2, 3]") == [1, 2, 3]
    for bad in ["", "   ", "no json here", '{"a": ', "{broken: yes}"]:
        with pytest.raises(NoJSONError):
            extract_json(bad)


class Inner(BaseModel):
    x: int


class Shape(BaseModel):
    label: Literal["SAT", "DSAT"]
    evidence: str | None = None
    score: float = Field(description="how sure, 0 to 1")
    tags: list[str]
    inner: Inner


def test_describe_schema_in_words() -> None:
    text = describe_schema(Shape.model_json_schema())
    assert text == (
        'the keys "label" (one of "SAT", "DSAT"), "evidence" (a string or null, optional), '
        '"score" (a number: how sure, 0 to 1), "tags" (a list (items: a string)) and '
        '"inner" (an object with "x" (an integer))'
    )


def test_json_instruction_goes_on_the_last_user_turn() -> None:
    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "second"},
    ]
    out = with_json_instruction(messages, Inner.model_json_schema())
    assert messages[3]["content"] == "second", "the caller's messages are not changed"
    assert out[:3] == messages[:3] and out[3]["content"].startswith("second\n\nReply with only a JSON object")
    assert '"x"' in with_json_instruction(messages, Inner.model_json_schema(), style="keys")[3]["content"]
    assert with_json_instruction([{"role": "system", "content": "s"}], {"type": "object"})[-1]["role"] == "user"


def test_sampling_validates_and_keys_stably() -> None:
    with pytest.raises(ValueError):
        Sampling(temperature=-1)
    with pytest.raises(ValueError):
        Sampling(max_tokens=0)
    assert Sampling(stop="\n").stop == ("\n",)
    assert Sampling().key() == {"temperature": 0.0, "top_p": 1.0, "max_tokens": 512}
    assert Sampling(stop=["a"], seed=1).key()["stop"] == ["a"]


def test_make_backend_specs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("OPENAI_API_KEY", "WILDFEEDBACK_API_KEY", "OPENAI_BASE_URL", "WILDFEEDBACK_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    local = make_backend("openai:qwen", "http://127.0.0.1:8000/v1")
    assert isinstance(local, OpenAICompatBackend) and (local.model, local.structured) == ("qwen", "openai")
    assert make_backend("vllm:qwen", "http://h/v1").structured == "vllm"  # type: ignore[attr-defined]
    assert make_backend("openai:qwen", "http://h/v1", structured="none").structured == "none"  # type: ignore[attr-defined]
    monkeypatch.setenv("WILDFEEDBACK_BASE_URL", "http://from-env/v1")
    assert make_backend("openai:qwen").base_url == "http://from-env/v1"  # type: ignore[attr-defined]
    monkeypatch.delenv("WILDFEEDBACK_BASE_URL")
    with pytest.raises(ValueError, match="no API key"):
        make_backend("openai:gpt-4o-mini")  # OpenAI itself, and no key anywhere
    with pytest.raises(ValueError, match="model name"):
        make_backend("openai:")
    with pytest.raises(ValueError, match="expected"):
        make_backend("anthropic:claude")
    with pytest.raises(ValueError, match="structured"):
        OpenAICompatBackend("m", base_url="http://h/v1", structured="bogus")  # type: ignore[arg-type]
    cached = make_backend("openai:qwen", "http://h/v1", cache=tmp_path / "c.sqlite", template_version="v2")
    assert isinstance(cached, CachedBackend) and cached.template_version == "v2" and cached.model == "qwen"


def test_api_key_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai")
    monkeypatch.setenv("WILDFEEDBACK_API_KEY", "sk-wf")
    assert resolve_api_key("sk-explicit", None) == "sk-explicit"
    assert resolve_api_key(None, None) == "sk-openai"
    monkeypatch.delenv("OPENAI_API_KEY")
    assert resolve_api_key(None, None) == "sk-wf"
    monkeypatch.delenv("WILDFEEDBACK_API_KEY")
    assert resolve_api_key(None, "http://localhost:8000/v1") == "not-needed"
    backend = OpenAICompatBackend("m", base_url="http://h/v1", api_key="sk-secret-value")
    assert "sk-secret" not in repr(backend)


class FakeBackend(Backend):
    """Answers 'ok:<content>', raises for contents starting with 'raise:' or 'crash:'."""

    def __init__(self, replies: dict[str, list[str]] | None = None) -> None:
        self.model = "fake"
        self.usage = Usage()
        self.replies = replies or {}
        self.running = 0
        self.max_running = 0

    async def complete(self, messages, *, sampling, json_schema=None) -> Completion:  # type: ignore[no-untyped-def]
        content = messages[-1]["content"]
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        try:
            await asyncio.sleep(0.01)
            if content.startswith("raise:"):
                raise LLMError("http", "nope", status=400)
            if content.startswith("crash:"):
                raise RuntimeError("boom")
            queue = self.replies.get(messages[0]["content"])
            text = queue.pop(0) if queue else f"ok:{content}"
            completion = Completion(text=text, model=self.model, prompt_tokens=1, completion_tokens=1)
            self.usage.add(completion)
            return completion
        finally:
            self.running -= 1


def test_complete_many_records_failures_and_bounds_concurrency() -> None:
    backend = FakeBackend()
    contents = ["a", "raise:b", "c", "crash:d"] * 5
    outcomes = backend.complete_many_sync([Request([{"role": "user", "content": c}]) for c in contents], concurrency=3)
    assert len(outcomes) == 20 and backend.max_running == 3
    for content, outcome in zip(contents, outcomes, strict=True):
        if content.startswith("raise:"):
            assert outcome == Failure("http", "nope", 400)
        elif content.startswith("crash:"):
            assert isinstance(outcome, Failure) and outcome.kind == "error" and "RuntimeError: boom" in outcome.message
        else:
            assert isinstance(outcome, Completion) and outcome.text == f"ok:{content}"
    assert backend.usage.calls == 10
    with pytest.raises(LLMError):
        backend.complete_sync([{"role": "user", "content": "raise:x"}])
    with pytest.raises(ValueError):
        asyncio.run(gather_bounded([], 0))


def test_structured_with_fake_backend_repairs_then_succeeds() -> None:
    backend = FakeBackend({"q": ["not json at all", '```json\n{"x": 7}\n```']})
    result = call_structured_sync(backend, [{"role": "user", "content": "q"}], Inner)
    assert result.value == Inner(x=7) and result.repaired
    no_repair = call_structured_sync(
        FakeBackend({"q": ["nope"]}), [{"role": "user", "content": "q"}], Inner, repair=False
    )
    assert no_repair.error is not None and no_repair.error.kind == "invalid_json" and len(no_repair.completions) == 1


def test_cache_over_a_fake_backend(tmp_path: Path) -> None:
    backend = FakeBackend()
    cached = CachedBackend(backend, tmp_path / "c.sqlite", "v1")
    rows = [Request([{"role": "user", "content": c}]) for c in ["a", "raise:b", "a", "c"]]
    first = cached.complete_many_sync(rows, concurrency=1)
    assert [type(o).__name__ for o in first] == ["Completion", "Failure", "Completion", "Completion"]
    assert first[2].cached and not first[0].cached  # the repeated row was answered from the cache
    assert len(cached.cache) == 2 and backend.usage.calls == 2


class RecordingEmbedded(EmbeddedBackend):
    """The embedded backend's batching, with generation replaced by a recorder (no model loaded)."""

    def __init__(self, **options) -> None:  # type: ignore[no-untyped-def]
        super().__init__(gguf_path="unused.gguf", **options)
        self.groups: list[tuple[Sampling, int]] = []

    def _generate(self, jobs: list[_Job]) -> None:
        self.groups.append((jobs[0].sampling, len(jobs)))
        for job in jobs:
            text = job.messages[-1]["content"]
            job.future.set_result(
                Completion(text=f"gen:{text}", model=self.model, prompt_tokens=2, completion_tokens=3)
            )


def test_embedded_batches_concurrent_requests_by_sampling() -> None:
    backend = RecordingEmbedded(max_batch_size=4, batch_wait=0.2)
    greedy, sampled = Sampling(max_tokens=8), Sampling(temperature=0.7, seed=1, max_tokens=8)
    rows = [Request([{"role": "user", "content": str(i)}], greedy if i % 2 == 0 else sampled) for i in range(8)]
    outcomes = backend.complete_many_sync(rows, concurrency=8)
    assert [o.text for o in outcomes] == [f"gen:{i}" for i in range(8)]  # type: ignore[union-attr]
    # Eight requests in batches of at most four, each batch split by sampling setup.
    assert sum(n for _, n in backend.groups) == 8 and all(n <= 4 for _, n in backend.groups)
    assert len(backend.groups) <= 4
    assert {s for s, _ in backend.groups} == {greedy, sampled}
    assert backend.usage.as_dict() == {"calls": 8, "prompt_tokens": 16, "completion_tokens": 24, "total_tokens": 40,
                                       "failed": 0}
    assert backend.model == "unused"


def test_embedded_asks_for_json_in_words() -> None:
    backend = RecordingEmbedded()
    backend.complete_sync([{"role": "user", "content": "q"}], json_schema=Inner.model_json_schema())
    assert backend.usage.calls == 1
    sent = call_structured_sync(backend, [{"role": "user", "content": "q"}], Inner)
    assert sent.error is not None and sent.error.kind == "invalid_json"
    assert 'Answer in JSON with the keys "x" (an integer)' in sent.completions[0].text
