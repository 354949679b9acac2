"""Learned rubrics (SPUR): extract reasons, summarise them into items, score and threshold,
over real HTTP against the scripted server; thresholds and the YAML round trip by hand."""

from __future__ import annotations

import json

import pytest
import yaml
from llm_server.harness import ScriptedServer

from wildfeedback.schema import Conversation
from wildfeedback.signals.learned_rubric import RubricLearner, RubricScorer, fit_thresholds
from wildfeedback.signals.rubric import Rubric, RubricError, Thresholds, load_rubric


def rated(key: str, thumbs: str, *turns: str) -> Conversation:
    messages = []
    for i, text in enumerate(turns):
        role = "user" if i % 2 == 0 else "assistant"
        messages.append({"role": role, "content": f"[[key={key}]] {text}" if i == 0 else text, "index": i})
    messages[1]["thumbs"] = thumbs
    return Conversation(id=key, source="product", messages=messages)


def content(value: dict) -> dict:
    return {"content": json.dumps(value)}


def test_thresholds_are_fitted_by_hand_computed_f1():
    scores = [-9, -4, 0, 1, 6, 8]
    gold = ["DSAT", "DSAT", "NEUTRAL", "NEUTRAL", "SAT", "SAT"]
    rule = fit_thresholds(scores, gold)
    assert [rule.label(s) for s in scores] == gold  # a perfect split exists: between -4/0 and 1/6
    assert -4 < rule.dsat_below <= 0 and 1 <= rule.sat_above < 6
    assert Thresholds(sat_above=2, dsat_below=-2).label(2) == "NEUTRAL"
    with pytest.raises(ValueError, match="must not exceed"):
        Thresholds(sat_above=-1, dsat_below=1)


def test_learn_then_score_a_rubric(server: ScriptedServer):
    sat = rated("s1", "up", "find a hotel", "The Grand has rooms.", "great, thanks!")
    dsat = rated("d1", "down", "find a hotel", "Here is a recipe.", "that is not what I asked")
    server.script("s1", content({"reasons": ["The user thanks the assistant", "The user praises the answer",
                                             "The user is happy", "A fourth reason is cut"]}))
    server.script("d1", content({"reasons": ["The user says the reply missed the request"]}))
    # The two summarise calls carry no marker: SAT first, then DSAT.
    server.script("_default",
                  content({"items": [{"name": "Thanks", "description": "The user thanks the assistant."},
                                     {"name": "Praise", "description": "The user praises the reply."}]}),
                  content({"items": [{"name": "Missed", "description": "The user says the request was missed."},
                                     {"name": "Praise", "description": "Sarcastic praise."}]}))
    learner = RubricLearner(server.backend(), max_items=10)
    report = learner.learn([(sat, "SAT"), (dsat, "DSAT")], name="hotel")
    assert report.reasons["SAT"] == ["The user thanks the assistant", "The user praises the answer", "The user is happy"]
    rubric = report.rubric
    assert [c.name for c in rubric.sat] == ["Thanks", "Praise"]
    assert [c.name for c in rubric.dsat] == ["Missed", "Praise (DSAT)"]  # names stay unique across polarities
    summarise = server.stats()["last_body"]["_default"]["messages"][0]["content"]
    assert "- The user says the reply missed the request" in summarise

    # Scoring: S1 Thanks, S2 Praise; D1 Missed, D2 Praise (DSAT).
    server.script("s1", {}, content({"items": [
        {"id": "S1", "applies": True, "score": 8, "evidence": "thanks!"},
        {"id": "S2", "applies": True, "score": 15, "evidence": "Great"},
        {"id": "D1", "applies": False, "score": 0, "evidence": ""},
        {"id": "X9", "applies": True, "score": 3, "evidence": ""},
    ]}))
    server.script("d1", {}, content({"items": [
        {"id": "D1", "applies": True, "score": 7, "evidence": "not what I asked"},
        {"id": "S1", "applies": True, "score": 2, "evidence": "I never said this"},
        {"id": "S2", "applies": False, "score": 0, "evidence": ""},
        {"id": "D2", "applies": False, "score": 0, "evidence": ""},
    ]}))
    scorer = RubricScorer(server.backend(), rubric=rubric.model_copy(update={"thresholds": Thresholds(sat_above=5, dsat_below=-3)}))
    outcome = scorer.detect([sat, dsat])
    by_id = {s.conversation_id: s for s in outcome.signals}
    assert by_id["s1"].metadata["score"] == 18.0  # 8 + 10 (15 clipped to 10)
    assert (by_id["s1"].label, by_id["s1"].categories, by_id["s1"].evidence) == ("SAT", ["Praise", "Thanks"], "great")
    assert by_id["s1"].turn_index == 2
    assert by_id["d1"].metadata["score"] == -5.0 and by_id["d1"].label == "DSAT"
    assert by_id["d1"].evidence == "not what I asked"
    kinds = sorted((i.conversation_id, i.kind) for i in outcome.issues)
    assert kinds == [("d1", "evidence_not_found"), ("s1", "missing_item"), ("s1", "unknown_item")]


def test_rubric_yaml_round_trip_and_use_by_the_llm_detector(tmp_path):
    rubric = Rubric(name="t", SAT=[{"name": "A", "description": "a"}], DSAT=[{"name": "B", "description": "b"}],
                    thresholds=Thresholds(sat_above=1.5, dsat_below=-2))
    path = tmp_path / "t.yaml"
    path.write_text(rubric.to_yaml())
    assert load_rubric(path) == rubric
    assert yaml.safe_load(path.read_text())["SAT"] == [{"name": "A", "description": "a"}]
    path.write_text("name: t\nSAT: []\nDSAT: [{name: B, description: b}]\n")
    with pytest.raises(RubricError, match=r"t.yaml: SAT: .*at least 1"):
        load_rubric(path)


def test_nothing_learned_is_a_precise_error(server: ScriptedServer):
    sat = rated("s2", "up", "hi", "hello", "thanks")
    dsat = rated("d2", "down", "hi", "hello", "bad")
    server.script("s2", {"content": "no"}, {"content": "still no"})
    server.script("d2", content({"reasons": ["The user complains"]}))
    server.script("_default", {"status": 500})
    with pytest.raises(RubricError, match=r"no SAT rubric items: 0 reasons extracted from 1 SAT conversations"):
        RubricLearner(server.backend()).learn([(sat, "SAT"), (dsat, "DSAT")])
