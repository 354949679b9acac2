"""The exports in TRL's formats, loaded into TRL's own trainers (tiny models from configs)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests import tiny_models
from wildfeedback.preferences.export import PreferenceExporter
from wildfeedback.schema import ChatTurn, PreferencePair, UnpairedExample


def turns(*texts: str) -> list[ChatTurn]:
    return [ChatTurn(role="user" if i % 2 == 0 else "assistant", content=t) for i, t in enumerate(texts)]


PAIRS = [
    PreferencePair(id=f"p{i}", kind=kind, prompt=turns(f"Plan day {i} in Rome."), chosen=f"Colosseum, then Forum ({i}).",
                   rejected=f"Paris: Louvre ({i}).", conversation_id=f"c{i}", turn_index=1, feedback_turn=2,
                   categories=["Ignored"], evidence="Rome", preferences="Rome, not Paris." if kind == "generated" else None,
                   checklist=["Is it Rome?"] if kind == "generated" else [], confidence=0.5 + i / 20 if i % 3 else None,
                   detector="student", generator="m" if kind == "generated" else None,
                   prompt_versions={"reply": "preferred_reply.v1"} if kind == "generated" else {},
                   chosen_prompt=turns(f"Plan day {i} in Rome.", "Paris", "Rome!") if kind == "corrected" else None)
    for i, kind in enumerate(["generated", "corrected", "ranked", "generated", "pairwise", "generated"])
]
UNPAIRED = [
    UnpairedExample(id=f"u{i}", prompt=turns(f"Question {i}?"), completion=f"Answer {i}.", label=i % 2 == 0,
                    conversation_id=f"c{i}", turn_index=1, confidence=0.8)
    for i in range(6)
]


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("export")
    exporter = PreferenceExporter(out)
    for p in PAIRS:
        exporter.add_pair(p)
    for u in UNPAIRED:
        exporter.add_unpaired(u)
    exporter.close({"detector": "student"})
    return out


def test_files_formats_and_card(exported: Path) -> None:
    import datasets

    for name in ("dpo", "kto", "rm"):
        assert (exported / name / "train.jsonl").exists() and (exported / name / "train.parquet").exists()
    first = json.loads((exported / "dpo" / "train.jsonl").read_text().splitlines()[0])
    assert first["prompt"] == [{"role": "user", "content": "Plan day 0 in Rome."}]
    assert first["chosen"] == [{"role": "assistant", "content": "Colosseum, then Forum (0)."}]
    assert first["rejected"] == [{"role": "assistant", "content": "Paris: Louvre (0)."}]
    assert first["kind"] == "generated" and first["checklist"] == ["Is it Rome?"]
    assert json.loads(first["prompt_versions"]) == {"reply": "preferred_reply.v1"}
    corrected = json.loads((exported / "dpo" / "train.jsonl").read_text().splitlines()[1])
    assert json.loads(corrected["chosen_prompt"])[-1] == {"role": "user", "content": "Rome!"}
    kto = datasets.load_from_disk(str(exported / "kto" / "hf"))["train"]
    assert kto.num_rows == 6 and kto[0]["label"] is True and kto[0]["completion"][0]["role"] == "assistant"
    rm = datasets.load_dataset("parquet", data_files=str(exported / "rm" / "train.parquet"))["train"]
    assert rm["margin"][:3] == [0.0, pytest.approx(0.55), pytest.approx(0.6)]
    card = (exported / "README.md").read_text()
    assert "| `dpo/` | 6 |" in card and "| generated | 3 |" in card and "| Ignored | 6 |" in card
    assert "3 desirable, 3 undesirable" in card


def _args(config_class, tmp: Path, **extra):  # type: ignore[no-untyped-def]
    return config_class(output_dir=str(tmp), per_device_train_batch_size=2, max_steps=2, learning_rate=1e-3,
                        logging_steps=1, report_to=[], use_cpu=True, save_strategy="no", **extra)


def test_dpo_export_trains_in_trl(exported: Path, tmp_path: Path) -> None:
    import datasets
    from trl import DPOConfig, DPOTrainer

    tok = tiny_models.tokenizer()
    data = datasets.load_from_disk(str(exported / "dpo" / "hf"))["train"]
    # A model built from a config has no path to load the reference from: pass it (same seed, same weights).
    trainer = DPOTrainer(model=tiny_models.causal_lm(), ref_model=tiny_models.causal_lm(),
                         args=_args(DPOConfig, tmp_path, max_length=128),
                         train_dataset=data, processing_class=tok)
    batch = next(iter(trainer.get_train_dataloader()))
    assert batch["input_ids"].shape[0] == 4  # two pairs: chosen and rejected sequences stacked
    result = trainer.train()
    assert result.global_step == 2


def test_kto_export_trains_in_trl(exported: Path, tmp_path: Path) -> None:
    import datasets
    from trl import KTOConfig, KTOTrainer

    tok = tiny_models.tokenizer()
    data = datasets.load_from_disk(str(exported / "kto" / "hf"))["train"]
    trainer = KTOTrainer(model=tiny_models.causal_lm(), ref_model=tiny_models.causal_lm(),
                         args=_args(KTOConfig, tmp_path, max_length=128),
                         train_dataset=data, processing_class=tok)
    assert trainer.train().global_step == 2


def test_reward_export_trains_in_trl(exported: Path, tmp_path: Path) -> None:
    import datasets
    from trl import RewardConfig, RewardTrainer

    tok = tiny_models.tokenizer()
    data = datasets.load_from_disk(str(exported / "rm" / "hf"))["train"]
    trainer = RewardTrainer(model=tiny_models.reward_model(), args=_args(RewardConfig, tmp_path, max_length=128),
                            train_dataset=data, processing_class=tok)
    batch = next(iter(trainer.get_train_dataloader()))
    assert "margin" in batch
    assert trainer.train().global_step == 2
