"""The two-stage student: the cross-encoder reads only the turns the lexical student is
unsure of; trained by its recipe (out-of-fold scores, cross-fitted figures), it saves,
loads back (from `load_student` too) to the same probabilities, and labels conversations."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.test_lexical_student import REPLY, examples
from wildfeedback.schema import Conversation, Message
from wildfeedback.signals.cross_encoder import CrossEncoderConfig
from wildfeedback.signals.detect import load_student
from wildfeedback.signals.labels import LabelledTurn
from wildfeedback.signals.two_stage import TwoStageStudent, combine, cross_fitted, train_two_stage

TINY = CrossEncoderConfig(epochs=2, batch_size=8, learning_rate=3e-3, max_length=48)


def test_only_uncertain_turns_reach_the_second_stage() -> None:
    lexical = np.array([[0.9, 0.05, 0.05], [0.4, 0.35, 0.25], [0.1, 0.1, 0.8]])
    asked: list[list[int]] = []

    def second(rows: np.ndarray) -> np.ndarray:
        asked.append(rows.tolist())
        return np.tile([0.0, 1.0, 0.0], (len(rows), 1))

    combined = combine(lexical, second, uncertain_below=0.8)
    assert asked == [[1]]
    np.testing.assert_allclose(combined[[0, 2]], lexical[[0, 2]])
    np.testing.assert_allclose(combined[1], [0.2, 0.675, 0.125])


def test_cross_fitting_never_uses_a_folds_own_labels() -> None:
    rng = np.random.default_rng(0)
    gold = ["SAT", "DSAT", "NEUTRAL", "NEUTRAL"] * 40
    folds = np.arange(len(gold)) // 5 % 4
    lexical = 2.0 * np.eye(3)[[("SAT", "DSAT", "NEUTRAL").index(g) for g in gold]] + rng.normal(size=(len(gold), 3))
    cross = lexical + rng.normal(size=lexical.shape)
    result = cross_fitted(gold, folds, lexical, cross, uncertain_below=0.8)
    assert len(result["labels"]) == len(gold) and 0.0 < result["sent"] < 1.0
    np.testing.assert_allclose(result["probabilities"].sum(axis=1), 1.0)
    relabelled = ["DSAT" if f == 0 else g for g, f in zip(gold, folds, strict=True)]  # fold 0's labels changed
    again = cross_fitted(relabelled, folds, lexical, cross, uncertain_below=0.8)
    held, rest = folds == 0, folds != 0
    np.testing.assert_allclose(again["probabilities"][held], result["probabilities"][held])
    assert not np.allclose(again["probabilities"][rest], result["probabilities"][rest])


@pytest.fixture(scope="module")
def student() -> TwoStageStudent:
    data = examples(repeat=2)
    return train_two_stage(data, folds=np.arange(len(data)) % 2, config=TINY, info={"name": "tiny-two-stage"})


def test_the_recipe_reports_cross_fitted_figures(student: TwoStageStudent) -> None:
    metrics = student.info["metrics"]
    assert metrics["folds"] == 2 and 0.0 <= metrics["sent_to_cross_encoder"] <= 1.0
    assert set(metrics["cross_fitted"]["per_class"]) == {"SAT", "DSAT", "NEUTRAL"}
    assert student.cross.merged and student.cross.calibration.temperature > 0


def test_it_saves_loads_and_labels_conversations(student: TwoStageStudent, tmp_path: Path) -> None:
    probe = [LabelledTurn("p", "test", 2, REPLY, text, "NEUTRAL", "sort my list")
             for text in ("no, that is wrong", "thanks, great", "now explain sorting", "hmm ok")]
    probabilities = student.predict_proba(probe)
    assert student.read == 4 and 0 <= student.sent <= 4
    loaded = load_student(student.save(tmp_path / "model"))
    assert isinstance(loaded, TwoStageStudent) and loaded.calibration == student.calibration
    np.testing.assert_allclose(loaded.predict_proba(probe), probabilities, atol=3e-3)  # float16 lexical weights
    conversation = Conversation(id="x", source="test", messages=[
        Message(role="user", content="sort my list", index=0),
        Message(role="assistant", content=REPLY, index=1),
        Message(role="user", content="no, that's wrong, it returns None", index=2),
    ])
    (signal,) = loaded.detect([conversation]).signals
    assert signal.model == "tiny-two-stage" and signal.turn_index == 2
    assert signal.evidence and signal.evidence in conversation.messages[2].content


def test_a_shared_first_stage_is_referenced_not_copied(student: TwoStageStudent, tmp_path: Path) -> None:
    student.lexical.save(tmp_path / "lexical")
    student.save(tmp_path / "two-stage", lexical_dir=tmp_path / "lexical")
    assert not (tmp_path / "two-stage" / "lexical.npz").exists()
    assert isinstance(TwoStageStudent.load(tmp_path / "two-stage"), TwoStageStudent)


def test_the_shipped_two_stage_student_loads_by_name_with_its_figures() -> None:
    shipped = load_student("two-stage")
    assert isinstance(shipped, TwoStageStudent) and shipped.cross.merged
    assert shipped.info["name"] == "student-two-stage-v1"
    measured = shipped.info["metrics"]["cross_fitted"]
    assert measured["kappa"] > 0.65 and measured["per_class"]["DSAT"]["precision"] >= 0.78
    probe = [LabelledTurn("p", "test", 2, REPLY, text, "NEUTRAL", "sort my list")
             for text in ("no, that's wrong, it still returns None. fix it", "thanks, that works perfectly!")]
    labels = shipped.calibration.labels(shipped.predict_proba(probe))
    assert labels == ["DSAT", "SAT"]
