"""The cascade: the student labels every turn; only the turns it is unsure about go
to the LLM detector.

"Unsure" means the student's top probability is below `threshold`. The LLM
still makes one call per conversation, but lists only those turns, so a
conversation the student is sure about costs nothing. A turn the LLM could not
label (a failed call, a dropped label) keeps the student's reading, marked
`metadata.by = "student"` with the reason, so every turn keeps a signal and the
issue is still recorded. Every signal keeps the student's calibrated
probabilities (`metadata.probabilities`), so a report's estimated rates average
over all turns, not only those the student was sure of.

`CascadeStats` says what was saved: LLM calls made against the calls an
LLM-only run would have made on the same conversations, and likewise the
prompt characters (tokens are counted by the backend for the calls made).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from wildfeedback.schema import Conversation
from wildfeedback.signals.base import Outcome, Student
from wildfeedback.signals.llm_detector import LLMDetector

DETECTOR = "cascade"


@dataclass
class CascadeStats:
    turns: int = 0
    deferred_turns: int = 0
    llm_calls: int = 0
    llm_only_calls: int = 0
    prompt_chars: int = 0
    llm_only_prompt_chars: int = 0

    def add(self, other: CascadeStats) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def as_dict(self) -> dict[str, float]:
        def share(part: int, whole: int) -> float:
            return round(1 - part / whole, 4) if whole else 0.0

        return {
            **{name: getattr(self, name) for name in self.__dataclass_fields__},
            "deferred_share": round(self.deferred_turns / self.turns, 4) if self.turns else 0.0,
            "calls_saved_share": share(self.llm_calls, self.llm_only_calls),
            "prompt_chars_saved_share": share(self.prompt_chars, self.llm_only_prompt_chars),
        }


@dataclass
class CascadeDetector:
    student: Student
    llm: LLMDetector
    threshold: float = 0.8
    name: str = DETECTOR
    stats: CascadeStats = field(default_factory=CascadeStats)

    def __post_init__(self) -> None:
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {self.threshold}")

    def detect(self, conversations: Iterable[Conversation]) -> Outcome:
        conversations = list(conversations)
        first = self.student.predict(conversations)
        unsure: dict[str, list[int]] = {}
        for signal in first:
            if (signal.confidence or 0.0) < self.threshold:
                unsure.setdefault(signal.conversation_id, []).append(signal.turn_index)
        second = self.llm.detect(conversations, turns=unsure)
        by_llm = {(s.conversation_id, s.turn_index): s for s in second.signals}
        problems = {(i.conversation_id, i.turn_index): i for i in second.issues if i.dropped}
        whole = {i.conversation_id: i for i in second.issues if i.dropped and i.turn_index is None}

        outcome = Outcome(issues=list(second.issues), calls=second.calls, prompt_chars=second.prompt_chars)
        for signal in first:
            key = (signal.conversation_id, signal.turn_index)
            student = {"label": signal.label, "confidence": signal.confidence}
            if key in by_llm:
                llm = by_llm[key]
                metadata = {**llm.metadata, "by": "llm", "student": student}
                if "probabilities" in signal.metadata:  # the student's, calibrated: what rate estimates average
                    metadata["probabilities"] = signal.metadata["probabilities"]
                outcome.signals.append(llm.model_copy(update={"detector": self.name, "metadata": metadata}))
            else:
                metadata = {**signal.metadata, "by": "student"}
                problem = problems.get(key) or whole.get(signal.conversation_id)
                if signal.turn_index in unsure.get(signal.conversation_id, ()):
                    metadata["llm_failed"] = f"{problem.kind}: {problem.message}" if problem else "no label"
                outcome.signals.append(signal.model_copy(update={"detector": self.name, "metadata": metadata}))

        baseline_calls = baseline_chars = 0
        for conversation in conversations:
            for _, prompt in self.llm.requests(conversation):
                baseline_calls += 1
                baseline_chars += len(prompt)
        self.stats.add(
            CascadeStats(
                turns=len(first),
                deferred_turns=sum(len(v) for v in unsure.values()),
                llm_calls=second.calls,
                llm_only_calls=baseline_calls,
                prompt_chars=second.prompt_chars,
                llm_only_prompt_chars=baseline_chars,
            )
        )
        return outcome
