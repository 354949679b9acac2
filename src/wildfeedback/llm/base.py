"""The one interface every LLM call goes through.

Stages never talk to a server or a model directly: they hand messages and
`Sampling` to a `Backend` and get a `Completion` back. That single seam is what
lets the response cache, token accounting and per-row failure handling live in
one place, and what lets `--llm embedded` and `--llm openai:MODEL` run the same
code paths.

Failures are values, not exceptions, at the batch level: a backend raises
`LLMError` for one call, and `complete_many` turns it into a `Failure` in that
row's slot, so one bad row never stops a run. But a run whose calls all fail (a
server down, a wrong `--base-url`) has produced nothing worth an exit status of
0: each backend counts its failed calls in `usage`, and `check_failures`, applied
by the commands after their outputs are written, turns too many into an
`LLMUnavailableError` (exit 1).
"""

from __future__ import annotations

import asyncio
import threading
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from wildfeedback.errors import WildfeedbackError
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
    """Calls made through one backend: tokens actually spent (cache hits are not
    spending), and the calls that got no answer, by kind.

    `calls` counts answered calls, `failed` calls that raised (after the client's
    own retries: one per call, not per attempt). The backends count at the source,
    so a caller that awaits `complete` directly is counted like a batch.
    Thread-safe: the embedded backend's worker thread and the event loop both add.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.calls = 0
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.failed = 0
        self.failed_by_kind: Counter[str] = Counter()
        self.first_failure: dict[str, Failure] = {}  # one example per kind, for the error message

    def add(self, completion: Completion) -> None:
        with self._lock:
            self.calls += 1
            self.prompt_tokens += completion.prompt_tokens
            self.completion_tokens += completion.completion_tokens

    def fail(self, failure: Failure) -> None:
        with self._lock:
            self.failed += 1
            self.failed_by_kind[failure.kind] += 1
            self.first_failure.setdefault(failure.kind, failure)

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def as_dict(self) -> dict[str, int]:
        return {
            "calls": self.calls,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
            "failed": self.failed,
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

    @property
    def endpoint(self) -> str | None:
        """Where the model is served (a server's base URL), or None for a local model.

        Part of the cache key: two servers may serve different weights under one
        model name, and must not share answers."""
        return None

    @property
    def cache_hits(self) -> int:
        """Answers replayed from a response cache (only a `CachedBackend` has any)."""
        return 0

    def versioned(self, template_version: str) -> Backend:
        """This backend with its answers keyed under a prompt template version. Only a
        cached backend keys anything (see `CachedBackend`); any other is itself."""
        return self

    def discard(self, messages: Messages, *, sampling: Sampling, json_schema: dict[str, Any] | None = None) -> None:
        """Forget a completion the caller rejected (e.g. a reply that failed validation),
        so a rerun asks again instead of replaying it. Only a cache remembers anything
        (see `CachedBackend`); for any other backend this does nothing."""
        return None

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


DEFAULT_MAX_FAILURE_RATE = 0.5
MIN_CALLS_FOR_RATE = 5  # below this many calls, a share of failures says little; only "all failed" counts


class LLMUnavailableError(WildfeedbackError):
    """Too many of a run's LLM calls got no answer for its output to be worth exit status 0.

    Raised by the commands after their outputs are written: what was done is kept
    (the failed rows are in the issues), and a rerun resumes from the cache."""

    exit_code = 1


def check_failures(
    backend: Backend, max_failure_rate: float = DEFAULT_MAX_FAILURE_RATE, *, setting: str = "--base-url"
) -> None:
    """Raise `LLMUnavailableError` when every call through `backend` failed, or more
    than `max_failure_rate` of them over at least `MIN_CALLS_FOR_RATE` calls.

    The share is of answers asked for: calls answered, replayed from the cache, or
    failed. A resumed run whose few remaining calls fail after hundreds of cache
    hits is therefore not "all failed"; its failures are in its issues, and the
    next rerun retries them. `setting` names the option to check in the message.
    """
    if not 0 <= max_failure_rate <= 1:
        raise ValueError(f"max_failure_rate must be between 0 and 1, got {max_failure_rate}")
    usage = backend.usage
    failed = usage.failed
    asked = usage.calls + backend.cache_hits + failed
    if failed == 0:
        return
    if failed < asked and (asked < MIN_CALLS_FOR_RATE or failed / asked <= max_failure_rate):
        return
    kind, _ = usage.failed_by_kind.most_common(1)[0]
    example = usage.first_failure[kind]
    limit = "" if failed == asked else f", more than the --max-failure-rate {max_failure_rate:g}"
    raise LLMUnavailableError(
        f"{failed:,} of {asked:,} LLM calls to {backend.model} failed{limit} ({example}): check {setting} / the server"
    )


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
