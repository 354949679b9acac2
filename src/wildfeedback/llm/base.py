"""The one interface every LLM call goes through.

Stages never talk to a server or a model directly: they hand messages and
`Sampling` to a `Backend` and get a `Completion` back. That single seam is what
lets the response cache, token accounting and per-row failure handling live in
one place, and what lets `--llm embedded` and `--llm openai:MODEL` run the same
code paths.

Failures are values, not exceptions, at the batch level: a backend raises
`LLMError` for one call, and `complete_many` turns it into a `Failure` in that
row's slot, so one bad row never stops a run.
"""

from __future__ import annotations

import asyncio
import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from wildfeedback.llm.sync import run_sync

Messages = list[dict[str, Any]]

FailureKind = Literal[
    "timeout",  # the server did not answer in time (after the client's retries)
    "connection",  # could not reach the server
    "http",  # the server answered with an error status (see `status`)
    "empty",  # the server answered without any text (e.g. a refusal)
    "invalid_json",  # structured call: no parseable JSON, even after the repair retry
    "validation",  # structured call: JSON that does not fit the schema, even after repair
    "error",  # anything else, with the exception text
]


@dataclass(frozen=True, slots=True)
class Sampling:
    """How to decode. Part of the cache key, so two calls that differ here are two calls.

    `temperature == 0` means greedy. Give `seed` to get distinct cached samples of
    the same prompt (e.g. several candidates): without it, a rerun replays the
    first sample from the cache, which is what resuming wants.
    """

    temperature: float = 0.0
    top_p: float = 1.0
    max_tokens: int = 512
    seed: int | None = None
    stop: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {self.max_tokens}")
        if isinstance(self.stop, str):  # a lone string is one stop sequence, not its characters
            object.__setattr__(self, "stop", (self.stop,))
        elif self.stop is not None:
            object.__setattr__(self, "stop", tuple(self.stop))

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def key(self) -> dict[str, Any]:
        """The canonical form for cache keys: unset fields left out, so adding a
        field later does not change every existing key."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items() if v is not None}


@dataclass(frozen=True, slots=True)
class Completion:
    text: str
    model: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str | None = None
    cached: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Completion:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


@dataclass(frozen=True, slots=True)
class Failure:
    """Why one row got no answer. Recorded, never raised by the batch helpers."""

    kind: FailureKind
    message: str
    status: int | None = None

    def __str__(self) -> str:
        status = f" {self.status}" if self.status is not None else ""
        return f"{self.kind}{status}: {self.message}"


class LLMError(Exception):
    """One call failed. Backends raise this; batch helpers turn it into a `Failure`."""

    def __init__(self, kind: FailureKind, message: str, status: int | None = None):
        super().__init__(message)
        self.failure = Failure(kind, message, status)


def failure_from(error: BaseException) -> Failure:
    if isinstance(error, LLMError):
        return error.failure
    if isinstance(error, asyncio.TimeoutError | TimeoutError):
        return Failure("timeout", str(error) or "timed out")
    return Failure("error", f"{type(error).__name__}: {error}")


@dataclass(frozen=True, slots=True)
class Request:
    """One row of a batch for `Backend.complete_many`."""

    messages: Messages
    sampling: Sampling = field(default_factory=Sampling)
    json_schema: dict[str, Any] | None = None


class Usage:
    """Tokens actually spent through one backend (cache hits are not spending).

    Thread-safe: the embedded backend's worker thread and the event loop both add.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.calls = 0
        self.prompt_tokens = 0
        self.completion_tokens = 0

    def add(self, completion: Completion) -> None:
        with self._lock:
            self.calls += 1
            self.prompt_tokens += completion.prompt_tokens
            self.completion_tokens += completion.completion_tokens

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def as_dict(self) -> dict[str, int]:
        return {
            "calls": self.calls,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
        }

    def __repr__(self) -> str:
        return f"Usage({self.as_dict()})"


Outcome = Completion | Failure


class Backend(ABC):
    """An LLM that completes chat messages.

    Subclasses implement `complete` (async, raising `LLMError` for a failed call);
    the batch and sync helpers here are shared so every backend behaves the same
    way under load. `model` names the model for provenance and the cache key.
    """

    model: str
    usage: Usage

    @abstractmethod
    async def complete(
        self,
        messages: Messages,
        *,
        sampling: Sampling,
        json_schema: dict[str, Any] | None = None,
    ) -> Completion: ...

    def versioned(self, template_version: str) -> Backend:
        """This backend with its answers keyed under a prompt template version. Only a
        cached backend keys anything (see `CachedBackend`); any other is itself."""
        return self

    async def complete_many(self, requests: Sequence[Request], concurrency: int = 8) -> list[Outcome]:
        """Run every request with at most `concurrency` in flight; results in input order.

        A row that fails gets a `Failure` in its slot; the others still finish.
        """
        return await gather_bounded([self._outcome(r) for r in requests], concurrency)

    async def _outcome(self, request: Request) -> Outcome:
        try:
            return await self.complete(request.messages, sampling=request.sampling, json_schema=request.json_schema)
        except Exception as error:  # one row's failure is recorded, never fatal to the batch
            return failure_from(error)

    def complete_sync(
        self, messages: Messages, *, sampling: Sampling | None = None, json_schema: dict[str, Any] | None = None
    ) -> Completion:
        """`complete` for callers outside asyncio (raises `LLMError` on failure)."""
        return run_sync(self.complete(messages, sampling=sampling or Sampling(), json_schema=json_schema))

    def complete_many_sync(self, requests: Sequence[Request], concurrency: int = 8) -> list[Outcome]:
        """`complete_many` for callers outside asyncio (never raises for a row)."""
        return run_sync(self.complete_many(requests, concurrency))

    async def aclose(self) -> None:
        """Release connections; the backend must not be used afterwards."""
        return None

    def close(self) -> None:
        run_sync(self.aclose())


async def gather_bounded(coroutines: Sequence[Any], concurrency: int) -> list[Any]:
    """`asyncio.gather` with at most `concurrency` coroutines running at once.

    Coroutines not yet admitted are not started, so a large batch does not open
    thousands of connections or queue thousands of requests at a server.
    """
    if concurrency < 1:
        raise ValueError(f"concurrency must be >= 1, got {concurrency}")
    semaphore = asyncio.Semaphore(concurrency)

    async def admitted(coroutine: Any) -> Any:
        async with semaphore:
            return await coroutine

    return await asyncio.gather(*(admitted(c) for c in coroutines))
