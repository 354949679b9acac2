"""Why a user was (dis)satisfied: rubric categories for the student detector.

None of the real labelled sources says *why* (USS, IFLLM and OASST give a
rating, not a reason), so the shipped student names categories zero-shot: the
category of the label's polarity whose rubric description is nearest to the
user turn in the same MiniLM space the student reads. When a team trains the
student on labels that do carry categories (distilled from the LLM detector,
or their own annotations), it learns one logistic head per category instead.
Both return the chosen categories and every score, so the choice is auditable.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from wildfeedback.signals.encoder import Encoder
from wildfeedback.signals.rubric import Rubric

MIN_POSITIVES = 3  # a category head needs at least this many positive turns


@dataclass
class ZeroShotCategories:
    names: list[tuple[str, str]]  # (polarity, category name), one per row of `vectors`
    vectors: np.ndarray  # unit embeddings of "name: description"
    margin: float = 0.03  # also keep a runner-up this close to the best

    @classmethod
    def for_rubric(cls, rubric: Rubric, encoder: Encoder) -> ZeroShotCategories:
        names, texts = [], []
        for polarity in ("SAT", "DSAT"):
            for category in rubric.categories(polarity):  # type: ignore[arg-type]
                names.append((polarity, category.name))
                texts.append(f"{category.name}: {category.description}")
        return cls(names, encoder.encode(texts))

    def choose(self, turn_vectors: np.ndarray, labels: Sequence[str]) -> tuple[list[list[str]], list[dict[str, float]]]:
        similarity = turn_vectors @ self.vectors.T
        return _pick(self.names, similarity, labels, lambda best, row: row >= best - self.margin)


@dataclass
class CategoryHeads:
    names: list[tuple[str, str]]
    coef: np.ndarray  # (categories, features), on the student's standardised features
    intercept: np.ndarray

    def proba(self, standardised: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-(standardised @ self.coef.T + self.intercept)))

    def choose(self, probabilities: np.ndarray, labels: Sequence[str]) -> tuple[list[list[str]], list[dict[str, float]]]:
        # Every category the heads think likelier than not; at least the best one.
        return _pick(self.names, probabilities, labels, lambda best, row: row >= 0.5)

    @classmethod
    def fit(
        cls, standardised: np.ndarray, categories: Sequence[Sequence[str]], rubric: Rubric, c: float = 0.01
    ) -> CategoryHeads | None:
        """One-vs-rest logistic heads for every rubric category with enough positive turns."""
        from sklearn.linear_model import LogisticRegression

        names, coefs, intercepts = [], [], []
        for polarity in ("SAT", "DSAT"):
            for category in rubric.categories(polarity):  # type: ignore[arg-type]
                y = np.array([category.name in row for row in categories])
                if y.sum() < MIN_POSITIVES or y.all():
                    continue
                head = LogisticRegression(C=c, max_iter=300, class_weight="balanced").fit(standardised, y)
                names.append((polarity, category.name))
                coefs.append(head.coef_[0])
                intercepts.append(head.intercept_[0])
        if not names:
            return None
        return cls(names, np.array(coefs), np.array(intercepts))


def _pick(names, scores, labels, keep):  # type: ignore[no-untyped-def]
    chosen: list[list[str]] = []
    details: list[dict[str, float]] = []
    for row, label in zip(scores, labels, strict=True):
        columns = [k for k, (polarity, _) in enumerate(names) if polarity == label]
        if not columns:
            chosen.append([])
            details.append({})
            continue
        values = row[columns]
        best = float(values.max())
        order = np.argsort(-values)
        picked = [names[columns[k]][1] for k in order if k == order[0] or keep(best, values[k])]
        chosen.append(picked)
        details.append({names[columns[k]][1]: round(float(values[k]), 4) for k in order})
    return chosen, details
