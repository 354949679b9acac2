"""The OpenAI-compatible backend against a real scripted HTTP server, through the real `openai` client."""

from __future__ import annotations

import asyncio
import time

import pytest
from llm_server.harness import ScriptedServer
from pydantic import BaseModel

from wildfeedback.llm import (
    Completion,
    Failure,
    LLMError,
    OpenAICompatBackend,
    Request,
    Sampling,
    call_structured,
    call_structured_sync,
    make_backend,
    strict_schema,
)


class Verdict(BaseModel):
    label: str
    evidence: str
    confidence: float


def backend_for(server: ScriptedServer, **options) -> OpenAICompatBackend:
    options.setdefault("timeout", 5.0)
    options.setdefault("max_retries", 3)
    return OpenAICompatBackend("scripted-model", base_url=server.base_url, api_key="test-key", **options)


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def test_completions_and_token_accounting(server: ScriptedServer) -> None:
    backend = backend_for(server)
    prompts = ["[[key=a]] one two three", "[[key=b]] four five", "[[key=c]] six"]
    outcomes = backend.complete_many_sync([Request(user(p)) for p in prompts], concurrency=2)
    assert all(isinstance(o, Completion) for o in outcomes)
    assert [o.text for o in outcomes] == [f"echo: {p}" for p in prompts]  # input order kept
    assert all(o.model == "scripted-model" and o.finish_reason == "stop" and not o.cached for o in outcomes)
    # The server counts words: prompt = the message, completion = "echo:" + the message.
    assert backend.usage.calls == 3
    assert backend.usage.prompt_tokens == 4 + 3 + 2
    assert backend.usage.completion_tokens == 5 + 4 + 3
    assert backend.usage.total_tokens == sum(o.prompt_tokens + o.completion_tokens for o in outcomes)
    stats = server.stats()
    assert stats["calls"] == {"a": 1, "b": 1, "c": 1}
    body = stats["last_body"]["a"]
    assert body["model"] == "scripted-model" and body["temperature"] == 0.0 and body["max_tokens"] == 512
    assert stats["last_auth"]["a"] == "Bearer test-key"


def test_sampling_reaches_the_server(server: ScriptedServer) -> None:
    backend = backend_for(server)
    sampling = Sampling(temperature=0.7, top_p=0.9, max_tokens=33, seed=5, stop=("\n\n",))
    backend.complete_sync(user("[[key=s]] hi"), sampling=sampling)
    body = server.stats()["last_body"]["s"]
    assert (body["temperature"], body["top_p"], body["max_tokens"], body["seed"], body["stop"]) == (
        0.7,
        0.9,
        33,
        5,
        ["\n\n"],
    )


def test_429_honours_retry_after_then_succeeds(server: ScriptedServer) -> None:
    server.script("limited", {"status": 429, "retry_after": "1"})
    backend = backend_for(server)
    started = time.monotonic()
    completion = backend.complete_sync(user("[[key=limited]] hello"))
    elapsed = time.monotonic() - started
    assert completion.text == "echo: [[key=limited]] hello"
    assert server.stats()["calls"]["limited"] == 2
    assert elapsed >= 0.9, "the client must wait as long as Retry-After says"
    assert backend.usage.calls == 1  # the failed attempt is not a completed call


def test_500_twice_backs_off_then_succeeds(server: ScriptedServer) -> None:
    server.script("flaky", {"status": 500}, {"status": 500})
    backend = backend_for(server)
    started = time.monotonic()
    completion = backend.complete_sync(user("[[key=flaky]] hello"))
    elapsed = time.monotonic() - started
    assert completion.text.startswith("echo:")
    assert server.stats()["calls"]["flaky"] == 3
    # Exponential backoff without Retry-After: 0.5 s then 1 s, less up to 25 % jitter.
    assert 1.1 <= elapsed < 15


def test_timeout_and_permanent_4xx_are_recorded_per_row(server: ScriptedServer) -> None:
    server.script("slow", {"sleep": 2.5}, {"sleep": 2.5})
    server.script("bad", {"status": 400})
    server.script("down", *[{"status": 503, "retry_after_ms": "10"}] * 5)
    backend = backend_for(server, timeout=0.5, max_retries=1)
    rows = ["[[key=ok1]] a", "[[key=slow]] b", "[[key=bad]] c", "[[key=down]] d", "[[key=ok2]] e"]
    outcomes = backend.complete_many_sync([Request(user(r)) for r in rows], concurrency=5)
    ok1, slow, bad, down, ok2 = outcomes
    assert isinstance(ok1, Completion) and isinstance(ok2, Completion)
    assert isinstance(slow, Failure) and slow.kind == "timeout"
    assert isinstance(bad, Failure) and (bad.kind, bad.status) == ("http", 400) and "scripted 400" in bad.message
    assert isinstance(down, Failure) and (down.kind, down.status) == ("http", 503)
    calls = server.stats()["calls"]
    assert calls["bad"] == 1, "a 400 is permanent: not retried"
    assert calls["down"] == 2 and calls["slow"] == 2, "max_retries=1: one try and one retry"
    assert backend.usage.calls == 2


def test_single_failing_call_raises_llm_error(server: ScriptedServer) -> None:
    server.script("gone", {"status": 404})
    with pytest.raises(LLMError) as caught:
        backend_for(server).complete_sync(user("[[key=gone]] x"))
    assert caught.value.failure.status == 404


