"""What the HTML report shows, gathered while a run streams (no second pass over the data).

`ReportData` is filled by the pipeline as records go by: counts for the funnel and
the drops, the signals' labels, categories and positions, the lengths of chosen
and rejected replies, and a few example pairs. Everything in it is plain data
(numbers, strings, lists), so the report can also be written from a saved JSON.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from wildfeedback.schema import PreferencePair, Signal

MAX_EXAMPLES = 12


@dataclass
class ExamplePair:
    kind: str
    conversation_id: str
    prompt_last_user: str  # the last user message of the prompt
    rejected: str
    chosen: str
    feedback: str | None  # the user's feedback turn that made the pair, if any
    evidence: str | None  # the words of `feedback` that show it (a substring of it)
    categories: list[str]
    preferences: str | None
    checklist: list[str]


@dataclass
class ReportData:
    title: str = "wildfeedback run"
    settings: dict[str, Any] = field(default_factory=dict)  # input, detector, models, caps: shown as given
    funnel: dict[str, int] = field(default_factory=dict)  # ordered stages: conversations read -> ... -> pairs
    drops: dict[str, int] = field(default_factory=dict)  # "stage: reason" -> count
    labels: Counter[str] = field(default_factory=Counter)  # SAT / DSAT / NEUTRAL signals
    # Sums of the detector's calibrated probabilities per label, over the turns that carry them
    # (`metadata.probabilities`): their mean estimates how often users are (dis)satisfied, while
    # `labels` counts the turns labelled at thresholds chosen for precision.
    probability_sums: Counter[str] = field(default_factory=Counter)
    probability_turns: int = 0
    categories: dict[str, Counter[str]] = field(default_factory=lambda: {"SAT": Counter(), "DSAT": Counter()})
    # Where feedback occurs: the user turn's position among the conversation's user turns (1 = first
    # reaction to a reply), per label.
    positions: dict[str, Counter[int]] = field(default_factory=lambda: {"SAT": Counter(), "DSAT": Counter()})
    chosen_chars: list[int] = field(default_factory=list)
    rejected_chars: list[int] = field(default_factory=list)
    pair_kinds: Counter[str] = field(default_factory=Counter)
    examples: list[ExamplePair] = field(default_factory=list)
    seconds: float = 0.0

    def add_signals(self, signals: list[Signal], positions: dict[tuple[str, int], int]) -> None:
        """`positions`: (conversation id, turn index) -> 1-based position of that user turn."""
        for signal in signals:
            self.labels[signal.label] += 1
            probabilities = (signal.metadata or {}).get("probabilities")
            if isinstance(probabilities, dict) and probabilities:
                self.probability_turns += 1
                self.probability_sums.update({k: float(v) for k, v in probabilities.items()})
            if signal.label in ("SAT", "DSAT"):
                self.categories[signal.label].update(signal.categories or ["(none)"])
                position = positions.get((signal.conversation_id, signal.turn_index))
                if position is not None:
                    self.positions[signal.label][position] += 1

    def estimated_rates(self) -> dict[str, float]:
        """Per label, the mean probability over the turns that carry probabilities, in %."""
        if not self.probability_turns:
            return {}
        return {k: round(100 * v / self.probability_turns, 1) for k, v in sorted(self.probability_sums.items())}

    def add_pair(self, pair: PreferencePair, feedback: str | None = None) -> None:
        self.pair_kinds[pair.kind] += 1
        self.chosen_chars.append(len(pair.chosen))
        self.rejected_chars.append(len(pair.rejected))
        if len(self.examples) < MAX_EXAMPLES:
            last_user = next((t.content for t in reversed(pair.prompt) if t.role == "user"), "")
            self.examples.append(
                ExamplePair(pair.kind, pair.conversation_id, last_user, pair.rejected, pair.chosen, feedback,
                            pair.evidence, list(pair.categories), pair.preferences, list(pair.checklist))
            )

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["labels"] = dict(self.labels)
        data["probability_sums"] = {k: round(v, 4) for k, v in self.probability_sums.items()}
        data["estimated_rates"] = self.estimated_rates()
        data["categories"] = {k: dict(v) for k, v in self.categories.items()}
        data["positions"] = {k: {str(p): n for p, n in sorted(v.items())} for k, v in self.positions.items()}
        data["pair_kinds"] = dict(self.pair_kinds)
        return data
