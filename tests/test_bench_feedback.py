"""`bench feedback`'s pieces on hand-made cases, and its reader on the real labels."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import shared
from wildfeedback.bench.feedback import (
    LabelledItem,
    annotator_kappa,
    category_f1,
    cross_validate_lexical,
    learning_curve,
    load_labels,
    summarise,
)
from wildfeedback.evaluate.stats import agreement
from wildfeedback.signals.labels import LabelledTurn


def item(label: str, stratum: str = "random", categories: tuple[str, ...] = (), second: str | None = None) -> LabelledItem:
    return LabelledItem(LabelledTurn("c", "sharegpt", 2, "reply", "turn", label, "", 1, categories),  # type: ignore[arg-type]
                        0, stratum, second)


def test_rates_come_from_the_random_stratum_and_pr_points_from_p_dsat() -> None:
    items = [item("DSAT"), item("SAT"), item("NEUTRAL"), item("DSAT", stratum="cue")]
    # SAT, DSAT, NEUTRAL columns
    probabilities = np.array([[0.1, 0.8, 0.1], [0.1, 0.6, 0.3], [0.2, 0.1, 0.7], [0.1, 0.35, 0.55]])
    result = summarise(items, probabilities)
    assert result["random_stratum_rates"]["DSAT"] == {"predicted": 66.7, "estimated": 50.0, "labelled": 33.3}
    thresholded = summarise(items, probabilities, ["DSAT", "NEUTRAL", "NEUTRAL", "NEUTRAL"])
    assert thresholded["random_stratum_rates"]["DSAT"]["predicted"] == 33.3
    assert thresholded["per_class"]["DSAT"] == {"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 2}
    points = {p["threshold"]: p for p in result["dsat_precision_recall"]}
    assert points[0.3] == {"threshold": 0.3, "precision": 0.667, "recall": 1.0}
    assert points[0.7] == {"threshold": 0.7, "precision": 1.0, "recall": 0.5}
    assert result["per_class"]["DSAT"]["recall"] == 0.5


def test_category_f1_and_annotator_kappa() -> None:
    items = [item("DSAT", categories=("Revision",), second="DSAT"), item("DSAT", categories=("Style",), second="SAT"),
             item("SAT", categories=("Gratitude",))]
    assert category_f1(items, [["Revision"], ["Revision"], ["Gratitude"]]) == {
        "Gratitude": 1.0, "Revision": 0.667, "Style": 0.0}
    assert annotator_kappa(items)["n"] == 2


def test_a_bad_line_is_named(tmp_path: Path) -> None:
    path = tmp_path / "labels.jsonl"
    path.write_text(json.dumps({"conversation_id": "x"}) + "\n")
    with pytest.raises(ValueError, match=r"labels\.jsonl, line 1: KeyError"):
        load_labels(path)


def test_the_real_labels_load_with_their_folds() -> None:
    items = load_labels(shared("sharegpt-feedback", "labels.jsonl"))
    assert len(items) == 2086 and {i.fold for i in items} == {0, 1, 2, 3, 4}
    assert sum(i.stratum == "random" for i in items) == 1067 and sum(bool(i.second_label) for i in items) == 167
    assert {i.second_label for i in items if i.second_label} == {"SAT", "DSAT", "NEUTRAL"}
    assert annotator_kappa(items)["kappa"] > 0.9  # the data README: 0.94


def test_cross_validation_nests_the_calibration_and_the_curve_shrinks_the_training_set() -> None:
    words = {"DSAT": "no that is wrong, redo it", "SAT": "thanks, that works", "NEUTRAL": "now explain recursion"}
    items = [LabelledItem(LabelledTurn(f"c{k}{label}", "sharegpt", 2, "reply", f"{words[label]} {k}", label,  # type: ignore[arg-type]
                                       "", 1), k % 5, "random", None)
             for k in range(30) for label in words]
    result = cross_validate_lexical(items, categories=False)
    assert result.probabilities.shape == (90, 3)
    assert agreement([i.turn.label for i in items], result.labels)["accuracy"] > 0.9
    curve = learning_curve(items, sizes=(30,), full=result)
    assert [p["train_turns"] for p in curve] == [30, "all"]
    assert curve[1]["kappa"] >= curve[0]["kappa"] - 0.05


def test_cross_encoder_rows_include_the_two_stage_student_over_every_fold() -> None:
    from wildfeedback.bench.feedback import CROSS, MIXED, TWO_STAGE, cross_encoder_rows
    from wildfeedback.signals.cross_encoder import CrossEncoderConfig

    words = {"DSAT": "no that is wrong, redo it", "SAT": "thanks, that works", "NEUTRAL": "now explain recursion"}
    items = [LabelledItem(LabelledTurn(f"c{k}{label}", "sharegpt", 2, "reply", f"{words[label]} {k}", label,  # type: ignore[arg-type]
                                       "", 1), k % 5, "random", None)
             for k in range(10) for label in words]
    lexical = cross_validate_lexical(items, categories=False)
    tiny = CrossEncoderConfig(epochs=1, batch_size=8, learning_rate=3e-3, max_length=32)
    one = cross_encoder_rows(items, lexical, folds=[0], config=tiny)
    assert TWO_STAGE not in one and one[CROSS]["n"] == 6 and one[CROSS]["inference"]["folds"] == [0]
    every = cross_encoder_rows(items, lexical, folds=None, config=tiny)
    assert every[MIXED]["n"] == every[TWO_STAGE]["n"] == 30
    assert 0.0 <= every[TWO_STAGE]["sent_to_cross_encoder"] <= 1.0
