"""The implicit reward model: which of two replies did the user prefer, from text, behaviour, or both.

Three feature sets, one model family choice each, all calibrated:

* `text`: the student encoder's embedding differences and the replies' form
  (see `implicit.text`); logistic regression, its strength chosen by inner CV.
* `behaviour`: the window's gaze / mouse features and their user-centred
  versions (see `implicit.features`, `implicit.dataset`).
* `fused`: behaviour + the replies' form + one "text score": the out-of-fold
  logit of a logistic regression on the embedding differences, cross-fitted
  inside the training data (inner folds) so the fused model never sees a text
  score fitted on the row it is scored on. 384 embedding columns next to ~150
  behaviour ones would drown the behaviour in a tree model and in a linear one
  alike; one stacked score keeps what the text knows in one column.

For `behaviour` and `fused` the family is chosen per training set by inner
cross-validation (grouped by user when the outer folds are): logistic regression
at two strengths, or gradient-boosted trees (scikit-learn's
HistGradientBoosting, which takes missing values as they are). The chosen
model is then calibrated with Platt scaling (`CalibratedClassifierCV`,
sigmoid, 3 folds). Nothing is tuned on an outer test fold.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from sklearn.base import clone
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

FEATURE_SETS = ("text", "behaviour", "fused")
TEXT_SCORE = "text_embedding_score"


@dataclass
class PairFeatures:
    """Every column the three feature sets draw on, for the same rows."""

    behaviour: np.ndarray
    behaviour_names: list[str]
    form: np.ndarray
    form_names: list[str]
    embedding: np.ndarray

    def __len__(self) -> int:
        return len(self.behaviour)


def logistic(c: float) -> object:
    return make_pipeline(SimpleImputer(strategy="median", keep_empty_features=True), StandardScaler(),
                         LogisticRegression(C=c, max_iter=5000))


def boosted(seed: int = 0) -> object:
    return HistGradientBoostingClassifier(max_iter=150, learning_rate=0.05, max_leaf_nodes=8, min_samples_leaf=20,
                                          l2_regularization=1.0, random_state=seed)


def candidates(feature_set: str, seed: int = 0) -> dict[str, object]:
    if feature_set == "text":
        return {"logistic C=0.01": logistic(0.01), "logistic C=0.1": logistic(0.1), "logistic C=1": logistic(1.0)}
    if feature_set in ("behaviour", "fused"):
        return {"logistic C=0.01": logistic(0.01), "logistic C=0.1": logistic(0.1), "boosted trees": boosted(seed)}
    raise ValueError(f"unknown feature set {feature_set!r}; expected one of {FEATURE_SETS}")


def _splitter(y: np.ndarray, groups: np.ndarray | None, folds: int, seed: int):  # type: ignore[no-untyped-def]
    """Stratified folds, grouped when groups are given; None when the data cannot make two folds."""
    classes = np.bincount(y.astype(int), minlength=2)
    if groups is not None:
        folds = min(folds, len(set(groups.tolist())))
        if folds < 2 or classes.min() < folds:
            return None
        return StratifiedGroupKFold(folds, shuffle=True, random_state=seed).split(np.zeros(len(y)), y, groups)
    folds = min(folds, int(classes.min()))
    if folds < 2:
        return None
    return StratifiedKFold(folds, shuffle=True, random_state=seed).split(np.zeros(len(y)), y)


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


@dataclass
class ImplicitRewardModel:
    """P(the user preferred the left reply) from one feature set; see the module doc."""

    feature_set: str = "fused"
    inner_folds: int = 3
    calibration_folds: int = 3
    seed: int = 0
    chosen: str | None = None
    inner_log_loss: dict[str, float] = field(default_factory=dict)
    model: object = None
    text_model: object = None

    def design_names(self, features: PairFeatures) -> list[str]:
        if self.feature_set == "text":
            return features.form_names + [f"text_emb{i}_diff" for i in range(features.embedding.shape[1])]
        if self.feature_set == "behaviour":
            return list(features.behaviour_names)
        return list(features.behaviour_names) + features.form_names + [TEXT_SCORE]

    def _design(self, features: PairFeatures, rows: np.ndarray, text_score: np.ndarray | None = None) -> np.ndarray:
        if self.feature_set == "text":
            return np.hstack([features.form[rows], features.embedding[rows]])
        if self.feature_set == "behaviour":
            return features.behaviour[rows]
        if text_score is None:
            text_score = _logit(self.text_model.predict_proba(features.embedding[rows])[:, 1])  # type: ignore[union-attr]
        return np.hstack([features.behaviour[rows], features.form[rows], text_score[:, None]])

    def design(self, features: PairFeatures, rows: np.ndarray) -> np.ndarray:
        """The matrix the fitted model reads for these rows (the text score from the fitted text model)."""
        return self._design(features, rows)

    def fit(self, features: PairFeatures, rows: np.ndarray, y: np.ndarray,
            groups: np.ndarray | None = None) -> ImplicitRewardModel:
        rows, y = np.asarray(rows), np.asarray(y).astype(int)
        text_score = None
        if self.feature_set == "fused":
            text_score = self._cross_fit_text_score(features.embedding[rows], y, groups)
        x = self._design(features, rows, text_score)
        options = candidates(self.feature_set, self.seed)
        self.inner_log_loss = {}
        splits = _splitter(y, groups, self.inner_folds, self.seed + 1)
        if splits is not None:
            splits = list(splits)
            for name, estimator in options.items():
                p = np.zeros(len(y))
                for train, test in splits:
                    p[test] = clone(estimator).fit(x[train], y[train]).predict_proba(x[test])[:, 1]
                self.inner_log_loss[name] = float(log_loss(y, np.clip(p, 1e-6, 1 - 1e-6), labels=[0, 1]))
            self.chosen = min(self.inner_log_loss, key=self.inner_log_loss.__getitem__)
        else:
            self.chosen = next(iter(options))
        calibration = min(self.calibration_folds, int(np.bincount(y, minlength=2).min()))
        if calibration >= 2:
            self.model = CalibratedClassifierCV(clone(options[self.chosen]), method="sigmoid", cv=calibration)
        else:
            self.model = clone(options[self.chosen])
        self.model.fit(x, y)  # type: ignore[union-attr]
        return self

    def _cross_fit_text_score(self, embedding: np.ndarray, y: np.ndarray, groups: np.ndarray | None) -> np.ndarray:
        """Out-of-fold logits of the embedding model on the training rows; the model refit on them all for later."""
        base = logistic(0.1)
        score = np.zeros(len(y))
        splits = _splitter(y, groups, self.inner_folds, self.seed + 2)
        if splits is None:
            self.text_model = clone(base).fit(embedding, y)
            return _logit(self.text_model.predict_proba(embedding)[:, 1])  # type: ignore[union-attr]
        for train, test in splits:
            score[test] = _logit(clone(base).fit(embedding[train], y[train]).predict_proba(embedding[test])[:, 1])
        self.text_model = clone(base).fit(embedding, y)
        return score

    def predict_proba(self, features: PairFeatures, rows: np.ndarray) -> np.ndarray:
        """P(left preferred) for each row."""
        return self.model.predict_proba(self.design(features, np.asarray(rows)))[:, 1]  # type: ignore[union-attr]


# -- evaluation ------------------------------------------------------------------


def wilson_interval(correct: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a proportion (correct out of n)."""
    from scipy.stats import norm

    if n == 0:
        return (math.nan, math.nan)
    z = float(norm.ppf(0.5 + confidence / 2))
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (centre - half, centre + half)


