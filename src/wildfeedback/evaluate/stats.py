"""The statistics of an evaluation, each small enough to check by hand.

* `length_penalised`: WildBench's rule: a *slight* win (score ±1) becomes a tie
  when the winning reply is more than `k` characters longer than the losing one
  (judges favour length); `k = -1` switches the rule off. Clear wins (±2) stand.
* `rates`: win / tie / loss shares of the judged items; items the judge could
  not score are counted apart, never dropped silently.
* `bootstrap_ci`: a percentile bootstrap CI of any statistic over items (scipy).
* `wb_score`: WildBench's rescaling of a 1-10 score, (s - 5) * 2.
* `agreement`: a detector's or a judge's labels against people's: accuracy,
  Cohen's kappa, per-class precision / recall / F1, confusion matrix.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np


def length_penalised(score: int, winner_chars: int, loser_chars: int, k: int = 500) -> int:
    """`score` in -2..2 from the first reply's side; lengths of the winner and the loser."""
    if k < 0 or abs(score) != 1:
        return score
    return 0 if winner_chars - loser_chars > k else score


def penalise(score: int, first_chars: int, second_chars: int, k: int = 500) -> int:
    """`length_penalised` with the lengths given in the comparison's order (first, second)."""
    if score > 0:
        return length_penalised(score, first_chars, second_chars, k)
    if score < 0:
        return length_penalised(score, second_chars, first_chars, k)
    return 0


def rates(scores: Sequence[int | None]) -> dict[str, float | int]:
    """Shares of wins (> 0), ties (0) and losses (< 0) among the scored items, and the
    mean WildBench reward (+100 much better, +50 better, 0, -50, -100)."""
    judged = [s for s in scores if s is not None]
    n = len(judged)
    out: dict[str, float | int] = {"n": n, "unscored": len(scores) - n}
    if not n:
        return {**out, "win": 0.0, "tie": 0.0, "loss": 0.0, "reward": 0.0}
    array = np.array(judged)
    return {
        **out,
        "win": float((array > 0).mean()),
        "tie": float((array == 0).mean()),
        "loss": float((array < 0).mean()),
        "reward": float((array * 50).mean()),
    }


def bootstrap_ci(values: Sequence[float], statistic: Callable[[np.ndarray], float] = np.mean,
                 confidence: float = 0.95, resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of `statistic` over `values` (items resampled with replacement)."""
    from scipy.stats import bootstrap

    data = np.asarray(values, dtype=float)
    if len(data) == 0:
        return (float("nan"), float("nan"))
    if len(data) == 1 or np.all(data == data[0]):
        value = float(statistic(data))
        return (value, value)
    result = bootstrap((data,), statistic, confidence_level=confidence, n_resamples=resamples, method="percentile",
                       random_state=np.random.default_rng(seed), vectorized=False)
    return (float(result.confidence_interval.low), float(result.confidence_interval.high))


def rates_with_ci(scores: Sequence[int | None], confidence: float = 0.95, resamples: int = 2000,
                  seed: int = 0) -> dict[str, Any]:
    """`rates` plus a bootstrap CI for each rate and for the reward."""
    judged = np.array([s for s in scores if s is not None], dtype=float)
    out: dict[str, Any] = dict(rates(scores))
    for name, statistic in (("win", lambda a: (a > 0).mean()), ("tie", lambda a: (a == 0).mean()),
                            ("loss", lambda a: (a < 0).mean()), ("reward", lambda a: (a * 50).mean())):
        out[f"{name}_ci"] = bootstrap_ci(judged, statistic, confidence, resamples, seed)
    out["confidence"] = confidence
    return out


def wb_score(score: float) -> float:
    """WildBench's rescaling of a 1-10 checklist score: 5 (mediocre) maps to 0."""
    return (score - 5.0) * 2.0


def agreement(gold: Sequence[str], predicted: Sequence[str], labels: Sequence[str] | None = None) -> dict[str, Any]:
    """How far `predicted` agrees with `gold` (people's labels), item by item."""
    from sklearn.metrics import accuracy_score, cohen_kappa_score, confusion_matrix, precision_recall_fscore_support

    if len(gold) != len(predicted):
        raise ValueError(f"{len(gold)} gold labels but {len(predicted)} predicted ones")
    if not gold:
        raise ValueError("no items to compare")
    classes = list(labels) if labels is not None else sorted(set(gold) | set(predicted))
    precision, recall, f1, support = precision_recall_fscore_support(gold, predicted, labels=classes,
                                                                     zero_division=0)
    return {
        "n": len(gold),
        "accuracy": float(accuracy_score(gold, predicted)),
        "kappa": float(cohen_kappa_score(gold, predicted, labels=classes)),
        "labels": classes,
        "per_class": {c: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
                      for c, p, r, f, s in zip(classes, precision, recall, f1, support, strict=True)},
        "confusion": confusion_matrix(gold, predicted, labels=classes).tolist(),  # rows: gold, columns: predicted
    }
