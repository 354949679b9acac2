"""The two-stage student: the lexical student reads every turn, the cross-encoder the
turns it is unsure of.

The lexical student is fast (hundreds of conversations a second) and right about
most turns it is sure of: a plain follow-up, a "thanks", a "that's wrong". Where
its largest calibrated probability is below `uncertain_below` (about a third of
the turns of real ChatGPT logs at 0.8), the cross-encoder (`cross_encoder.py`)
reads the turn with its context too, and the turn's probabilities become the mean
of the two students' calibrated ones. Thresholds for the labels are then chosen
on that mean's out-of-fold values, for DSAT precision as everywhere
(`calibration.py`); the category heads are the lexical student's.

`train_two_stage` is the recipe (out-of-fold scores of both stages under the
given folds, calibration and thresholds from them, then both refitted on every
turn), `cross_fitted` measures it honestly: for each fold, every calibration and
threshold is fitted on the other folds' out-of-fold scores only.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from wildfeedback.evaluate.stats import agreement
from wildfeedback.schema import Conversation, Signal
from wildfeedback.signals.base import Outcome
from wildfeedback.signals.calibration import Calibration, fit_calibration, fit_thresholds
from wildfeedback.signals.cross_encoder import CrossEncoder, CrossEncoderConfig
from wildfeedback.signals.labels import LABELS, LabelledTurn, counts
from wildfeedback.signals.lexical import LexicalStudent, conversation_folds, out_of_fold_logits, train_lexical
from wildfeedback.signals.student import turns_of

FORMAT = "wildfeedback-two-stage-student/1"
META = "two_stage.json"
DEFAULT_DIR = Path(__file__).resolve().parents[1] / "models" / "two-stage"
UNCERTAIN_BELOW = 0.8


def combine(lexical: np.ndarray, second: Callable[[np.ndarray], np.ndarray], uncertain_below: float) -> np.ndarray:
    """The lexical probabilities, averaged with `second(rows)`'s on the rows where the
    lexical student's largest probability is below `uncertain_below`."""
    uncertain = np.flatnonzero(lexical.max(axis=1) < uncertain_below)
    combined = np.array(lexical, dtype=np.float64, copy=True)
    if len(uncertain):
        combined[uncertain] = (combined[uncertain] + second(uncertain)) / 2
    return combined


@dataclass
class TwoStageStudent:
    lexical: LexicalStudent
    cross: CrossEncoder
    uncertain_below: float = UNCERTAIN_BELOW
    calibration: Calibration = field(default_factory=Calibration)  # thresholds on the combined probabilities
    info: dict[str, Any] = field(default_factory=dict)
    sent: int = 0  # turns the cross-encoder has read, since loading
    read: int = 0  # turns read, since loading
    out_of_fold: dict[str, np.ndarray] = field(default_factory=dict, repr=False)  # the recipe's scores, not saved

    def predict_proba(self, turns: Sequence[LabelledTurn]) -> np.ndarray:
        lexical = self.lexical.predict_proba(turns)
        combined = combine(lexical, lambda rows: self.cross.predict_proba([turns[i] for i in rows]),
                           self.uncertain_below)
        self.read += len(turns)
        self.sent += int(np.sum(lexical.max(axis=1) < self.uncertain_below))
        return combined

    def predict(self, conversations: Iterable[Conversation]) -> list[Signal]:
        conversations = list(conversations)
        turns = turns_of(conversations)
        return self.lexical.signals_for(conversations, turns, self.predict_proba(turns), self.calibration,
                                        self.info.get("name", "two-stage-student"))

    def detect(self, conversations: Iterable[Conversation]) -> Outcome:
        return Outcome(signals=self.predict(conversations))

    @property
    def name(self) -> str:
        return "student"

    # -- files ---------------------------------------------------------
    def save(self, path: str | os.PathLike[str], lexical_dir: str | os.PathLike[str] | None = None) -> Path:
        """The cross-encoder's files and `two_stage.json` in `path`; the lexical student's
        files there too, unless `lexical_dir` says where they already are (stored
        relative to `path`)."""
        directory = Path(path)
        self.cross.save(directory)
        if lexical_dir is None:
            self.lexical.save(directory)
        where = os.path.relpath(lexical_dir, directory) if lexical_dir is not None else "."
        meta = {"format": FORMAT, "lexical": where, "uncertain_below": self.uncertain_below,
                "calibration": self.calibration.as_dict(), "info": self.info}
        (directory / META).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        return directory

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None = None) -> TwoStageStudent:
        directory = Path(path) if path else DEFAULT_DIR
        if not (directory / META).is_file():
            raise FileNotFoundError(f"no two-stage student in {directory} (expected {META})")
        meta = json.loads((directory / META).read_text(encoding="utf-8"))
        if meta.get("format") != FORMAT:
            raise ValueError(f"{directory / META}: not a two-stage student of this version ({meta.get('format')!r})")
        return cls(LexicalStudent.load(directory / meta["lexical"]), CrossEncoder.load(directory),
                   float(meta["uncertain_below"]), Calibration.from_dict(meta.get("calibration")), meta.get("info", {}))


