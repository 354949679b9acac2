"""The lexical student (issue 11, in progress): it learns the user's own words, keeps
an empty turn NEUTRAL, names categories from trained heads, and saves to small
files that load back to the same probabilities."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from wildfeedback.schema import Conversation, Message
from wildfeedback.signals.labels import LabelledTurn
from wildfeedback.signals.lexical import LexicalStudent

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
    np.testing.assert_allclose(loaded.predict_proba(probe), p, atol=1e-5)
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
