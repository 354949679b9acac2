"""The lexical student, the default detector: it learns the user's own words, keeps
an empty turn NEUTRAL, names categories from trained heads, saves to small files
that load back to the same probabilities, calibrates on out-of-fold scores, and
on the real ShareGPT labels agrees with people far better than the MiniLM student."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.conftest import shared
from wildfeedback.bench.feedback import load_labels
from wildfeedback.evaluate.stats import agreement
from wildfeedback.schema import Conversation, Message
from wildfeedback.signals.detect import load_student, make_detector
from wildfeedback.signals.labels import LabelledTurn
from wildfeedback.signals.lexical import LexicalStudent, conversation_folds, train_lexical
from wildfeedback.signals.student import DEFAULT_DIR as MINILM_DIR
from wildfeedback.signals.student import StudentDetector

REPLY = "Here is a function that sorts the list in place and returns nothing."
TURNS = {
    "DSAT": ["no, that's wrong, it returns None", "this is not what I asked, redo it", "wrong again, fix the bug",
             "no, make it shorter please", "that code throws an error"],
    "SAT": ["thanks, that works perfectly", "great, thank you!", "perfect, exactly what I needed",
            "thank you so much, it works", "awesome, thanks"],
    "NEUTRAL": ["now write a test for it", "what about dictionaries?", "how do I install python",
                "next, explain recursion", "can you also add logging"],
}
CATEGORIES = {"DSAT": ("Negative Feedback",), "SAT": ("Gratitude",), "NEUTRAL": ()}


def examples(repeat: int = 3) -> list[LabelledTurn]:
    return [LabelledTurn(f"c{label}{i}{k}", "test", 2, REPLY, text, label, "sort my list", 1,  # type: ignore[arg-type]
                         CATEGORIES[label])
            for k in range(repeat) for label, texts in TURNS.items() for i, text in enumerate(texts)]


def test_it_learns_the_users_words_and_round_trips(tmp_path: Path) -> None:
    student = LexicalStudent.fit(examples(), c=10.0, info={"name": "tiny"})
    probe = [LabelledTurn("p", "test", 2, REPLY, text, "NEUTRAL", "sort my list")
             for text in ("no, that is wrong", "thanks, great", "now explain sorting", "   ")]
    p = student.predict_proba(probe)
    assert np.argmax(p, axis=1).tolist()[:3] == [1, 0, 2]  # DSAT, SAT, NEUTRAL
    assert p[3].tolist() == [0.0, 0.0, 1.0]  # an empty turn says nothing
    loaded = LexicalStudent.load(student.save(tmp_path / "model"))
    np.testing.assert_allclose(loaded.predict_proba(probe), p, atol=2e-3)  # float16 weights
    assert (tmp_path / "model" / "lexical.npz").stat().st_size < 2_000_000


def test_signals_carry_trained_categories_and_the_users_words() -> None:
    student = LexicalStudent.fit(examples(), c=10.0)
    conversation = Conversation(id="x", source="test", messages=[
        Message(role="user", content="sort my list", index=0),
        Message(role="assistant", content=REPLY, index=1),
        Message(role="user", content="no, that's wrong, it returns None", index=2),
    ])
    (signal,) = student.detect([conversation]).signals
    assert (signal.label, signal.categories, signal.turn_index) == ("DSAT", ["Negative Feedback"], 2)
    assert signal.evidence in conversation.messages[2].content


def test_train_lexical_calibrates_out_of_fold_and_keeps_it_on_disk(tmp_path: Path) -> None:
    data = examples(repeat=4)
    folds = conversation_folds(data)
    assert len(set(folds.tolist())) == 5
    assert conversation_folds(data).tolist() == folds.tolist()  # a stable hash, not Python's salted one
    student = train_lexical(data)
    cv = student.info["metrics"]["cross_validated"]
    assert cv["folds"] == 5 and cv["n"] == len(data) and cv["kappa"] > 0.5
    assert student.calibration.dsat_threshold is not None and student.calibration.temperature > 0
    loaded = LexicalStudent.load(student.save(tmp_path / "m"))
    assert loaded.calibration == student.calibration
    assert loaded.info["metrics"]["trained_on"] == {"test": {"SAT": 20, "DSAT": 20, "NEUTRAL": 20, "total": 60}}


def test_the_default_student_is_the_shipped_lexical_one_and_a_minilm_folder_still_loads(tmp_path: Path) -> None:
    default = make_detector("student")
    assert isinstance(default, LexicalStudent) and default.info["name"] == "student-lexical-v1"
    assert default.calibration.dsat_threshold is not None
    assert isinstance(load_student(MINILM_DIR), StudentDetector) and isinstance(load_student("minilm"), StudentDetector)
    with pytest.raises(FileNotFoundError, match="no student model there"):
        load_student(tmp_path)


def test_on_the_real_labels_a_fold_held_out_is_read_like_people_read_it() -> None:
    """Trained as shipped on folds 1-4 of the ShareGPT feedback labels (calibration
    and thresholds from those folds only), read on fold 0. bench feedback: kappa
    about 0.6 pooled over folds (the MiniLM student: 0.13)."""
    items = load_labels(shared("sharegpt-feedback", "labels.jsonl"))
    train = [i for i in items if i.fold != 0]
    test = [i for i in items if i.fold == 0]
    student = train_lexical([i.turn for i in train], folds=np.array([i.fold for i in train]),
                            uniform=np.array([i.stratum == "random" for i in train]), categories=False)
    probabilities = student.predict_proba([i.turn for i in test])
    scores = agreement([i.turn.label for i in test], student.calibration.labels(probabilities),
                       labels=["SAT", "DSAT", "NEUTRAL"])
    assert scores["kappa"] > 0.45
    assert scores["per_class"]["DSAT"]["precision"] > 0.65  # the threshold is chosen for precision 0.80
    random = [k for k, i in enumerate(test) if i.stratum == "random"]
    labelled = np.mean([test[k].turn.label == "DSAT" for k in random])
    assert abs(probabilities[random, 1].mean() - labelled) < 0.08  # the estimated DSAT rate