def test_unreachable_server_is_a_connection_failure() -> None:
    backend = OpenAICompatBackend("m", base_url="http://127.0.0.1:9/v1", api_key="k", timeout=2, max_retries=0)
    (outcome,) = backend.complete_many_sync([Request(user("hi"))])
    assert isinstance(outcome, Failure) and outcome.kind == "connection"


def test_concurrency_is_bounded(server: ScriptedServer) -> None:
    server.default({"sleep": 0.2})
    backend = backend_for(server)
    started = time.monotonic()
    outcomes = backend.complete_many_sync([Request(user(f"[[key=c{i}]] x")) for i in range(12)], concurrency=3)
    elapsed = time.monotonic() - started
    assert all(isinstance(o, Completion) for o in outcomes)
    stats = server.stats()
    assert stats["total"] == 12
    assert stats["max_in_flight"] == 3
    assert elapsed >= 0.75  # four waves of 0.2 s


def test_structured_openai_response_format(server: ScriptedServer) -> None:
    backend = backend_for(server)
    result = call_structured_sync(backend, user("[[key=j]] judge this"), Verdict)
    assert result.ok and not result.repaired
    assert result.value == Verdict(label="x", evidence="x", confidence=0.5)  # the server filled the schema
    body = server.stats()["last_body"]["j"]
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "Verdict", "schema": strict_schema(Verdict), "strict": True},
    }
    assert "structured_outputs" not in body


def test_structured_vllm_extra_body(server: ScriptedServer) -> None:
    backend = make_backend("vllm:scripted-model", server.base_url, api_key="k", timeout=5)
    result = call_structured_sync(backend, user("[[key=v]] judge"), Verdict)
    assert result.ok
    body = server.stats()["last_body"]["v"]
    assert body["structured_outputs"] == {"json": strict_schema(Verdict)}
    assert "response_format" not in body


def test_structured_none_puts_schema_in_prompt_and_extracts_fenced_json(server: ScriptedServer) -> None:
    server.script(
        "n", {"content": 'Sure! Here it is:\n```json\n{"label": "SAT", "evidence": "thanks", "confidence": 0.9}\n```'}
    )
    backend = backend_for(server, structured="none")
    result = call_structured_sync(backend, user("[[key=n]] judge"), Verdict)
    assert result.value == Verdict(label="SAT", evidence="thanks", confidence=0.9)
    body = server.stats()["last_body"]["n"]
    assert "response_format" not in body and "structured_outputs" not in body
    assert "JSON Schema" in body["messages"][-1]["content"]


def test_invalid_json_gets_one_repair_retry(server: ScriptedServer) -> None:
    server.script("r", {"content": "label: SAT, evidence: thanks"})  # then: valid JSON from the schema
    backend = backend_for(server)
    result = asyncio.run(call_structured(backend, user("[[key=r]] judge"), Verdict))
    assert result.ok and result.repaired and len(result.completions) == 2
    assert server.stats()["calls"]["r"] == 2
    repair = server.stats()["last_body"]["r"]["messages"]
    assert repair[-2] == {"role": "assistant", "content": "label: SAT, evidence: thanks"}
    assert "no JSON object found" in repair[-1]["content"] and "corrected JSON" in repair[-1]["content"]
    assert backend.usage.calls == 2


def test_failed_repair_is_a_recorded_validation_failure(server: ScriptedServer) -> None:
    server.script("f", {"content": '{"label": "SAT"}'}, {"content": '{"label": "SAT", "evidence": 3}'}, {})
    result = call_structured_sync(backend_for(server), user("[[key=f]] judge"), Verdict)
    assert not result.ok and result.value is None
    assert result.error is not None and result.error.kind == "validation"
    assert "evidence" in result.error.message and "repair" in result.error.message
    assert server.stats()["calls"]["f"] == 2  # exactly one repair, not more
    assert result.text == '{"label": "SAT", "evidence": 3}'


def test_structured_transport_failure_is_recorded(server: ScriptedServer) -> None:
    server.script("t", {"status": 422})
    result = call_structured_sync(backend_for(server), user("[[key=t]] judge"), Verdict)
    assert result.error is not None and (result.error.kind, result.error.status) == ("http", 422)
    assert server.stats()["calls"]["t"] == 1


def test_sync_wrapper_works_inside_a_running_loop(server: ScriptedServer) -> None:
    backend = backend_for(server)

    async def caller() -> str:  # e.g. a notebook cell, or sync library code called from async code
        return backend.complete_sync(user("[[key=nested]] hi")).text

    assert asyncio.run(caller()) == "echo: [[key=nested]] hi"
    # The same backend in a fresh event loop of the caller's own.
    assert asyncio.run(backend.complete(user("[[key=own]] hi"), sampling=Sampling())).text.endswith("hi")


def test_api_key_from_environment(server: ScriptedServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setenv("WILDFEEDBACK_API_KEY", "sk-from-env-123")
    backend = make_backend("openai:scripted-model", server.base_url)
    backend.complete_sync(user("[[key=env]] hi"))
    assert server.stats()["last_auth"]["env"] == "Bearer sk-from-env-123"
    assert "sk-from-env" not in repr(backend)
