"""Calibrated probabilities and a DSAT threshold chosen for precision.

A classifier trained with balanced class weights, or on a sample enriched with
feedback turns, says "DSAT" more often than real users are dissatisfied. Two
things fix what downstream stages read, both fitted on out-of-fold scores only
(never on the turns a model was fitted on):

* **Vector scaling** (a temperature and one bias per class on the logits, fitted
  by maximum likelihood on the turns of a uniform sample): the probabilities then
  match how often users really are (dis)satisfied, so their mean over a corpus
  estimates its SAT / DSAT rates whatever threshold labels the turns.
* **Thresholds**: preference pairs are built from DSAT turns, so a turn is
  labelled DSAT only when P(DSAT) reaches the threshold with the best DSAT F1 among
  those whose out-of-fold precision is at least `TARGET_PRECISION`; SAT likewise
  with the best SAT F1; every other turn is NEUTRAL.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy.optimize import minimize

from wildfeedback.signals.labels import LABELS

TARGET_PRECISION = 0.80
_GRID = np.round(np.arange(0.05, 0.96, 0.01), 2)


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


@dataclass(frozen=True)
class Calibration:
    temperature: float = 1.0
    bias: tuple[float, ...] = (0.0, 0.0, 0.0)  # added to the scaled logits, in LABELS order
    dsat_threshold: float | None = None  # None: argmax
    sat_threshold: float | None = None

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        return softmax(logits / self.temperature + np.asarray(self.bias))

    def labels(self, probabilities: np.ndarray) -> list[str]:
        """DSAT at its threshold first (pairs need it precise), then SAT, else NEUTRAL;
        argmax where no threshold was chosen."""
        if self.dsat_threshold is None or self.sat_threshold is None:
            return [LABELS[int(i)] for i in probabilities.argmax(axis=1)]
        sat, dsat = LABELS.index("SAT"), LABELS.index("DSAT")
        out = []
        for row in probabilities:
            if row[dsat] >= self.dsat_threshold:
                out.append("DSAT")
            elif row[sat] >= self.sat_threshold:
                out.append("SAT")
            else:
                out.append("NEUTRAL")
        return out

    def as_dict(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, object] | None) -> Calibration:
        if not data:
            return cls()
        return cls(float(data["temperature"]), tuple(float(b) for b in data["bias"]),  # type: ignore[arg-type, union-attr]
                   _optional(data.get("dsat_threshold")), _optional(data.get("sat_threshold")))


def _optional(value: object) -> float | None:
    return None if value is None else float(value)  # type: ignore[arg-type]


def fit_vector_scaling(logits: np.ndarray, gold: Sequence[str]) -> tuple[float, tuple[float, ...]]:
    """(temperature, per-class bias) minimising the log-loss of softmax(logits / T + b)."""
    y = np.array([LABELS.index(g) for g in gold])
    if len(y) == 0:
        return 1.0, (0.0,) * len(LABELS)

    def loss(params: np.ndarray) -> float:
        probabilities = softmax(logits / np.exp(params[0]) + params[1:])
        return float(-np.mean(np.log(probabilities[np.arange(len(y)), y] + 1e-12)) + 1e-3 * np.sum(params[1:] ** 2))

    result = minimize(loss, np.zeros(1 + len(LABELS)), method="L-BFGS-B")
    bias = result.x[1:] - result.x[1:].mean()
    return float(np.exp(result.x[0])), tuple(round(float(b), 6) for b in bias)


def choose_threshold(scores: np.ndarray, positive: np.ndarray, min_precision: float | None) -> float | None:
    """The threshold with the best F1 (among those reaching `min_precision`, if given);
    None when no threshold labels anything correctly."""
    best, best_f1 = None, 0.0
    total = int(positive.sum())
    for threshold in _GRID:
        chosen = scores >= threshold
        hits = int((chosen & positive).sum())
        if hits == 0:
            continue
        precision, recall = hits / int(chosen.sum()), hits / total
        if min_precision is not None and precision < min_precision:
            continue
        f1 = 2 * precision * recall / (precision + recall)
        if f1 > best_f1:
            best, best_f1 = float(threshold), f1
    return best


def fit_calibration(logits: np.ndarray, gold: Sequence[str], uniform: np.ndarray | None = None,
                    min_precision: float = TARGET_PRECISION) -> Calibration:
    """Vector scaling on the uniform-sample turns (all when none is marked), thresholds
    on every turn; `logits` must be out-of-fold."""
    gold = list(gold)
    uniform = np.ones(len(gold), dtype=bool) if uniform is None or not uniform.any() else uniform
    temperature, bias = fit_vector_scaling(logits[uniform], [g for g, u in zip(gold, uniform, strict=True) if u])
    thresholds = fit_thresholds(softmax(logits / temperature + np.asarray(bias)), gold, min_precision)
    return Calibration(temperature, bias, thresholds.dsat_threshold, thresholds.sat_threshold)


def fit_thresholds(probabilities: np.ndarray, gold: Sequence[str],
                   min_precision: float = TARGET_PRECISION) -> Calibration:
    """Thresholds only, for probabilities that are already calibrated (argmax when either
    label has no threshold that finds any of its turns)."""
    y = np.array(list(gold))
    dsat = choose_threshold(probabilities[:, LABELS.index("DSAT")], y == "DSAT", min_precision)
    sat = choose_threshold(probabilities[:, LABELS.index("SAT")], y == "SAT", None)
    if dsat is None or sat is None:
        return Calibration()
    return Calibration(dsat_threshold=dsat, sat_threshold=sat)
