"""The cross-encoder fine-tunes the packaged MiniLM end to end on a few labelled turns
and then separates them (a handful of steps on CPU)."""

from __future__ import annotations

import numpy as np

from wildfeedback.signals.cross_encoder import CrossEncoder, CrossEncoderConfig, context_of
from wildfeedback.signals.labels import LABELS, LabelledTurn

REPLY = "Here is the function. " + "It sorts the list in place. " * 30 + "Let me know if this helps."


def turn(text: str, label: str) -> LabelledTurn:
    return LabelledTurn("c", "test", 2, REPLY, text, label, "sort my list")  # type: ignore[arg-type]


def test_context_reads_the_previous_turn_and_both_ends_of_the_reply() -> None:
    context = context_of(turn("thanks", "SAT"))
    assert context.startswith("sort my list [SEP] Here is the function.")
    assert context.endswith("Let me know if this helps.") and " ... " in context


def test_it_learns_to_separate_clear_cases() -> None:
    data = [turn(text, label) for _ in range(4) for text, label in
            (("no, that is wrong, redo it", "DSAT"), ("thanks, that works great", "SAT"),
             ("now explain recursion to me", "NEUTRAL"))]
    model = CrossEncoder(CrossEncoderConfig(epochs=6, batch_size=6, learning_rate=2e-4, max_length=48))
    before = model.logits(data[:3])
    model.fit(data)
    after = model.logits(data[:3])
    assert after.shape == (3, 3) and not np.allclose(before, after)
    assert [LABELS[i] for i in after.argmax(axis=1)] == ["DSAT", "SAT", "NEUTRAL"]
