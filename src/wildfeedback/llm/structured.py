"""Schema-constrained calls that return validated pydantic objects, or a recorded failure.

The schema goes to the backend (the server constrains decoding where it can),
and the answer is always validated with pydantic, because not every server
constrains and small models drift. A reply that is not JSON or does not fit
gets ONE repair retry: the bad reply and the exact error go back to the model,
asking for corrected JSON only. If that fails too, the result carries `.error`
instead of a value; nothing is raised, so one bad row never stops a run.

A reply that is still unusable is not kept in the response cache: every reply
of the failed call is handed back with `Backend.discard`, so a rerun (against a
fixed server, or with a fixed schema) asks again rather than replaying it. A
reply that was repaired keeps both its turns cached: together they replay the
value that validated.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

from wildfeedback.errors import describe_validation_error
from wildfeedback.llm.base import Backend, Completion, Failure, Messages, Sampling, failure_from, gather_bounded
from wildfeedback.llm.jsontext import NoJSONError, extract_json
from wildfeedback.llm.sync import run_sync

T = TypeVar("T", bound=BaseModel)

REPAIR_PROMPT = (
    "Your reply above cannot be used: {error}\n"
    "Reply again with only the corrected JSON object, and nothing before or after it."
)


@dataclass
class StructuredResult(Generic[T]):
    """A validated `value`, or an `error` saying why there is none.

    `completions` holds every raw reply (one, or two after a repair), for
    provenance and token accounting.
    """

    value: T | None = None
    error: Failure | None = None
    completions: list[Completion] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error is None and self.value is not None

    @property
    def repaired(self) -> bool:
        return self.ok and len(self.completions) > 1

    @property
    def text(self) -> str | None:
        """The last raw reply, if any."""
        return self.completions[-1].text if self.completions else None


def strict_schema(output_model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON schema in the form OpenAI's strict structured outputs accept.

    Strict mode wants every object closed (`additionalProperties: false`) with
    all its properties required, and no `default`; llama.cpp and vLLM accept
    the same schema. Optional fields stay optional for validation: pydantic
    still applies their defaults when a lenient server leaves them out.
    """

    def close(node: Any) -> Any:
        if isinstance(node, dict):
            node = {k: close(v) for k, v in node.items() if k != "default"}
            if node.get("type") == "object" and "properties" in node:
                node["additionalProperties"] = False
                node["required"] = list(node["properties"])
            return node
        if isinstance(node, list):
            return [close(v) for v in node]
        return node

    return close(output_model.model_json_schema())


def parse_reply(text: str, output_model: type[T]) -> T | Failure:
    """Text to a validated object, or the `Failure` that says what is wrong with it."""
    try:
        data = extract_json(text)
    except NoJSONError as error:
        return Failure("invalid_json", str(error))
    try:
        return output_model.model_validate(data)
    except ValidationError as error:
        return Failure("validation", describe_validation_error(error))


def repair_messages(messages: Messages, bad_reply: str, problem: Failure) -> Messages:
    return [
        *messages,
        {"role": "assistant", "content": bad_reply},
        {"role": "user", "content": REPAIR_PROMPT.format(error=problem.message)},
    ]


async def call_structured(
    backend: Backend,
    messages: Messages,
    output_model: type[T],
    sampling: Sampling | None = None,
    *,
    json_schema: dict[str, Any] | None = None,
    repair: bool = True,
) -> StructuredResult[T]:
    """One structured call: a validated `output_model`, or a result with `.error`.

    `json_schema` defaults to `strict_schema(output_model)`, which every server
    we target accepts; pass one to ask for something else.
    """
    sampling = sampling or Sampling()
    schema = json_schema if json_schema is not None else strict_schema(output_model)
    result: StructuredResult[T] = StructuredResult()
    attempts = 2 if repair else 1
    asked: list[Messages] = []  # the messages of each reply, to discard them if none validates
    for attempt in range(attempts):
        try:
            completion = await backend.complete(messages, sampling=sampling, json_schema=schema)
        except Exception as error:  # transport failures were already retried by the backend
            result.error = failure_from(error)
            break
        result.completions.append(completion)
        asked.append(messages)
        parsed = parse_reply(completion.text, output_model)
        if not isinstance(parsed, Failure):
            result.value, result.error = parsed, None
            return result
        if completion.finish_reason == "length":
            # Cut off at max_tokens: a repair at the same budget would be cut off again.
            result.error = Failure(parsed.kind, f"the reply stopped at max_tokens={sampling.max_tokens} "
                                                f"before the JSON was complete ({parsed.message})")
            break
        if attempt + 1 < attempts:
            messages = repair_messages(messages, completion.text, parsed)
        else:
            after = " (after one repair retry)" if attempts > 1 else ""
            result.error = Failure(parsed.kind, parsed.message + after)
    for sent in asked:  # only a call that ends without a value gets here: keep none of its replies
        backend.discard(sent, sampling=sampling, json_schema=schema)
    return result


async def call_structured_many(
    backend: Backend,
    conversations: Sequence[Messages],
    output_model: type[T],
    sampling: Sampling | None = None,
    *,
    concurrency: int = 8,
    json_schema: dict[str, Any] | None = None,
    repair: bool = True,
) -> list[StructuredResult[T]]:
    """`call_structured` over many message lists, bounded concurrency, results in input order."""
    return await gather_bounded(
        [
            call_structured(backend, messages, output_model, sampling, json_schema=json_schema, repair=repair)
            for messages in conversations
        ],
        concurrency,
    )


def call_structured_sync(
    backend: Backend,
    messages: Messages,
    output_model: type[T],
    sampling: Sampling | None = None,
    **kwargs: Any,
) -> StructuredResult[T]:
    return run_sync(call_structured(backend, messages, output_model, sampling, **kwargs))


def call_structured_many_sync(
    backend: Backend,
    conversations: Sequence[Messages],
    output_model: type[T],
    sampling: Sampling | None = None,
    **kwargs: Any,
) -> list[StructuredResult[T]]:
    return run_sync(call_structured_many(backend, conversations, output_model, sampling, **kwargs))