def cluster_bootstrap_interval(hits: np.ndarray, groups: Sequence[str], resamples: int = 2000, seed: int = 0,
                               confidence: float = 0.95) -> tuple[float, float]:
    """Percentile interval of accuracy when whole users are resampled (pairs of one user are not independent)."""
    users = sorted(set(groups))
    index = {u: k for k, u in enumerate(users)}
    g = np.array([index[u] for u in groups])
    correct, count = np.bincount(g, weights=hits, minlength=len(users)), np.bincount(g, minlength=len(users))
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(users), size=(resamples, len(users)))
    accuracy = correct[draws].sum(axis=1) / np.maximum(count[draws].sum(axis=1), 1)
    tail = (1 - confidence) / 2
    return float(np.quantile(accuracy, tail)), float(np.quantile(accuracy, 1 - tail))


@dataclass
class CrossValidation:
    feature_set: str
    protocol: str  # "user-grouped" or "random"
    folds: int
    probability: np.ndarray  # out-of-fold P(left)
    fold_of: np.ndarray
    chosen: list[str]
    models: list[ImplicitRewardModel]
    test_rows: list[np.ndarray]

    def summary(self, y: np.ndarray, groups: Sequence[str]) -> dict[str, object]:
        from sklearn.metrics import brier_score_loss, roc_auc_score

        hits = ((self.probability >= 0.5).astype(int) == y).astype(float)
        correct, n = int(hits.sum()), len(hits)
        low, high = wilson_interval(correct, n)
        b_low, b_high = cluster_bootstrap_interval(hits, groups)
        return {
            "feature_set": self.feature_set, "protocol": self.protocol, "folds": self.folds, "n": n,
            "correct": correct, "accuracy": correct / n if n else math.nan, "wilson_95": [low, high],
            "user_bootstrap_95": [b_low, b_high],
            "log_loss": float(log_loss(y, np.clip(self.probability, 1e-6, 1 - 1e-6), labels=[0, 1])),
            "brier": float(brier_score_loss(y, self.probability)),
            "auc": float(roc_auc_score(y, self.probability)) if len(set(y.tolist())) == 2 else math.nan,
            "chosen": self.chosen,
        }


