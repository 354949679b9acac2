"""The student detector: label rules, training round trip, storage, the shipped model."""

from __future__ import annotations

import json

import numpy as np
import pytest

from wildfeedback.schema import Conversation
from wildfeedback.signals.labels import (
    counts,
    examples_from,
    ifllm_examples,
    likert_label,
    oasst_examples,
    rating_label,
    uss_conversation_label,
    uss_examples,
)
from wildfeedback.signals.student import (
    DEFAULT_DIR,
    ConversationRule,
    StudentDetector,
    evidence_for,
    expected_calibration_error,
    first_non_neutral_probabilities,
    train_student,
)

pytest.importorskip("sentence_transformers")


def conv(id_: str, source: str, messages: list[dict]) -> Conversation:
    return Conversation(id=id_, source=source, messages=[{**m, "index": i} for i, m in enumerate(messages)])


# -- label rules, hand-computed ---------------------------------------------


def test_rating_rule_is_the_rounded_mean():
    assert rating_label([3, 3, 2, 3]) == "NEUTRAL"  # mean 2.75: one dissenting annotator is not DSAT
    assert rating_label([2, 3]) == "DSAT"  # mean 2.5
    assert rating_label([1, 2, 3]) == "DSAT"  # mean 2.0
    assert rating_label([4, 3]) == "SAT"  # mean 3.5
    assert rating_label([4, 3, 3]) == "NEUTRAL"  # mean 3.33
    assert [likert_label(v) for v in (1, 2, 3, 4, 5)] == ["DSAT", "DSAT", "NEUTRAL", "SAT", "SAT"]


def test_uss_examples_and_conversation_label():
    c = conv("MWOZ-1", "uss/MWOZ", [
        {"role": "user", "content": "a cheap restaurant please", "ratings": [4, 4, 4]},  # no reply before: skipped
        {"role": "assistant", "content": "The Missing Sock is cheap."},
        {"role": "user", "content": "address?", "ratings": [3, 3, 3]},
        {"role": "assistant", "content": "Sorry, which area?"},
        {"role": "user", "content": "I told you, east", "ratings": [2, 2, 3]},
        {"role": "assistant", "content": "Finders Corner."},
        {"role": "user", "content": "thanks", "ratings": [4, 4, 5]},
    ])
    examples = uss_examples(c)
    assert [(e.turn_index, e.label, e.position) for e in examples] == [(2, "NEUTRAL", 1), (4, "DSAT", 2), (6, "SAT", 3)]
    assert examples[1].context == "Sorry, which area?" and examples[1].previous_user == "address?"
    assert uss_conversation_label(c) == "DSAT"  # the first non-neutral turn decides
    neutral = conv("x", "uss/SGD", [
        {"role": "assistant", "content": "hi"}, {"role": "user", "content": "hello", "ratings": [3, 3]},
    ])
    assert uss_conversation_label(neutral) == "NEUTRAL"


def test_consecutive_user_turns_read_the_latest_reply():
    c = conv("ReDial-1", "uss/ReDial", [
        {"role": "assistant", "content": "Seen Titanic?"},
        {"role": "user", "content": "no", "ratings": [3, 3]},
        {"role": "user", "content": "I hate it", "ratings": [2, 2]},
    ])
    assert [(e.context, e.text, e.previous_user, e.label) for e in uss_examples(c)] == [
        ("Seen Titanic?", "no", "", "NEUTRAL"), ("Seen Titanic?", "I hate it", "no", "DSAT")]


def test_ifllm_next_turn_takes_the_rating_of_the_reply_before():
    c = conv("ifllm-u-2", "ifllm", [
        {"role": "user", "content": "q1"},
        {"role": "assistant", "content": "r1", "rating": 2},
        {"role": "user", "content": "q2"},
        {"role": "assistant", "content": "r2 left", "rating": 5,
         "alternatives": [{"content": "r2 right", "rating": 3}], "preferred": 1},
        {"role": "user", "content": "q3"},
        {"role": "assistant", "content": "r3"},  # no rating and no next turn
    ])
    got = [(e.text, e.context, e.label) for e in ifllm_examples(c)]
    assert got == [("q2", "r1", "DSAT"), ("q3", "r2 right", "NEUTRAL")]  # the preferred (right) reply, Likert 3


def test_oasst_follow_ups_counted_once_with_vote_rule():
    def path(leaf: str) -> Conversation:
        return conv(leaf, "oasst", [
            {"role": "user", "content": "p", "id": "p"},
            {"role": "assistant", "content": "good", "id": "a", "rank": 0, "labels": {"emojis": {"+1": 3, "-1": 1}}},
            {"role": "user", "content": "more?", "id": "f"},
            {"role": "assistant", "content": "bad", "id": "b" + leaf, "rank": 1, "labels": {"emojis": {"-1": 2}}},
            {"role": "user", "content": "wrong", "id": "g" + leaf},
        ])
    examples = oasst_examples([path("1"), path("2")])
    assert [(e.text, e.label) for e in examples] == [("more?", "SAT"), ("wrong", "DSAT"), ("wrong", "DSAT")]
    ranked_second = conv("z", "oasst", [
        {"role": "user", "content": "p"},
        {"role": "assistant", "content": "ok", "rank": 1, "labels": {"emojis": {"+1": 2}}},
        {"role": "user", "content": "hm"},
    ])
    assert [e.label for e in examples_from([ranked_second])] == ["NEUTRAL"]
    assert counts(examples) == {"oasst": {"SAT": 1, "DSAT": 2, "NEUTRAL": 0, "total": 3}}


