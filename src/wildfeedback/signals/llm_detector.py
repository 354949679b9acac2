"""The LLM rubric detector: one call per conversation labels all its user turns.

The prompt (`prompts/feedback_detection.vN.txt`) shows the conversation as
delimited data and the rubric's categories, and asks for a JSON list with one
entry per user turn to label: SAT / DSAT / NEUTRAL, categories, the user's own
words as evidence, and a one-line rationale.

Model output is bad input, checked turn by turn:

* a turn that was not asked for, a repeated turn, or an asked-for turn the
  reply leaves out: an issue, no signal;
* SAT or DSAT without evidence, or with evidence that is not in the user's
  turn: the label is dropped (issue `evidence_not_found` / `no_evidence`).
  A quote that differs only in case, spacing or surrounding quote marks is
  mapped back to the exact words of the turn, so stored evidence is always a
  true substring;
* a category the rubric does not have, or one of the other polarity: the
  category is removed and the problem recorded (`unknown_category`,
  `wrong_polarity`); the label stands on its evidence;
* a reply that is not JSON or not of the schema (after the one repair retry),
  a timeout or a server error: one issue for the conversation, the run goes on.

Long conversations are split into windows of turns so each prompt fits
`max_prompt_chars`; a window still labels several turns at once.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, Field

from wildfeedback.llm import Backend, Sampling, call_structured, gather_bounded, run_sync, strict_schema
from wildfeedback.llm.structured import StructuredResult
from wildfeedback.prompts import Prompt, load_prompt
from wildfeedback.prompts.conversation import render_messages
from wildfeedback.schema import Conversation, Message, Signal, SignalIssue, SignalLabel
from wildfeedback.signals.base import Outcome
from wildfeedback.signals.labels import candidate_turns
from wildfeedback.signals.rubric import Rubric, load_rubric

DETECTOR = "llm"


class TurnReading(BaseModel):
    turn_index: int = Field(description="the index of the user message")
    label: Literal["SAT", "DSAT", "NEUTRAL"]
    # Bounds keep a small model's runaway output short when it is decoded under the schema.
    categories: list[str] = Field(default_factory=list, max_length=4, description="category names from the rubric")
    evidence: str = Field(default="", max_length=200, description="the user's exact words that show the feedback")
    rationale: str = Field(default="", max_length=150, description="one short sentence")


class ConversationReading(BaseModel):
    turns: list[TurnReading]


# -- evidence ------------------------------------------------------------------

_QUOTES = "\"'“”‘’`«»"


def locate_evidence(quote: str, turn: str) -> str | None:
    """The exact words of `turn` that `quote` copies, or None when it is not there.

    Exact match first; then ignoring case, runs of whitespace and quote marks
    around the quote. What is returned is always `turn[i:j]`.
    """
    quote = quote.strip().strip(_QUOTES).strip()
    if not quote:
        return None
    if quote in turn:
        return quote
    # Case- and whitespace-insensitive: a regex of the quote's words joined by \s+.
    words = quote.split()
    pattern = r"\s+".join(re.escape(w) for w in words)
    found = re.search(pattern, turn, flags=re.IGNORECASE)
    return found.group(0) if found else None


# -- the detector -------------------------------------------------------------


@dataclass
class LLMDetector:
    """`detect(conversations)` -> signals and issues, through any `Backend`.

    `max_message_chars` caps each message inside the prompt (the middle is
    elided); `max_prompt_chars` and `max_turns_per_call` bound one call, beyond
    which the turns are split into windows (each still labels several turns).
    The defaults suit the embedded 135M model's context; raise them for a large
    served model.
    """

    backend: Backend
    rubric: Rubric = field(default_factory=load_rubric)
    prompt: Prompt = field(default_factory=lambda: load_prompt("feedback_detection"))
    max_message_chars: int = 1500
    max_prompt_chars: int = 12000
    max_turns_per_call: int = 8
    context_messages: int = 4
    concurrency: int = 8
    name: str = DETECTOR

    def __post_init__(self) -> None:
        self.backend = self.backend.versioned(self.prompt.id)  # the prompt version goes into every cache key
        self._categories = {
            "sat_categories": _category_lines(self.rubric, "SAT"),
            "dsat_categories": _category_lines(self.rubric, "DSAT"),
        }
        self._names = [c.name for c in (*self.rubric.sat, *self.rubric.dsat)]

    def schema(self, window: Sequence[int]) -> dict:
        """The reply's JSON schema for one call: one entry per turn asked for, turn
        indices limited to those turns and category names to the rubric's, so a server (or the embedded model)
        that decodes under the schema cannot name anything else. The reply is still
        checked as if it could: lenient servers ignore schemas."""
        schema = strict_schema(ConversationReading)
        turn = schema["$defs"]["TurnReading"]["properties"]
        turn["turn_index"]["enum"] = list(window)
        turn["categories"]["items"]["enum"] = self._names
        schema["properties"]["turns"].update(minItems=len(window), maxItems=len(window))
        return schema

    # -- prompts --------------------------------------------------------
    def requests(self, conversation: Conversation, turns: Sequence[int] | None = None) -> list[tuple[list[int], str]]:
        """(turn indices, prompt text) per call for this conversation; `turns`
        limits which user turns to label (default: every one after a reply)."""
        wanted = [t.index for t, *_ in candidate_turns(conversation)]
        if turns is not None:
            chosen = set(turns)
            wanted = [t for t in wanted if t in chosen]
        calls: list[tuple[list[int], str]] = []
        window: list[int] = []
        for turn in wanted:
            full = len(window) >= self.max_turns_per_call
            if window and (full or len(self._prompt(conversation, [*window, turn])) > self.max_prompt_chars):
                calls.append((window, self._prompt(conversation, window)))
                window = []
            window.append(turn)
        if window:
            calls.append((window, self._prompt(conversation, window)))
        return calls

    def _prompt(self, conversation: Conversation, window: Sequence[int]) -> str:
        first = max(0, window[0] - 1 - self.context_messages)
        shown = conversation.messages[first : window[-1] + 1]
        text = render_messages(shown, self.max_message_chars)
        if first > 0:
            text = f"[{first} earlier messages not shown]\n{text}"
        return self.prompt.render(
            **self._categories, conversation=text, turn_indices=", ".join(str(t) for t in window)
        )

    def _sampling(self, n_turns: int) -> Sampling:
        """Greedy, with room for every turn's entry; budgets come in a few sizes so
        the embedded backend can batch calls with equal sampling together."""
        needed = 64 + 120 * n_turns
        budget = next((b for b in (256, 512, 1024, 2048) if b >= needed), 4096)
        return Sampling(temperature=0.0, max_tokens=budget)

    # -- running --------------------------------------------------------
    def detect(
        self, conversations: Iterable[Conversation], turns: dict[str, Sequence[int]] | None = None
    ) -> Outcome:
        """Label every (or, with `turns`, the given) user turn of each conversation."""
        jobs: list[tuple[Conversation, list[int], str]] = []
        for conversation in conversations:
            only = None if turns is None else turns.get(conversation.id, ())
            if only is not None and not only:
                continue
            for window, prompt in self.requests(conversation, only):
                jobs.append((conversation, window, prompt))
        outcome = Outcome()
        if not jobs:
            return outcome
        calls = [
            call_structured(self.backend, [{"role": "user", "content": prompt}], ConversationReading,
                            self._sampling(len(window)), json_schema=self.schema(window))
            for _, window, prompt in jobs
        ]
        results: list[StructuredResult[ConversationReading]] = run_sync(gather_bounded(calls, self.concurrency))
        for (conversation, window, prompt), result in zip(jobs, results, strict=True):
            outcome.calls += 1
            outcome.prompt_chars += len(prompt)
            outcome.extend(self.read(conversation, window, result))
        return outcome

    def read(
        self, conversation: Conversation, window: Sequence[int], result: StructuredResult[ConversationReading]
    ) -> Outcome:
        """Check one reply against the conversation: signals for the turns it got right."""
        outcome = Outcome()
        model = self.backend.model

        def issue(kind: str, message: str, turn: int | None = None, dropped: bool = True) -> None:
            outcome.issues.append(
                SignalIssue(
                    conversation_id=conversation.id,
                    turn_index=turn,
                    detector=self.name,
                    kind=kind,
                    message=message,
                    dropped=dropped,
                    reply=_brief(result.text),
                    model=model,
                    prompt_version=self.prompt.id,
                )
            )

        if result.value is None:
            failure = result.error
            kind = failure.kind if failure else "error"
            message = str(failure) if failure else "no reply"
            issue(kind, f"turns {list(window)}: {message}")
            return outcome
        asked = set(window)
        seen: set[int] = set()
        for reading in result.value.turns:
            index = reading.turn_index
            if index not in asked:
                issue("unknown_turn", f"labelled turn {index}, which was not asked for (asked: {sorted(asked)})", index)
                continue
            if index in seen:
                issue("repeated_turn", f"turn {index} labelled more than once; the first label is kept", index)
                continue
            seen.add(index)
            signal = self._signal(conversation, conversation.messages[index], reading, issue)
            if signal is not None:
                outcome.signals.append(signal)
        for index in sorted(asked - seen):
            issue("missing_turn", f"turn {index} was asked for but not labelled", index)
        return outcome

    def _signal(self, conversation: Conversation, turn: Message, reading: TurnReading, issue) -> Signal | None:  # type: ignore[no-untyped-def]
        label: SignalLabel = reading.label
        index = turn.index
        evidence = locate_evidence(reading.evidence, turn.content) if reading.evidence.strip() else None
        if label != "NEUTRAL":
            if not reading.evidence.strip():
                issue("no_evidence", f"{label} without evidence", index)
                return None
            if evidence is None:
                issue("evidence_not_found", f"{label} evidence {reading.evidence[:120]!r} is not in the user's turn", index)
                return None
        categories: list[str] = []
        for name in dict.fromkeys(reading.categories):  # each name judged once
            resolved = self.rubric.resolve(name)
            if resolved is None:
                issue("unknown_category", f"category {name[:60]!r} is not in rubric {self.rubric.id}", index, False)
            elif label == "NEUTRAL":
                issue("wrong_polarity", f"category {resolved[1]!r} on a NEUTRAL label", index, False)
            elif resolved[0] != label:
                issue("wrong_polarity", f"{resolved[0]} category {resolved[1]!r} on a {label} label", index, False)
            elif resolved[1] not in categories:
                categories.append(resolved[1])
        return Signal(
            conversation_id=conversation.id,
            turn_index=index,
            label=label,
            categories=categories,
            evidence=evidence or None,
            rationale=reading.rationale.strip() or None,
            detector=self.name,
            model=self.backend.model,
            prompt_version=self.prompt.id,
            source=conversation.source,
            metadata={"rubric": self.rubric.id},
        )


def _category_lines(rubric: Rubric, polarity: Literal["SAT", "DSAT"]) -> str:
    return "\n".join(f"- {c.name}: {c.description}" for c in rubric.categories(polarity))


def _brief(text: str | None, limit: int = 2000) -> str | None:
    if text is None or len(text) <= limit:
        return text
    return text[:limit] + "..."
