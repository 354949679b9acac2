"""The lexical student: what the user's own words say about the reply before them.

On LLM-era chats the feedback sits in the user's wording — "no, I meant ...",
"shorter please", "that's wrong", "thanks, now ..." — more than in what the
turn is about, which is what a sentence embedding captures. This student reads
TF-IDF n-grams of the user turn (words 1-2 and characters 2-5 of its first 1,000
characters) and, with less weight, word n-grams of the user's previous turn (a
repeated request) and of the reply's start and end (a reply cut off, a question
the user answers), through a multinomial logistic regression. It needs no
encoder, so it labels thousands of turns a second on one core.

The n-grams are hashed (scikit-learn's `HashingVectorizer`), so no vocabulary
is shipped: a block's inverse document frequencies and the weights exist only
for buckets seen in training, and are stored sparse (`lexical.npz`), beside
`lexical.json` (classes, blocks, category names, provenance). No pickle.

It is the default detector (`make_detector("student")`), shipped in
`models/lexical/` and rebuilt by `scripts/train_lexical_student.py`; `train_lexical`
is that recipe (calibration on out-of-fold scores, see `calibration.py`), and
`wildfeedback bench feedback` measures it under the ShareGPT labels' own folds.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from wildfeedback.evaluate.stats import agreement
from wildfeedback.schema import Conversation, Signal
from wildfeedback.signals.base import Outcome
from wildfeedback.signals.calibration import Calibration, fit_calibration
from wildfeedback.signals.labels import LABELS, LabelledTurn, counts
from wildfeedback.signals.rubric import Rubric, load_rubric
from wildfeedback.signals.student import evidence_for, turns_of

DETECTOR = "student"
FORMAT = "wildfeedback-lexical-student/2"
DEFAULT_DIR = Path(__file__).resolve().parents[1] / "models" / "lexical"
BUCKETS = 2**18  # per block; collisions among the few hundred thousand n-grams of chat text are rare
USER_CHARS = 1000  # the cues sit at the start of a turn; a pasted document after them is noise
REPLY_HEAD, REPLY_TAIL = 600, 300
MIN_CATEGORY_POSITIVES = 5
INNER_FOLDS = 5


def _reply_head(turn: LabelledTurn) -> str:
    return turn.context[:REPLY_HEAD]


def _reply_tail(turn: LabelledTurn) -> str:
    return turn.context[-REPLY_TAIL:] if len(turn.context) > REPLY_HEAD else ""


@dataclass(frozen=True)
class Block:
    """One group of hashed n-grams: which text, which n-grams, how much weight."""

    name: str
    text: Callable[[LabelledTurn], str]
    analyzer: str  # "word" or "char_wb"
    ngrams: tuple[int, int]
    weight: float

    def vectorizer(self) -> Any:
        from sklearn.feature_extraction.text import HashingVectorizer

        options: dict[str, Any] = {"token_pattern": r"(?u)\b\w+\b|[?!]"} if self.analyzer == "word" else {}
        return HashingVectorizer(analyzer=self.analyzer, ngram_range=self.ngrams, n_features=BUCKETS,
                                 alternate_sign=False, norm=None, lowercase=True, **options)


BLOCKS: tuple[Block, ...] = (
    Block("user words", lambda t: t.text, "word", (1, 2), 1.0),
    Block("user characters", lambda t: t.text[:USER_CHARS], "char_wb", (2, 5), 1.0),
    Block("previous user words", lambda t: t.previous_user, "word", (1, 2), 0.5),
    Block("reply start words", _reply_head, "word", (1, 2), 0.5),
    Block("reply end words", _reply_tail, "word", (1, 2), 0.5),
)


@dataclass
class LexicalFeatures:
    """Hashed TF-IDF (sublinear tf, idf fitted on the training turns, rows unit length
    per block) of every block, side by side."""

    idf: list[np.ndarray]  # one per block, BUCKETS long; 0 for buckets never seen in training

    @classmethod
    def fit(cls, turns: Sequence[LabelledTurn]) -> LexicalFeatures:
        idf = []
        n = len(turns)
        for block in BLOCKS:
            counts = block.vectorizer().transform([block.text(t) for t in turns])
            document_frequency = np.bincount(counts.indices, minlength=BUCKETS)
            seen = document_frequency > 0
            values = np.zeros(BUCKETS, dtype=np.float32)
            values[seen] = np.log((1 + n) / (1 + document_frequency[seen])) + 1.0  # scikit-learn's smooth idf
            idf.append(values)
        return cls(idf)

    def transform(self, turns: Sequence[LabelledTurn]) -> sp.csr_matrix:
        blocks = []
        for block, idf in zip(BLOCKS, self.idf, strict=True):
            counts = block.vectorizer().transform([block.text(t) for t in turns]).astype(np.float32)
            counts.data = np.log1p(counts.data)  # sublinear tf
            weighted = counts @ sp.diags(idf)
            norms = np.sqrt(np.asarray(weighted.multiply(weighted).sum(axis=1))).ravel()
            norms[norms == 0] = 1.0
            blocks.append(sp.diags(block.weight / norms) @ weighted)
        return sp.hstack(blocks, format="csr")


@dataclass
class LexicalStudent:
    features: LexicalFeatures
    coef: np.ndarray  # (3, features), rows in LABELS order
    intercept: np.ndarray  # (3,)
    category_names: list[tuple[str, str]] = field(default_factory=list)  # (polarity, category)
    category_coef: np.ndarray | None = None  # (categories, features)
    category_intercept: np.ndarray | None = None
    info: dict[str, Any] = field(default_factory=dict)
    calibration: Calibration = field(default_factory=Calibration)

    # -- training ------------------------------------------------------
    @classmethod
    def fit(cls, examples: Sequence[LabelledTurn], *, c: float = 10.0, balanced: bool = True,
            rubric: Rubric | None = None, info: dict[str, Any] | None = None,
            categories: bool = True, sample_weight: np.ndarray | None = None) -> LexicalStudent:
        """Fit on labelled turns, uncalibrated (see `train_lexical`); category heads for every
        rubric category that at least MIN_CATEGORY_POSITIVES turns of its polarity name."""
        features = LexicalFeatures.fit(examples)
        x = features.transform(examples)
        y = np.array([LABELS.index(e.label) for e in examples])
        model = _regression(c, "balanced" if balanced else None).fit(x, y, sample_weight=sample_weight)
        coef = np.zeros((len(LABELS), x.shape[1]), dtype=np.float32)
        intercept = np.full(len(LABELS), -30.0, dtype=np.float32)  # a class absent from the data is never predicted
        coef[model.classes_] = model.coef_ if len(model.classes_) > 2 else np.vstack([-model.coef_, model.coef_])
        intercept[model.classes_] = model.intercept_ if len(model.classes_) > 2 else [-model.intercept_[0],
                                                                                       model.intercept_[0]]
        student = cls(features, coef, intercept, info=dict(info or {}))
        if categories:
            student._fit_categories(examples, x, rubric or load_rubric(), c)
        return student

    def _fit_categories(self, examples: Sequence[LabelledTurn], x: sp.csr_matrix, rubric: Rubric, c: float) -> None:
        names, coefs, intercepts = [], [], []
        for polarity in ("SAT", "DSAT"):
            rows = np.array([i for i, e in enumerate(examples) if e.label == polarity])
            for category in rubric.categories(polarity):  # type: ignore[arg-type]
                target = np.array([category.name in examples[i].categories for i in rows]) if len(rows) else []
                positives = int(np.sum(target))
                if positives < MIN_CATEGORY_POSITIVES:
                    continue
                names.append((polarity, category.name))
                if positives == len(rows):  # every turn of this polarity names it: no head to learn
                    coefs.append(np.zeros(x.shape[1]))
                    intercepts.append(10.0)
                    continue
                head = _regression(c, "balanced").fit(x[rows], target)
                coefs.append(head.coef_[0])
                intercepts.append(head.intercept_[0])
        if names:
            self.category_names = names
            self.category_coef = np.array(coefs, dtype=np.float32)
            self.category_intercept = np.array(intercepts, dtype=np.float32)

    # -- prediction ----------------------------------------------------
    def logits(self, turns: Sequence[LabelledTurn]) -> np.ndarray:
        """The regression's raw scores, before calibration."""
        return np.asarray(self.features.transform(turns) @ self.coef.T) + self.intercept

    def predict_proba(self, turns: Sequence[LabelledTurn]) -> np.ndarray:
        """Calibrated rows of (P(SAT), P(DSAT), P(NEUTRAL)); an empty user turn says nothing: NEUTRAL."""
        if not turns:
            return np.zeros((0, len(LABELS)), dtype=np.float32)
        probabilities = self.calibration.probabilities(self.logits(turns))
        empty = np.array([not t.text.strip() for t in turns])
        probabilities[empty] = [0.0, 0.0, 1.0]
        return probabilities

    def categories_for(self, turns: Sequence[LabelledTurn], labels: Sequence[str]) -> list[list[str]]:
        """The categories of each SAT / DSAT turn: every head of its polarity above 0.5, at least the best."""
        if self.category_coef is None or not turns:
            return [[] for _ in turns]
        scores = 1.0 / (1.0 + np.exp(-(np.asarray(self.features.transform(turns) @ self.category_coef.T)
                                       + self.category_intercept)))
        chosen = []
        for label, row in zip(labels, scores, strict=True):
            mine = [(score, name) for (polarity, name), score in zip(self.category_names, row, strict=True)
                    if polarity == label]
            picked = [name for score, name in mine if score >= 0.5] or [max(mine)[1]] if mine else []
            chosen.append(picked)
        return chosen

    def predict(self, conversations: Iterable[Conversation]) -> list[Signal]:
        """A Signal for every user turn that follows an assistant reply."""
        conversations = list(conversations)
        turns = turns_of(conversations)
        return self.signals_for(conversations, turns, self.predict_proba(turns), self.calibration,
                                self.info.get("name", "lexical-student"))

    def signals_for(self, conversations: Sequence[Conversation], turns: Sequence[LabelledTurn],
                    probabilities: np.ndarray, calibration: Calibration, model: str) -> list[Signal]:
        """Signals from calibrated probabilities (this student's or a second stage's): the
        labels from `calibration`'s thresholds, the categories from this student's heads."""
        labels = calibration.labels(probabilities)
        empty = [not t.text.strip() for t in turns]
        labels = ["NEUTRAL" if e else label for label, e in zip(labels, empty, strict=True)]
        categories = self.categories_for(turns, labels)
        sources = {c.id: c.source for c in conversations}
        return [
            Signal(
                conversation_id=turn.conversation_id,
                turn_index=turn.turn_index,
                label=label,  # type: ignore[arg-type]
                categories=names if label != "NEUTRAL" else [],
                evidence=evidence_for(turn.text, label),  # type: ignore[arg-type]
                confidence=float(np.clip(p[LABELS.index(label)], 0.0, 1.0)),
                detector=DETECTOR,
                model=model,
                source=sources.get(turn.conversation_id),
                metadata={"probabilities": {name: round(float(x), 6) for name, x in zip(LABELS, p, strict=True)}},
            )
            for turn, p, label, names in zip(turns, probabilities, labels, categories, strict=True)
        ]

    def detect(self, conversations: Iterable[Conversation]) -> Outcome:
        return Outcome(signals=self.predict(conversations))

    @property
    def name(self) -> str:
        return DETECTOR

    # -- files ---------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """`lexical.npz` and `lexical.json`. Only buckets seen in training are stored (as
        steps between bucket numbers, which compress well); the label weights as float16,
        the category heads as int8 with a scale per head."""
        directory = Path(path)
        directory.mkdir(parents=True, exist_ok=True)
        columns = np.flatnonzero(np.any(self.coef != 0, axis=0) | _any_rows(self.category_coef))
        arrays: dict[str, np.ndarray] = {"column_steps": np.diff(columns, prepend=0).astype(np.int32),
                                         "coef": self.coef[:, columns].astype(np.float16),
                                         "intercept": self.intercept}
        for i, idf in enumerate(self.features.idf):
            seen = np.flatnonzero(idf)
            arrays[f"idf{i}_steps"], arrays[f"idf{i}_value"] = np.diff(seen, prepend=0).astype(np.int32), idf[seen]
        if self.category_coef is not None and self.category_intercept is not None:
            arrays["category_coef"], arrays["category_scale"] = _quantise(self.category_coef[:, columns])
            arrays["category_intercept"] = self.category_intercept
        np.savez_compressed(directory / "lexical.npz", **arrays)
        meta = {
            "format": FORMAT,
            "classes": list(LABELS),
            "buckets": BUCKETS,
            "blocks": [{"name": b.name, "analyzer": b.analyzer, "ngrams": list(b.ngrams), "weight": b.weight}
                       for b in BLOCKS],
            "categories": [list(pair) for pair in self.category_names],
            "info": self.info,
            "calibration": self.calibration.as_dict(),
        }
        (directory / "lexical.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        return directory

    @classmethod
    def load(cls, path: str | Path | None = None) -> LexicalStudent:
        directory = Path(path) if path else DEFAULT_DIR
        if not (directory / "lexical.json").is_file() or not (directory / "lexical.npz").is_file():
            raise FileNotFoundError(f"no lexical student in {directory} (expected lexical.json and lexical.npz)")
        meta = json.loads((directory / "lexical.json").read_text(encoding="utf-8"))
        if meta.get("format") != FORMAT or meta.get("buckets") != BUCKETS or len(meta["blocks"]) != len(BLOCKS):
            raise ValueError(f"{directory}: not a lexical student of this version ({meta.get('format')!r})")
        width = BUCKETS * len(BLOCKS)
        with np.load(directory / "lexical.npz", allow_pickle=False) as stored:
            columns = np.cumsum(stored["column_steps"])
            coef = np.zeros((len(LABELS), width), dtype=np.float32)
            coef[:, columns] = stored["coef"]
            idf = []
            for i in range(len(BLOCKS)):
                values = np.zeros(BUCKETS, dtype=np.float32)
                values[np.cumsum(stored[f"idf{i}_steps"])] = stored[f"idf{i}_value"]
                idf.append(values)
            category_coef = category_intercept = None
            if "category_coef" in stored:
                category_coef = np.zeros((stored["category_coef"].shape[0], width), dtype=np.float32)
                category_coef[:, columns] = stored["category_coef"] * stored["category_scale"][:, None]
                category_intercept = stored["category_intercept"]
            intercept = stored["intercept"]
        return cls(LexicalFeatures(idf), coef, intercept, [tuple(p) for p in meta["categories"]],  # type: ignore[misc]
                   category_coef, category_intercept, meta.get("info", {}),
                   Calibration.from_dict(meta.get("calibration")))


def conversation_folds(examples: Sequence[LabelledTurn], k: int = INNER_FOLDS) -> np.ndarray:
    """A fold per example, by conversation (a stable hash), so no conversation is on both sides."""
    return np.array([zlib.crc32(f"{e.source}\x00{e.conversation_id}".encode()) % k for e in examples])


def out_of_fold_logits(examples: Sequence[LabelledTurn], folds: np.ndarray, c: float = 10.0) -> np.ndarray:
    """Every example scored by a model fitted without its fold."""
    logits = np.zeros((len(examples), len(LABELS)))
    for fold in np.unique(folds):
        held = folds == fold
        model = LexicalStudent.fit([e for e, h in zip(examples, held, strict=True) if not h], c=c, categories=False)
        logits[held] = model.logits([e for e, h in zip(examples, held, strict=True) if h])
    return logits


def train_lexical(examples: Sequence[LabelledTurn], *, folds: np.ndarray | None = None,
                  uniform: np.ndarray | None = None, c: float = 10.0, rubric: Rubric | None = None,
                  info: dict[str, Any] | None = None, categories: bool = True) -> LexicalStudent:
    """The shipped recipe: calibration and thresholds from out-of-fold scores (`folds` by
    conversation; a hash of the conversation id when not given), then the model refitted on
    every example. `uniform` marks the turns of a uniform sample, whose rates the
    calibrated probabilities should match (all turns when not given). The out-of-fold
    figures are kept in `info["metrics"]`: what the same recipe does on turns it never saw."""
    if not examples:
        raise ValueError("no labelled turns to train on")
    folds = conversation_folds(examples) if folds is None else np.asarray(folds)
    metrics: dict[str, Any] = {"trained_on": counts(examples)}
    calibration = Calibration()
    if len(np.unique(folds)) > 1:
        oof = out_of_fold_logits(examples, folds, c)
        gold = [e.label for e in examples]
        calibration = fit_calibration(oof, gold, uniform)
        metrics["cross_validated"] = {"folds": int(len(np.unique(folds))),
                                      **cross_validated_metrics(gold, calibration, oof, uniform)}
    student = LexicalStudent.fit(examples, c=c, rubric=rubric, info={**(info or {}), "c": c, "metrics": metrics},
                                 categories=categories)
    student.calibration = calibration
    return student


def cross_validated_metrics(gold: Sequence[str], calibration: Calibration, logits: np.ndarray,
                            uniform: np.ndarray | None = None) -> dict[str, Any]:
    """Agreement of the thresholded labels with `gold`, and the labelled rates against
    the mean calibrated probabilities (the estimate a report gives) on the uniform turns."""
    probabilities = calibration.probabilities(logits)
    result = agreement(list(gold), calibration.labels(probabilities), labels=list(LABELS))
    rows = np.ones(len(gold), dtype=bool) if uniform is None or not np.any(uniform) else np.asarray(uniform)
    result["rates"] = {label: {"estimated": round(100 * float(probabilities[rows, k].mean()), 1),
                               "labelled": round(100 * float(np.mean(np.array(gold)[rows] == label)), 1)}
                       for k, label in enumerate(LABELS)}
    result.pop("confusion", None)
    return result


def _regression(c: float, class_weight: str | None) -> Any:
    """Newton-CG: on a million hashed columns it converges in a tenth of L-BFGS's time (2 s
    against 22 s for 1,700 turns) to the same log-loss."""
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=c, solver="newton-cg", max_iter=200, class_weight=class_weight)


def _quantise(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """int8 rows with a scale each: the category heads only rank categories within a
    turn, and at float32 they would be most of the shipped file."""
    scale = np.abs(matrix).max(axis=1) / 127.0
    scale[scale == 0] = 1.0
    return np.round(matrix / scale[:, None]).astype(np.int8), scale.astype(np.float32)


def _any_rows(matrix: np.ndarray | None) -> np.ndarray | bool:
    return False if matrix is None else np.any(matrix != 0, axis=0)
