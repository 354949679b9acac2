"""Training the student detector from any labelled turns, with an honest held-out estimate.

Labels come from the sources' own ground truth (`labels.examples_from`: USS
ratings, IFLLM Likert, OASST votes, thumbs and ratings from a product), or are
distilled from another detector's signals (`examples_from_signals`: e.g. the
LLM detector run over a sample, categories included).

`train_with_holdout` holds out a share of *conversations* (never turns of one
conversation on both sides), measures the model fitted on the rest, then refits
on everything: the metrics describe the method, the shipped model uses all data.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from wildfeedback.schema import Conversation, Signal
from wildfeedback.signals.encoder import Encoder
from wildfeedback.signals.labels import LABELS, LabelledTurn, candidate_turns, counts
from wildfeedback.signals.rubric import Rubric
from wildfeedback.signals.student import (
    StudentDetector,
    expected_calibration_error,
    featurize,
    fit_temperature,
    train_student,
)


def examples_from_signals(conversations: Iterable[Conversation], signals: Iterable[Signal]) -> list[LabelledTurn]:
    """Turns labelled by another detector's signals (matched on conversation id and turn index)."""
    by_turn = {(s.conversation_id, s.turn_index): s for s in signals}
    out = []
    for conversation in conversations:
        for turn, reply, previous_user, position in candidate_turns(conversation):
            signal = by_turn.get((conversation.id, turn.index))
            if signal is None:
                continue
            out.append(
                LabelledTurn(
                    conversation.id, conversation.source, turn.index, reply.content, turn.content, signal.label,
                    previous_user, position, tuple(signal.categories),
                )
            )
    return out


def split_by_conversation(examples: Sequence[LabelledTurn], share: float, seed: int = 0) -> np.ndarray:
    """A mask of the examples whose conversation falls in the held-out `share`."""
    keys = sorted({(e.source, e.conversation_id) for e in examples})
    draws = np.random.default_rng(seed).random(len(keys))
    held = {k for k, r in zip(keys, draws, strict=True) if r < share}
    return np.array([(e.source, e.conversation_id) in held for e in examples], dtype=bool)


def turn_metrics(gold: Sequence[str], probabilities: np.ndarray) -> dict[str, Any]:
    from sklearn.metrics import accuracy_score, f1_score

    predicted = [LABELS[k] for k in probabilities.argmax(axis=1)]
    majority = max(LABELS, key=list(gold).count)
    return {
        "n": len(gold),
        "accuracy": round(100 * accuracy_score(gold, predicted), 1),
        "weighted_f1": round(100 * f1_score(gold, predicted, average="weighted", zero_division=0), 1),
        "majority_accuracy": round(100 * list(gold).count(majority) / max(len(gold), 1), 1),
        "ece": round(100 * expected_calibration_error(probabilities, gold), 2),
    }


def train_with_holdout(
    examples: Sequence[LabelledTurn],
    *,
    c: float = 0.0005,
    holdout: float = 0.2,
    seed: int = 0,
    rubric: Rubric | None = None,
    encoder: Encoder | None = None,
    features: np.ndarray | None = None,
    info: dict[str, Any] | None = None,
) -> tuple[StudentDetector, dict[str, Any]]:
    """(the model fitted on every example, held-out metrics of the same recipe)."""
    if not examples:
        raise ValueError("no labelled turns to train on")
    x = features if features is not None else featurize(examples, encoder)
    labels = [e.label for e in examples]
    metrics: dict[str, Any] = {"trained_on": counts(examples)}
    test = split_by_conversation(examples, holdout, seed) if holdout > 0 else np.zeros(len(examples), dtype=bool)
    if test.any() and (~test).any():
        train_rows, test_rows = np.flatnonzero(~test), np.flatnonzero(test)
        probe = train_student([examples[i] for i in train_rows], c=c, features=x[train_rows], rubric=rubric)
        gold = [labels[i] for i in test_rows]
        raw = probe.proba_features(x[test_rows])
        temperature = fit_temperature(probe.logits(x[test_rows]), gold)
        sources = [examples[i].source for i in test_rows]
        metrics["held_out"] = {
            "share": holdout,
            "seed": seed,
            **turn_metrics(gold, raw),
            "temperature_fit": round(temperature, 3),
            "per_source": {
                source: turn_metrics([g for g, s in zip(gold, sources, strict=True) if s == source],
                                     raw[[s == source for s in sources]])
                for source in sorted(set(sources))
            },
        }
    model = train_student(examples, c=c, features=x, rubric=rubric, encoder=encoder,
                          info={**(info or {}), "c": c, "metrics": metrics})
    return model, metrics
