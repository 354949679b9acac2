"""The cross-encoder fine-tunes a LoRA adapter on the packaged MiniLM on a few labelled
turns and then separates them (a handful of steps on CPU); saved and loaded (the
adapter merged), it reads the same."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from wildfeedback.signals.calibration import Calibration
from wildfeedback.signals.cross_encoder import META, WEIGHTS, CrossEncoder, CrossEncoderConfig, context_of
from wildfeedback.signals.labels import LABELS, LabelledTurn

REPLY = "Here is the function. " + "It sorts the list in place. " * 30 + "Let me know if this helps."


def turn(text: str, label: str) -> LabelledTurn:
    return LabelledTurn("c", "test", 2, REPLY, text, label, "sort my list")  # type: ignore[arg-type]


def test_context_reads_the_previous_turn_and_both_ends_of_the_reply() -> None:
    context = context_of(turn("thanks", "SAT"))
    assert context.startswith("sort my list [SEP] Here is the function.")
    assert context.endswith("Let me know if this helps.") and " ... " in context


CLEAR = [turn(text, label) for _ in range(4) for text, label in
         (("no, that is wrong, redo it", "DSAT"), ("thanks, that works great", "SAT"),
          ("now explain recursion to me", "NEUTRAL"))]


@pytest.fixture(scope="module")
def trained() -> CrossEncoder:
    return CrossEncoder(CrossEncoderConfig(epochs=6, batch_size=6, learning_rate=3e-3, max_length=48)).fit(CLEAR)


def test_it_learns_to_separate_clear_cases(trained: CrossEncoder) -> None:
    untrained = CrossEncoder(CrossEncoderConfig(max_length=48)).logits(CLEAR[:3])
    after = trained.logits(CLEAR[:3])
    assert after.shape == (3, 3) and not np.allclose(untrained, after)
    assert [LABELS[i] for i in after.argmax(axis=1)] == ["DSAT", "SAT", "NEUTRAL"]


def test_only_the_adapter_and_head_are_trained_and_shipped(trained: CrossEncoder, tmp_path: Path) -> None:
    trainable = sum(p.numel() for p in trained.encoder.parameters() if p.requires_grad)
    assert 0 < trainable < 1_000_000  # rank 16 on 36 projections, not MiniLM's 22 M weights
    trained.calibration = Calibration(2.0, (0.1, -0.2, 0.1))
    trained.save(tmp_path)
    assert (tmp_path / WEIGHTS).stat().st_size < 5 * 2**20
    loaded = CrossEncoder.load(tmp_path)
    assert loaded.merged and loaded.calibration == trained.calibration
    np.testing.assert_allclose(loaded.logits(CLEAR[:3]), trained.logits(CLEAR[:3]), atol=1e-4)
    np.testing.assert_allclose(loaded.predict_proba(CLEAR[:3]).sum(axis=1), 1.0, atol=1e-5)


def test_a_merged_model_reads_the_same_and_refuses_to_train(trained: CrossEncoder, tmp_path: Path) -> None:
    trained.save(tmp_path)
    copy = CrossEncoder.load(tmp_path, merge=False)
    before = copy.logits(CLEAR)
    np.testing.assert_allclose(copy.merge().logits(CLEAR), before, atol=1e-4)
    with pytest.raises(RuntimeError, match="merged"):
        copy.fit(CLEAR)


def test_files_of_another_kind_are_refused(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="cross.json"):
        CrossEncoder.load(tmp_path)
    (tmp_path / META).write_text(json.dumps({"format": "something-else/9", "classes": list(LABELS)}))
    (tmp_path / WEIGHTS).write_bytes(b"")
    with pytest.raises(ValueError, match="not a cross-encoder of this version"):
        CrossEncoder.load(tmp_path)
