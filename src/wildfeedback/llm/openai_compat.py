"""Any server that speaks OpenAI chat completions: vLLM, llama.cpp server, Ollama, OpenAI.

Built on the official `openai` client, configured rather than re-implemented: it
already retries 408/409/429/5xx and connection errors with exponential backoff
and jitter, and honours `Retry-After` / `retry-after-ms`. This module only maps
our `Sampling` and JSON schema onto the request, reads `usage`, and turns the
client's exceptions into `LLMError` kinds a batch can record per row.

Time is bounded twice. `timeout` is the client's, per attempt; but its read
timeout restarts on every byte received, so a server that trickles a byte every
few seconds would hold a call (and the run) forever, and a server that never
answers costs `timeout` times every retry. So each call also has a `deadline`:
wall-clock seconds for the whole call, every retry and backoff included, after
which it is abandoned as an `LLMError("timeout")`. Waiting for a concurrency slot
does not count; only the call itself.

Structured output differs by server, hence `structured=`:
  "openai"  `response_format={"type": "json_schema", ...}` (OpenAI, llama.cpp, vLLM, Ollama)
  "vllm"    `extra_body={"structured_outputs": {"json": schema}}` (vLLM's native form)
  "none"    no server-side constraint; the schema is put in the prompt instead
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import weakref
from typing import Any, Literal

import openai

from wildfeedback.llm.base import Backend, Completion, LLMError, Messages, Sampling, Usage, failure_from
from wildfeedback.llm.jsontext import with_json_instruction

log = logging.getLogger(__name__)

StructuredMode = Literal["openai", "vllm", "none"]
STRUCTURED_MODES: tuple[str, ...] = ("openai", "vllm", "none")
API_KEY_ENV = ("OPENAI_API_KEY", "WILDFEEDBACK_API_KEY")
# Local servers (vLLM, llama.cpp, Ollama) accept any key, but the client insists on one.
PLACEHOLDER_KEY = "not-needed"
OPENAI_URL = "https://api.openai.com/v1"  # the client's default when no base URL is set
DEFAULT_DEADLINE = 120.0  # seconds for one call, retries included (the CLI's --llm-timeout)


def resolve_api_key(api_key: str | None, base_url: str | None) -> str:
    """The explicit key, else `OPENAI_API_KEY`, else `WILDFEEDBACK_API_KEY`.

    Without any, a placeholder for a local server (base_url given); for OpenAI
    itself (no base_url) that is an error now rather than a 401 on every row.
    """
    if api_key:
        return api_key
    for name in API_KEY_ENV:
        value = os.environ.get(name)
        if value:
            return value
    if base_url is None and not os.environ.get("OPENAI_BASE_URL"):
        raise ValueError(f"no API key: set {' or '.join(API_KEY_ENV)}, or give a base_url for a local server")
    return PLACEHOLDER_KEY


def _schema_name(schema: dict[str, Any]) -> str:
    # OpenAI requires ^[a-zA-Z0-9_-]{1,64}$.
    name = re.sub(r"[^a-zA-Z0-9_-]", "_", str(schema.get("title") or "output"))
    return name[:64] or "output"


class OpenAICompatBackend(Backend):
    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: float = 60.0,
        max_retries: int = 4,
        deadline: float | None = DEFAULT_DEADLINE,
        structured: StructuredMode = "openai",
        strict: bool = True,
        extra_body: dict[str, Any] | None = None,
        max_tokens_param: Literal["max_tokens", "max_completion_tokens"] = "max_tokens",
    ):
        """`timeout` is per attempt in seconds; `max_retries` counts retries after the first try;
        `deadline` bounds the whole call, retries included (None: no bound; see the module
        docstring for why both).

        `max_tokens_param`: newer OpenAI models take only `max_completion_tokens`;
        the servers people run locally all take `max_tokens`.
        """
        if structured not in STRUCTURED_MODES:
            raise ValueError(f"structured must be one of {STRUCTURED_MODES}, got {structured!r}")
        if deadline is not None and not deadline > 0:
            raise ValueError(f"the LLM call deadline must be more than 0 seconds, got {deadline}")
        self.model = model
        self.base_url = base_url
        self.timeout = timeout
        self.max_retries = max_retries
        self.deadline = deadline
        self.structured = structured
        self.strict = strict
        self.extra_body = dict(extra_body or {})
        self.max_tokens_param = max_tokens_param
        self.usage = Usage()
        self.__api_key = resolve_api_key(api_key, base_url)
        # An httpx connection pool belongs to the event loop that opened it, so
        # one client per loop (the caller's, and the shared sync loop).
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, openai.AsyncOpenAI] = (
            weakref.WeakKeyDictionary()
        )

    def __repr__(self) -> str:  # never shows the key
        return (
            f"OpenAICompatBackend(model={self.model!r}, base_url={self.base_url!r}, "
            f"structured={self.structured!r}, timeout={self.timeout}, max_retries={self.max_retries}, "
            f"deadline={self.deadline})"
        )

    @property
    def endpoint(self) -> str:
        """The server's base URL as the client resolves it (keys the response cache)."""
        return (self.base_url or os.environ.get("OPENAI_BASE_URL") or OPENAI_URL).rstrip("/")

    def _client(self) -> openai.AsyncOpenAI:
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            client = openai.AsyncOpenAI(
                base_url=self.base_url,
                api_key=self.__api_key,
                timeout=self.timeout,
                max_retries=self.max_retries,
            )
            self._clients[loop] = client
        return client

    def _request(self, messages: Messages, sampling: Sampling, json_schema: dict[str, Any] | None) -> dict[str, Any]:
        extra_body = dict(self.extra_body)
        kwargs: dict[str, Any] = {
            "model": self.model,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            self.max_tokens_param: sampling.max_tokens,
        }
        if sampling.seed is not None:
            kwargs["seed"] = sampling.seed
        if sampling.stop:
            kwargs["stop"] = list(sampling.stop)
        if json_schema is not None:
            if self.structured == "openai":
                kwargs["response_format"] = {
                    "type": "json_schema",
                    "json_schema": {"name": _schema_name(json_schema), "schema": json_schema, "strict": self.strict},
                }
            elif self.structured == "vllm":
                extra_body["structured_outputs"] = {"json": json_schema}
            else:
                messages = with_json_instruction(messages, json_schema)
        kwargs["messages"] = messages
        if extra_body:
            kwargs["extra_body"] = extra_body
        return kwargs

    async def complete(
        self, messages: Messages, *, sampling: Sampling, json_schema: dict[str, Any] | None = None
    ) -> Completion:
        try:
            completion = await self._call(self._request(messages, sampling, json_schema))
        except Exception as error:  # counted here, at the source, whoever the caller is
            self.usage.fail(failure_from(error))
            raise
        self.usage.add(completion)
        return completion

    async def _call(self, request: dict[str, Any]) -> Completion:
        try:
            async with asyncio.timeout(self.deadline):
                response = await self._client().chat.completions.create(**request)
        except TimeoutError as error:  # the deadline; the client's own timeout is APITimeoutError
            raise LLMError(
                "timeout", f"no complete answer within the {self.deadline:g} s deadline for one call (retries "
                           f"included; --llm-timeout sets it)"
            ) from error
        except openai.APITimeoutError as error:
            raise LLMError("timeout", f"no answer within {self.timeout}s (after {self.max_retries} retries)") from error
        except openai.APIConnectionError as error:
            raise LLMError("connection", f"cannot reach {self.base_url or 'the OpenAI API'}: {error}") from error
        except openai.APIStatusError as error:
            raise LLMError("http", _brief(error.message), status=error.status_code) from error
        if not response.choices:
            raise LLMError("empty", "the server returned no choices")
        choice = response.choices[0]
        text = choice.message.content
        if text is None:
            refusal = getattr(choice.message, "refusal", None)
            raise LLMError("empty", f"refused: {_brief(refusal)}" if refusal else "the reply has no text")
        usage = response.usage
        return Completion(
            text=text,
            model=response.model or self.model,
            prompt_tokens=(usage.prompt_tokens or 0) if usage else 0,
            completion_tokens=(usage.completion_tokens or 0) if usage else 0,
            finish_reason=choice.finish_reason,
        )

    async def aclose(self) -> None:
        clients, self._clients = list(self._clients.items()), weakref.WeakKeyDictionary()
        current = asyncio.get_running_loop()
        for loop, client in clients:
            if loop is current:
                await client.close()
            elif not loop.is_closed() and loop.is_running():
                asyncio.run_coroutine_threadsafe(client.close(), loop)


def _brief(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