# -- the recipe and its measurement --------------------------------------
def cross_encoder_oof_logits(examples: Sequence[LabelledTurn], folds: np.ndarray,
                             config: CrossEncoderConfig | None = None,
                             log: Callable[[str], None] | None = None) -> np.ndarray:
    """Every example scored by a cross-encoder trained without its fold (minutes a fold)."""
    logits = np.zeros((len(examples), len(LABELS)), dtype=np.float32)
    for fold in np.unique(folds):
        held = np.flatnonzero(folds == fold)
        model = CrossEncoder(config).fit([e for e, f in zip(examples, folds, strict=True) if f != fold],
                                         log=(lambda line, fold=fold: log(f"fold {fold}: {line}")) if log else None)
        logits[held] = model.merge().logits([examples[i] for i in held])
    return logits


def cross_fitted(gold: Sequence[str], folds: np.ndarray, lexical_oof: np.ndarray, cross_oof: np.ndarray,
                 uniform: np.ndarray | None = None, uncertain_below: float = UNCERTAIN_BELOW) -> dict[str, Any]:
    """Labels and combined probabilities of every turn, each fold's from calibrations
    and thresholds fitted on the other folds' out-of-fold scores only; `sent`: the share
    of turns the cross-encoder read."""
    gold = list(gold)
    uniform = np.ones(len(gold), dtype=bool) if uniform is None else np.asarray(uniform)
    probabilities = np.zeros((len(gold), len(LABELS)))
    labels: list[str] = [""] * len(gold)
    sent = np.zeros(len(gold), dtype=bool)
    for fold in np.unique(folds):
        rest, held = folds != fold, np.flatnonzero(folds == fold)
        train_gold = [g for g, r in zip(gold, rest, strict=True) if r]
        lexical = fit_calibration(lexical_oof[rest], train_gold, uniform[rest]).probabilities(lexical_oof)
        cross = fit_calibration(cross_oof[rest], train_gold, uniform[rest]).probabilities(cross_oof)
        combined = combine(lexical, lambda rows, cross=cross: cross[rows], uncertain_below)
        thresholds = fit_thresholds(combined[rest], train_gold)
        probabilities[held] = combined[held]
        sent[held] = lexical[held].max(axis=1) < uncertain_below
        for i, label in zip(held, thresholds.labels(combined[held]), strict=True):
            labels[i] = label
    return {"probabilities": probabilities, "labels": labels, "sent": round(float(sent.mean()), 3)}


def train_two_stage(examples: Sequence[LabelledTurn], *, folds: np.ndarray | None = None,
                    uniform: np.ndarray | None = None, lexical: LexicalStudent | None = None,
                    config: CrossEncoderConfig | None = None, uncertain_below: float = UNCERTAIN_BELOW,
                    info: dict[str, Any] | None = None, log: Callable[[str], None] | None = None) -> TwoStageStudent:
    """The shipped recipe. `lexical`: a lexical student already trained by `train_lexical`
    on the same examples and folds (trained here when not given). Out-of-fold figures go
    to `info["metrics"]`: `cross_fitted` (nothing of a fold used for its own numbers) and
    the share of turns the cross-encoder read."""
    if not examples:
        raise ValueError("no labelled turns to train on")
    folds = conversation_folds(examples) if folds is None else np.asarray(folds)
    if len(np.unique(folds)) < 2:
        raise ValueError("the two-stage student is calibrated on out-of-fold scores: it needs at least two folds")
    uniform_rows = np.ones(len(examples), dtype=bool) if uniform is None else np.asarray(uniform)
    gold = [e.label for e in examples]
    lexical = lexical or train_lexical(examples, folds=folds, uniform=uniform_rows)
    lexical_oof = out_of_fold_logits(examples, folds, float(lexical.info.get("c", 10.0)))
    cross_oof = cross_encoder_oof_logits(examples, folds, config, log)
    cross = CrossEncoder(config).fit(examples, log=(lambda line: log(f"all folds: {line}")) if log else None)
    cross.calibration = fit_calibration(cross_oof, gold, uniform_rows)
    lexical_probabilities = lexical.calibration.probabilities(lexical_oof)
    combined = combine(lexical_probabilities, lambda rows: cross.calibration.probabilities(cross_oof[rows]),
                       uncertain_below)
    measured = cross_fitted(gold, folds, lexical_oof, cross_oof, uniform_rows, uncertain_below)
    metrics = {"trained_on": counts(examples), "folds": int(len(np.unique(folds))),
               "cross_fitted": {"folds": int(len(np.unique(folds))),
                                **summary(gold, measured["probabilities"], measured["labels"], uniform_rows)},
               "sent_to_cross_encoder": round(float(np.mean(lexical_probabilities.max(axis=1) < uncertain_below)), 3)}
    return TwoStageStudent(lexical, cross.merge(), uncertain_below, fit_thresholds(combined, gold),
                           {**(info or {}), "metrics": metrics},
                           out_of_fold={"lexical": lexical_oof, "cross": cross_oof})


def summary(gold: Sequence[str], probabilities: np.ndarray, labels: Sequence[str],
            uniform: np.ndarray | None = None) -> dict[str, Any]:
    """Agreement of `labels` with `gold`, and the labelled rates against the mean
    probability on the uniform turns (all turns when none is marked)."""
    result = agreement(list(gold), list(labels), labels=list(LABELS))
    result.pop("confusion", None)
    rows = np.ones(len(gold), dtype=bool) if uniform is None or not np.any(uniform) else np.asarray(uniform)
    result["rates"] = {label: {"estimated": round(100 * float(probabilities[rows, k].mean()), 1),
                               "labelled": round(100 * float(np.mean(np.array(gold)[rows] == label)), 1)}
                       for k, label in enumerate(LABELS)}
    return result
