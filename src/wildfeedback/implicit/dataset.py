"""The pairwise examples of the implicit reward model: one per side-by-side query with behaviour.

An example is a query whose two replies were shown side by side, with the
behaviour features of its window and, where the user gave one, their choice
(label 1 = left preferred, 0 = right). The evaluation set is built as IFLLM
built theirs, class-balanced by label:

1. every query with two replies and a window of behaviour;
2. whose user chose a side (preference 1 or 2; IFLLM leaves some blank);
3. with at least `min_samples` gaze or mouse samples over the replies (about
   1.5 s at WebGazer's ~13 Hz): without them there is no reading to learn from;
4. balanced by label: all examples of the rarer side and as many of the other,
   drawn at random with a fixed seed, so that chance is exactly 50% and a
   model cannot score by always answering "left".

Behaviour features are also given centred on the user: each value minus the
mean of the same user's other queries (labelled or not: no label is used),
because users read differently (some always start on the left, some never move
the mouse) and a preference shows as a departure from one's own habit. A user
with a single query has no baseline: the centred value is missing.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from wildfeedback.implicit.features import window_features
from wildfeedback.implicit.ifllm import QueryWindow
from wildfeedback.schema import Conversation

MIN_SAMPLES = 20
# Behaviour columns that are also given centred on the user: the per-pair
# comparisons, where a habit (reading left first, resting the mouse on one side) shows.
CENTRED_SUFFIXES = ("_diff", "_side", "_share_left")


@dataclass
class PairExample:
    conversation: Conversation
    message_index: int
    user_id: str
    query: str
    left: str
    right: str
    label: int | None
    samples_over_replies: int
    behaviour: dict[str, float]

    @property
    def key(self) -> str:
        return f"{self.conversation.id}#{self.message_index}"


def pair_examples(sessions: Iterable[tuple[Conversation, list[QueryWindow]]]) -> list[PairExample]:
    """Every query shown with exactly two replies, its behaviour features computed from its window."""
    out = []
    for conversation, windows in sessions:
        for window in windows:
            message = window.message
            if len(message.alternatives) != 1:
                continue
            query = next((m.content for m in reversed(conversation.messages[: window.message_index])
                          if m.role == "user"), "")
            label = {0: 1, 1: 0}.get(message.preferred) if message.preferred is not None else None
            behaviour = window_features(window.gaze, window.mouse, [len(r) for r in window.replies], window.start,
                                        window.end, conversation, window.message_index)
            over = int((window.gaze.box >= 0).sum() + (window.mouse.box >= 0).sum())
            out.append(PairExample(conversation, window.message_index, conversation.user_id or "", query,
                                   message.content, message.alternatives[0].content, label, over, behaviour))
    return out


@dataclass
class Selection:
    """Which examples make the balanced evaluation set, and how many fell at each step."""

    indices: np.ndarray
    counts: dict[str, int] = field(default_factory=dict)


def balanced_selection(examples: Sequence[PairExample], min_samples: int = MIN_SAMPLES, seed: int = 0) -> Selection:
    labelled = [i for i, e in enumerate(examples) if e.label is not None]
    enough = [i for i in labelled if examples[i].samples_over_replies >= min_samples]
    by_label = {k: [i for i in enough if examples[i].label == k] for k in (0, 1)}
    n = min(len(by_label[0]), len(by_label[1]))
    rng = np.random.default_rng(seed)
    kept = [int(i) for k in (0, 1) for i in rng.choice(by_label[k], n, replace=False)] if n else []
    counts = {
        "pairs_with_behaviour": len(examples),
        "with_a_choice": len(labelled),
        f"with_{min_samples}+_samples_over_replies": len(enough),
        "left_preferred": len(by_label[1]),
        "right_preferred": len(by_label[0]),
        "balanced": 2 * n,
        "users": len({examples[i].user_id for i in kept}),
    }
    return Selection(np.array(sorted(kept), dtype=int), counts)


def behaviour_matrix(examples: Sequence[PairExample]) -> tuple[np.ndarray, list[str]]:
    """The behaviour features as a matrix (NaN where undefined), columns in a stable order."""
    if not examples:
        return np.zeros((0, 0)), []
    names = list(examples[0].behaviour)
    for e in examples:
        if list(e.behaviour) != names:
            raise ValueError(f"{e.key}: behaviour features differ from the first example's")
    return np.array([[e.behaviour[n] for n in names] for e in examples], dtype=np.float64), names


def user_centred(values: np.ndarray, names: Sequence[str], users: Sequence[str],
                 suffixes: Sequence[str] = CENTRED_SUFFIXES) -> tuple[np.ndarray, list[str]]:
    """Selected columns minus the mean of the same user's other rows (NaN-aware; NaN with no other row)."""
    columns = [j for j, n in enumerate(names) if n.endswith(tuple(suffixes))]
    rows_of: dict[str, list[int]] = defaultdict(list)
    for i, u in enumerate(users):
        rows_of[u].append(i)
    out = np.full((len(users), len(columns)), np.nan)
    block = values[:, columns]
    for rows in rows_of.values():
        sub = block[rows]
        present = ~np.isnan(sub)
        total, count = np.where(present, sub, 0.0).sum(axis=0), present.sum(axis=0)
        for k, i in enumerate(rows):
            others_total = total - np.where(present[k], sub[k], 0.0)
            others = count - present[k]
            with np.errstate(invalid="ignore", divide="ignore"):
                baseline = np.where(others > 0, others_total / np.maximum(others, 1), np.nan)
            out[i] = sub[k] - baseline
    return out, [f"{names[j]}_user_centred" for j in columns]