# -- conversation rule, calibration, evidence -------------------------------


def test_first_non_neutral_probabilities_by_hand():
    p = np.array([[0.2, 0.1, 0.7], [0.5, 0.3, 0.2]])
    # SAT = 0.2 + 0.7*0.5 = 0.55; DSAT = 0.1 + 0.7*0.3 = 0.31; NEUTRAL = 0.7*0.2 = 0.14
    assert np.allclose(first_non_neutral_probabilities(p), [0.55, 0.31, 0.14])
    assert ConversationRule().label(p) == "SAT"
    assert ConversationRule(sat=-1.0).label(p) == "DSAT"  # log 0.55 - 1 < log 0.31
    assert ConversationRule().label(np.zeros((0, 3))) == "NEUTRAL"


def test_ece_by_hand():
    p = np.array([[0.9, 0.05, 0.05], [0.9, 0.05, 0.05]])
    assert expected_calibration_error(p, ["SAT", "DSAT"]) == pytest.approx(0.4)  # confidence 0.9, accuracy 0.5


def test_evidence_is_a_substring():
    assert evidence_for("  thanks!  ", "SAT") == "thanks!"
    long = "I asked for a list of parks. " * 5 + "That is wrong, you ignored what I asked. " + "More text here. " * 20
    quote = evidence_for(long, "DSAT")
    assert quote in long and "wrong" in quote


# -- training, storage, shipped model ---------------------------------------

SAT_TEXT = "thanks, that's perfect!"
DSAT_TEXT = "that's wrong, you ignored what I asked"
REPLY = "Here is a summary of the article in three bullet points."


def tiny_examples():
    from wildfeedback.signals.labels import LabelledTurn

    sat = ["thanks, great answer", "perfect, that is what I needed", "awesome, thank you so much", "that helps a lot"]
    dsat = ["no, that's wrong", "you didn't answer my question", "this is not what I asked", "wrong again"]
    neutral = ["what about tomorrow?", "and the price?", "tell me more about the second one", "ok, next question"]
    out = []
    for label, texts in (("SAT", sat), ("DSAT", dsat), ("NEUTRAL", neutral)):
        out += [LabelledTurn(f"{label}{i}", "test", 1, REPLY, t, label, "summarise this", 1) for i, t in enumerate(texts)]
    return out


def test_train_predict_save_load_round_trip(tmp_path):
    examples = tiny_examples()
    model = train_student(examples, c=1.0, info={"name": "tiny"})
    p = model.predict_proba(examples)
    assert p.shape == (12, 3) and np.allclose(p.sum(axis=1), 1.0)
    predicted = p.argmax(axis=1)
    assert (predicted == np.repeat([0, 1, 2], 4)).mean() >= 0.9  # fits its own tiny training set
    model.save(tmp_path / "m")
    assert (tmp_path / "m" / "student.npz").stat().st_size < 2_000_000
    json.loads((tmp_path / "m" / "student.json").read_text())
    again = StudentDetector.load(tmp_path / "m")
    assert np.allclose(again.predict_proba(examples), p, atol=1e-5)  # float32 storage

    c = conv("c1", "wildchat", [
        {"role": "user", "content": "summarise this"},
        {"role": "assistant", "content": REPLY},
        {"role": "user", "content": "no, that's wrong. Try again."},
    ])
    (signal,) = again.predict([c])
    assert signal.detector == "student" and signal.turn_index == 2 and signal.source == "wildchat"
    assert signal.evidence and signal.evidence in c.messages[2].content
    assert 0.0 <= signal.confidence <= 1.0 and signal.label == "DSAT"
    # Labels without categories train no heads: categories come zero-shot from the rubric, DSAT side only.
    from wildfeedback.signals.rubric import load_rubric

    dsat_names = {c.name for c in load_rubric().categories("DSAT")}
    assert signal.metadata["categories_by"] == "zero-shot"
    assert signal.categories and set(signal.categories) <= dsat_names


def test_shipped_model_loads_and_reads_clear_cases():
    if not (DEFAULT_DIR / "student.json").exists():
        pytest.skip(f"no shipped model in {DEFAULT_DIR}: run scripts/train_student.py")
    model = StudentDetector.load()
    size = sum(f.stat().st_size for f in DEFAULT_DIR.iterdir())
    assert size < 2_000_000
    c = conv("s", "test", [
        {"role": "user", "content": "Summarise the article about solar panels in three bullet points."},
        {"role": "assistant", "content": REPLY},
        {"role": "user", "content": SAT_TEXT},
        {"role": "assistant", "content": "Glad it helped! Anything else?"},
        {"role": "user", "content": DSAT_TEXT},
    ])
    sat, dsat = model.predict([c])
    p_sat, p_dsat = sat.metadata["probabilities"], dsat.metadata["probabilities"]
    assert p_sat["SAT"] > p_dsat["SAT"] and p_dsat["DSAT"] > p_sat["DSAT"]
    assert sat.label == "SAT"
    assert dsat.label == "DSAT"


def test_the_encoder_cache_keeps_the_most_recent_texts_only():
    from wildfeedback.signals.encoder import Encoder

    encoder = Encoder(max_entries=3)
    first = encoder.encode(["one", "two", "three"])
    encoder.encode(["one", "four"])  # "one" is used again, so "two" is the oldest and goes
    assert len(encoder._cache) == 3
    again = encoder.encode(["one", "two"])  # "two" is computed again, the same vector
    np.testing.assert_allclose(again, first[:2], atol=1e-5)
    assert Encoder(cache_file="unused.npz").max_entries is None  # an on-disk cache keeps everything
