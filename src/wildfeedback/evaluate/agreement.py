"""`evaluate agreement`: how far a detector or a judge agrees with people.

* **Signals vs people's turn labels**: a detector's signals against the labels the
  sources carry (USS annotators' ratings, IFLLM users' Likert scores, thumbs),
  turn by turn, with the label rules of `signals.labels`.
* **A judge vs people's choices**: on side-by-side pairs where a person picked one
  reply (IFLLM pairwise tasks, HH-RLHF), the checklist judge compares the two in
  both orders; its verdict (A, B, or a tie) is set against the person's (A or B).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from wildfeedback.evaluate.judge import ChecklistJudge
from wildfeedback.evaluate.stats import agreement
from wildfeedback.schema import Conversation, Signal
from wildfeedback.signals.labels import LABELS, examples_from

GENERIC_CHECKLIST = ("Does the reply answer what the user asked?", "Is it correct?", "Is it clear and well organised?")


def signal_agreement(conversations: Iterable[Conversation], signals: Iterable[Signal]) -> dict[str, Any]:
    gold = {(e.conversation_id, e.turn_index): e.label for e in examples_from(conversations)}
    if not gold:
        raise ValueError("the conversations carry no turn labels (USS ratings, IFLLM Likert, thumbs) to compare with")
    predicted = {(s.conversation_id, s.turn_index): s.label for s in signals}
    matched = [key for key in gold if key in predicted]
    if not matched:
        raise ValueError(f"none of the {len(gold)} labelled turns has a signal: were the signals made from these "
                         "conversations?")
    result = agreement([gold[k] for k in matched], [predicted[k] for k in matched], labels=LABELS)
    result.update(labelled_turns=len(gold), without_signal=len(gold) - len(matched))
    return result


def side_by_side(conversations: Iterable[Conversation]) -> list[tuple[Sequence[Any], str, str, str]]:
    """(prompt, reply A, reply B, the person's choice "A"/"B") for every message shown beside
    one alternative with a recorded preference."""
    from wildfeedback.preferences.candidates import chat_turns

    out = []
    for conversation in conversations:
        for message in conversation.messages:
            if message.role != "assistant" or message.preferred is None or len(message.alternatives) != 1:
                continue
            if message.index == 0 or message.content == message.alternatives[0].content:
                continue
            out.append((chat_turns(conversation.messages[: message.index]), message.content,
                        message.alternatives[0].content, "A" if message.preferred == 0 else "B"))
    return out


def judge_agreement(conversations: Iterable[Conversation], judge: ChecklistJudge,
                    limit: int | None = None) -> dict[str, Any]:
    items = side_by_side(conversations)[:limit]
    if not items:
        raise ValueError("no side-by-side pairs with a person's choice in these conversations")
    comparisons = judge.compare_many([(prompt, a, b, GENERIC_CHECKLIST) for prompt, a, b, _ in items])
    gold, predicted, unscored = [], [], 0
    for (_, _, _, person), comparison in zip(items, comparisons, strict=True):
        if comparison.score is None:
            unscored += 1
            continue
        gold.append(person)
        predicted.append("A" if comparison.score > 0 else "B" if comparison.score < 0 else "tie")
    if not gold:
        raise ValueError(f"the judge scored none of the {len(items)} pairs")
    result = agreement(gold, predicted, labels=["A", "B", "tie"])
    result.update(pairs=len(items), unscored=unscored, judge=judge.backend.model)
    return result
