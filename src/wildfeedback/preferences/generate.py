"""From a dissatisfied reply to a preference pair: what the user wanted, a checklist,
and a better reply written under it.

1. `PreferenceExtractor`: one LLM call reads the conversation through the user's
   feedback and writes the user's **preferences** (a short summary in the user's
   terms) and a **checklist** of 3-8 yes/no checks a reply meeting them passes.
2. `ReplyWriter`: a reply to the original prompt, conditioned on the preferences
   (delimited as data) and a safety instruction; or a plain one.
3. The modes (`PairBuilder`):
   - **expert**: a stronger model writes the chosen reply; every pair is kept
     (subject to the guards);
   - **on-policy**: the policy writes a conditioned and a plain reply; the pair
     (conditioned chosen, the original reply rejected) is kept only when the
     checklist judge prefers the conditioned reply to the plain one in both orders.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, Field

from wildfeedback.llm import Backend, Completion, Failure, Sampling, call_structured, gather_bounded, run_sync
from wildfeedback.llm.base import failure_from
from wildfeedback.llm.structured import StructuredResult
from wildfeedback.prompts import load_prompt
from wildfeedback.prompts.conversation import as_data, render_messages
from wildfeedback.schema import ChatTurn, Message

Mode = Literal["expert", "on-policy"]


class Preferences(BaseModel):
    preferences: str = Field(min_length=1, max_length=800)
    checklist: list[str] = Field(min_length=3, max_length=8)


def fit_prompt(turns: Sequence[ChatTurn], max_message_chars: int, max_messages: int) -> list[dict[str, str]]:
    """The prompt as chat messages a model can take: the last `max_messages`, each
    message cut in the middle past `max_message_chars` (0: no limit)."""
    from wildfeedback.prompts.conversation import shorten

    kept = list(turns)[-max_messages:] if max_messages else list(turns)
    return [{"role": t.role, "content": shorten(t.content, max_message_chars)} for t in kept]


@dataclass
class PreferenceExtractor:
    backend: Backend
    concurrency: int = 8
    max_message_chars: int = 2000
    max_messages: int = 12

    def __post_init__(self) -> None:
        self.prompt = load_prompt("preference_summary")
        self.backend = self.backend.versioned(self.prompt.id)

    def text(self, messages: Sequence[Message], reply_index: int) -> str:
        shown = list(messages)[-self.max_messages :]
        return self.prompt.render(reply_index=reply_index, conversation=render_messages(shown, self.max_message_chars))

    def extract(self, items: Sequence[tuple[Sequence[Message], int]]) -> list[StructuredResult[Preferences]]:
        """For each (messages through the feedback, index of the rejected reply)."""
        sampling = Sampling(temperature=0.0, max_tokens=400)
        calls = [call_structured(self.backend, [{"role": "user", "content": self.text(m, i)}], Preferences, sampling)
                 for m, i in items]
        return run_sync(gather_bounded(calls, self.concurrency))


@dataclass
class ReplyWriter:
    backend: Backend
    concurrency: int = 8
    max_tokens: int = 512
    temperature: float = 0.0
    max_message_chars: int = 3000
    max_messages: int = 12

    def __post_init__(self) -> None:
        self.prompt = load_prompt("preferred_reply")
        self.conditioned = self.backend.versioned(self.prompt.id)

    def write(self, prompts: Sequence[Sequence[ChatTurn]], preferences: Sequence[str | None]) -> list[Completion | Failure]:
        """A reply per prompt: under the preferences where given, else the model's plain reply."""
        sampling = Sampling(temperature=self.temperature, max_tokens=self.max_tokens)

        async def one(turns: Sequence[ChatTurn], wanted: str | None) -> Completion | Failure:
            messages = fit_prompt(turns, self.max_message_chars, self.max_messages)
            backend = self.backend
            if wanted is not None:
                system = self.prompt.render(preferences=as_data(wanted, 1500))
                messages = [{"role": "system", "content": system}, *[m for m in messages if m["role"] != "system"]]
                backend = self.conditioned
            try:
                completion = await backend.complete(messages, sampling=sampling)
            except Exception as error:  # recorded per row by the caller
                return failure_from(error)
            if not completion.text.strip():
                return Failure("empty", "the generated reply is empty")
            return completion

        return run_sync(gather_bounded([one(p, w) for p, w in zip(prompts, preferences, strict=True)],
                                       self.concurrency))


