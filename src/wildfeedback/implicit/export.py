"""The implicit model's choices as preference data: weighted DPO pairs and KTO labels.

For each side-by-side query the model gives P(left preferred) = p. Its choice is
the side with p >= 0.5, its confidence max(p, 1 - p) (calibrated, so a 0.7 is
right about 70% of the time on held-out users). That becomes:

* a `PreferencePair` (kind `pairwise`): chosen = the reply the model picked,
  `confidence` = the model's probability for it — the weight the training
  recipe's confidence-weighted DPO reads (and the reward-model export's margin);
* two `UnpairedExample`s (KTO): the picked reply labelled desirable, the other
  undesirable, each with the same confidence.

Both go through `PreferenceExporter`, like the pairs made from text signals.
Metadata says where each record came from (`implicit_model`), which feature
set, whether the probability is out-of-fold (the model never saw the user's own
choice) or from a model fit on all labelled pairs (queries without a choice),
and, where the user did choose, what they chose — so agreement can be audited.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from wildfeedback.implicit.dataset import PairExample
from wildfeedback.preferences.candidates import chat_turns, stable_id
from wildfeedback.preferences.export import PreferenceExporter
from wildfeedback.schema import PreferencePair, UnpairedExample

DETECTOR = "implicit-reward"


def choice_records(example: PairExample, p_left: float, feature_set: str, out_of_fold: bool,
                   extra: dict[str, Any] | None = None) -> tuple[PreferencePair, list[UnpairedExample]]:
    """The pair and the two KTO examples for one query, from the model's P(left preferred)."""
    if not 0.0 <= p_left <= 1.0 or math.isnan(p_left):
        raise ValueError(f"{example.key}: probability {p_left!r} is not in [0, 1]")
    left_wins = p_left >= 0.5
    confidence = p_left if left_wins else 1.0 - p_left
    chosen, rejected = (example.left, example.right) if left_wins else (example.right, example.left)
    chosen_side = 0 if left_wins else 1
    conversation = example.conversation
    prompt = chat_turns(conversation.messages[: example.message_index])
    metadata: dict[str, Any] = {
        "source_model": "implicit_model",
        "feature_set": feature_set,
        "out_of_fold": out_of_fold,
        "p_left": round(float(p_left), 6),
        "chosen_alternative": chosen_side,
        "rejected_alternative": 1 - chosen_side,
        "user_id": example.user_id,
        **(extra or {}),
    }
    if example.label is not None:
        user_side = 0 if example.label == 1 else 1
        metadata["user_preferred_alternative"] = user_side
        metadata["agrees_with_user"] = user_side == chosen_side
    detector = f"{DETECTOR}/{feature_set}"
    pair = PreferencePair(
        id=stable_id("implicit", conversation.id, example.message_index, feature_set),
        kind="pairwise",
        prompt=prompt,
        chosen=chosen,
        rejected=rejected,
        source=conversation.source,
        conversation_id=conversation.id,
        turn_index=example.message_index,
        confidence=round(float(confidence), 6),
        detector=detector,
        metadata=metadata,
    )
    unpaired = [
        UnpairedExample(
            id=stable_id("implicit-kto", conversation.id, example.message_index, feature_set, side),
            prompt=prompt,
            completion=text,
            label=side == chosen_side,
            source=conversation.source,
            conversation_id=conversation.id,
            turn_index=example.message_index,
            confidence=round(float(confidence), 6),
            detector=detector,
            metadata={**metadata, "alternative": side},
        )
        for side, text in ((0, example.left), (1, example.right))
    ]
    return pair, unpaired


def export_choices(examples: Sequence[PairExample], p_left: Sequence[float], out_of_fold: Sequence[bool],
                   directory: str, feature_set: str = "fused", card: dict[str, Any] | None = None,
                   min_confidence: float = 0.0) -> dict[str, int]:
    """Write every example's pair and KTO labels under `directory` (dpo/, kto/, rm/, README.md).

    Choices less confident than `min_confidence` are left out and counted.
    Returns the counts written and left out.
    """
    if not len(examples) == len(p_left) == len(out_of_fold):
        raise ValueError("examples, probabilities and out-of-fold flags differ in length")
    exporter = PreferenceExporter(directory)
    counts = {"pairs": 0, "unpaired": 0, "below_min_confidence": 0}
    try:
        for example, p, oof in zip(examples, p_left, out_of_fold, strict=True):
            pair, unpaired = choice_records(example, float(p), feature_set, bool(oof))
            if (pair.confidence or 0.0) < min_confidence:
                counts["below_min_confidence"] += 1
                continue
            exporter.add_pair(pair)
            counts["pairs"] += 1
            for record in unpaired:
                exporter.add_unpaired(record)
                counts["unpaired"] += 1
    except BaseException:
        exporter.abort()
        raise
    exporter.close({"made by": "wildfeedback implicit reward model (IFLLM behaviour)", "feature set": feature_set,
                    "min confidence": min_confidence, **(card or {})})
    return counts
