"""The implicit model's choices as weighted DPO pairs and KTO labels, through the shared exporter."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from wildfeedback.implicit.dataset import PairExample
from wildfeedback.implicit.export import choice_records, export_choices
from wildfeedback.schema import Conversation


def example(key: str, label: int | None) -> PairExample:
    conversation = Conversation.model_validate({
        "id": f"ifllm-{key}", "source": "ifllm", "user_id": "u1",
        "messages": [
            {"role": "user", "content": "first question", "index": 0},
            {"role": "assistant", "content": "first answer", "index": 1, "alternatives": [{"content": "other"}]},
            {"role": "user", "content": "Why is the sky blue?", "index": 2},
            {"role": "assistant", "content": "Rayleigh scattering.", "index": 3,
             "alternatives": [{"content": "Because it is."}]},
        ],
    })
    return PairExample(conversation, 3, "u1", "Why is the sky blue?", "Rayleigh scattering.", "Because it is.",
                       label, 120, {})


def test_choice_follows_the_probability_and_carries_its_confidence():
    pair, (left, right) = choice_records(example("a", label=1), 0.8, "fused", out_of_fold=True)
    assert (pair.kind, pair.chosen, pair.rejected) == ("pairwise", "Rayleigh scattering.", "Because it is.")
    assert pair.confidence == pytest.approx(0.8) and pair.detector == "implicit-reward/fused"
    assert [t.content for t in pair.prompt] == ["first question", "first answer", "Why is the sky blue?"]
    assert pair.turn_index == 3 and pair.conversation_id == "ifllm-a"
    assert pair.metadata["source_model"] == "implicit_model" and pair.metadata["out_of_fold"] is True
    assert pair.metadata["agrees_with_user"] is True and pair.metadata["user_preferred_alternative"] == 0
    assert (left.label, right.label) == (True, False) and left.confidence == pytest.approx(0.8)

    pair, (left, right) = choice_records(example("b", label=1), 0.3, "fused", out_of_fold=False)
    assert pair.chosen == "Because it is." and pair.confidence == pytest.approx(0.7)
    assert pair.metadata["chosen_alternative"] == 1 and pair.metadata["agrees_with_user"] is False
    assert (left.label, right.label) == (False, True)

    pair, _ = choice_records(example("c", label=None), 0.5, "behaviour", out_of_fold=False)
    assert pair.chosen == "Rayleigh scattering." and "agrees_with_user" not in pair.metadata
    with pytest.raises(ValueError, match="not in"):
        choice_records(example("d", label=None), 1.5, "fused", out_of_fold=True)


def test_export_writes_trl_formats_with_weights(tmp_path: Path):
    examples = [example("a", 1), example("b", 0), example("c", None)]
    counts = export_choices(examples, [0.9, 0.45, 0.52], [True, True, False], str(tmp_path / "out"),
                            min_confidence=0.53)
    assert counts == {"pairs": 2, "unpaired": 4, "below_min_confidence": 1}  # 0.52 is below 0.53
    dpo = [json.loads(line) for line in (tmp_path / "out" / "dpo" / "train.jsonl").read_text().splitlines()]
    assert [row["chosen"][0]["content"] for row in dpo] == ["Rayleigh scattering.", "Because it is."]
    assert [row["confidence"] for row in dpo] == pytest.approx([0.9, 0.55])
    assert dpo[0]["prompt"][-1] == {"role": "user", "content": "Why is the sky blue?"}
    rm = [json.loads(line) for line in (tmp_path / "out" / "rm" / "train.jsonl").read_text().splitlines()]
    assert [row["margin"] for row in rm] == pytest.approx([0.9, 0.55])
    kto = [json.loads(line) for line in (tmp_path / "out" / "kto" / "train.jsonl").read_text().splitlines()]
    assert [row["label"] for row in kto] == [True, False, False, True]
    assert (tmp_path / "out" / "dpo" / "train.parquet").exists()
    card = (tmp_path / "out" / "README.md").read_text()
    assert "implicit reward model" in card and "| pairwise | 2 |" in card
    with pytest.raises(ValueError, match="differ in length"):
        export_choices(examples, [0.9], [True], str(tmp_path / "bad"))
