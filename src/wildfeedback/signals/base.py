"""What every feedback detector is: conversations in, signals and issues out."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from wildfeedback.schema import Conversation, Signal, SignalIssue


@dataclass
class Outcome:
    """What one detector run over some conversations produced.

    `calls` and `prompt_chars` count LLM calls asked for (cache hits included);
    what they cost in tokens is on the backend's `usage`.
    """

    signals: list[Signal] = field(default_factory=list)
    issues: list[SignalIssue] = field(default_factory=list)
    calls: int = 0
    prompt_chars: int = 0

    def extend(self, other: Outcome) -> None:
        self.signals += other.signals
        self.issues += other.issues
        self.calls += other.calls
        self.prompt_chars += other.prompt_chars


class Detector(Protocol):
    name: str

    def detect(self, conversations: Iterable[Conversation]) -> Outcome: ...


class Student(Detector, Protocol):
    """A detector that labels every user turn by itself, with a confidence per signal
    (what the cascade needs to decide which turns go to the LLM)."""

    def predict(self, conversations: Iterable[Conversation]) -> list[Signal]: ...