def cross_validate(features: PairFeatures, rows: np.ndarray, y: np.ndarray, groups: Sequence[str],
                   feature_set: str, protocol: str = "user-grouped", folds: int = 5, seed: int = 0,
                   inner_folds: int = 3) -> CrossValidation:
    """Out-of-fold probabilities for `rows`. user-grouped: no user in both train and test
    (StratifiedGroupKFold); random: StratifiedKFold over pairs, IFLLM's published protocol."""
    rows, y = np.asarray(rows), np.asarray(y).astype(int)
    g = np.asarray(groups)
    if protocol == "user-grouped":
        splitter = StratifiedGroupKFold(folds, shuffle=True, random_state=seed).split(rows, y, g)
    elif protocol == "random":
        splitter = StratifiedKFold(folds, shuffle=True, random_state=seed).split(rows, y)
    else:
        raise ValueError(f"unknown protocol {protocol!r}")
    probability, fold_of = np.full(len(rows), np.nan), np.full(len(rows), -1)
    chosen, models, tests = [], [], []
    for k, (train, test) in enumerate(splitter):
        model = ImplicitRewardModel(feature_set, inner_folds=inner_folds, seed=seed + k).fit(
            features, rows[train], y[train], g[train] if protocol == "user-grouped" else None)
        probability[test] = model.predict_proba(features, rows[test])
        fold_of[test] = k
        chosen.append(model.chosen or "")
        models.append(model)
        tests.append(test)
    return CrossValidation(feature_set, protocol, folds, probability, fold_of, chosen, models, tests)


# -- importances -----------------------------------------------------------------


FAMILIES = (
    ("text", ("text_",)),
    ("user-centred", ("_user_centred",)),
    ("gaze+mouse", ("gaze_mouse_",)),
    ("gaze", ("gaze_",)),
    ("mouse", ("mouse_",)),
    ("window", ("window_",)),
    ("product", ("product_",)),
)


def family_of(name: str) -> str:
    if name.endswith("_user_centred"):
        return "user-centred"
    for family, prefixes in FAMILIES:
        if family != "user-centred" and name.startswith(prefixes):
            return family
    return "other"


def permutation_importances(cv: CrossValidation, features: PairFeatures, rows: np.ndarray, y: np.ndarray,
                            repeats: int = 5, seed: int = 0) -> tuple[list[str], np.ndarray, dict[str, np.ndarray]]:
    """Per feature and per feature family: the rise in log loss when its column(s) are shuffled within each
    outer test fold, mean over repeats, one value per fold (names, per-feature [folds x features],
    per-family {family: [folds]})."""
    from sklearn.inspection import permutation_importance

    rows, y = np.asarray(rows), np.asarray(y).astype(int)
    names = cv.models[0].design_names(features)
    per_feature, per_family = [], {}
    families: dict[str, list[int]] = {}
    for j, n in enumerate(names):
        families.setdefault(family_of(n), []).append(j)
    rng = np.random.default_rng(seed)
    for model, test in zip(cv.models, cv.test_rows, strict=True):
        x, truth = model.design(features, rows[test]), y[test]
        result = permutation_importance(model.model, x, truth, scoring="neg_log_loss", n_repeats=repeats,
                                        random_state=seed)
        per_feature.append(result.importances_mean)
        base = log_loss(truth, model.model.predict_proba(x)[:, 1], labels=[0, 1])  # type: ignore[union-attr]
        for family, columns in families.items():
            rises = []
            for _ in range(repeats):
                shuffled = x.copy()
                shuffled[:, columns] = x[rng.permutation(len(x))][:, columns]
                rises.append(log_loss(truth, model.model.predict_proba(shuffled)[:, 1], labels=[0, 1]) - base)  # type: ignore[union-attr]
            per_family.setdefault(family, []).append(float(np.mean(rises)))
    return names, np.array(per_feature), {k: np.array(v) for k, v in per_family.items()}
