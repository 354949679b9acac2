"""Training recipes through TRL, on tiny models built from configs (no hub)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests import tiny_models
from wildfeedback.preferences.export import PreferenceExporter
from wildfeedback.schema import ChatTurn, PreferencePair, UnpairedExample
from wildfeedback.training.recipe import RecipeError, load_recipe, parse_assignment, shipped_recipes
from wildfeedback.training.trainer import train

TOPICS = ["Rome", "Paris", "Oslo", "Lima", "Kyiv", "Cairo", "Delhi", "Tokyo"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An export like `wildfeedback run` writes: chosen replies say 'yes <topic>', rejected 'no'."""
    out = tmp_path_factory.mktemp("run")
    exporter = PreferenceExporter(out)
    for i, topic in enumerate(TOPICS):
        prompt = [ChatTurn(role="user", content=f"Tell me about {topic}.")]
        exporter.add_pair(PreferencePair(id=f"p{i}", kind="generated", prompt=prompt, chosen=f"Yes, {topic} is lovely.",
                                         rejected="No.", conversation_id=f"c{i}", turn_index=1,
                                         confidence=0.2 + 0.1 * i))
        exporter.add_unpaired(UnpairedExample(id=f"u{i}", prompt=prompt, completion=f"Yes, {topic}.", label=i % 2 == 0,
                                              conversation_id=f"c{i}", turn_index=1))
    exporter.close()
    return out


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tiny")
    tiny_models.causal_lm().save_pretrained(path)
    tiny_models.tokenizer().save_pretrained(path)
    return path


def test_recipes_are_data_and_overrides_are_checked() -> None:
    assert set(shipped_recipes()) >= {"sft", "dpo", "kto", "reward"}
    dpo = load_recipe("dpo")
    assert dpo.task == "dpo" and dpo.trl["beta"] == 0.1 and dpo.trl["num_train_epochs"] == 1
    assert dpo.model == "out/train/sft"  # the paper: DPO from the SFT model
    changed = dpo.with_overrides(trl={"beta": 0.2}, output_dir="x")
    assert changed.trl["beta"] == 0.2 and changed.trl["learning_rate"] == dpo.trl["learning_rate"]
    assert parse_assignment("learning_rate=1e-6") == ("learning_rate", 1e-6)
    assert parse_assignment("loss_type=[robust]") == ("loss_type", ["robust"])
    with pytest.raises(RecipeError, match="task"):
        dpo.with_overrides(task="ppo")
    with pytest.raises(RecipeError, match="expected KEY=VALUE"):
        parse_assignment("beta")


def _quick(recipe, tiny_dir: Path, run_dir: Path, out: Path, **trl):  # type: ignore[no-untyped-def]
    settings = {"max_steps": 8, "learning_rate": 5e-3, "per_device_train_batch_size": 4,
                "gradient_accumulation_steps": 1, "logging_steps": 1, "max_length": 64, "warmup_steps": 0,
                "lr_scheduler_type": "constant", **trl}
    return recipe.with_overrides(model=str(tiny_dir), data=str(run_dir), output_dir=str(out), trl=settings)


def test_dpo_reward_margin_rises_on_the_training_pairs(tiny_dir: Path, run_dir: Path, tmp_path: Path) -> None:
    result = train(_quick(load_recipe("dpo"), tiny_dir, run_dir, tmp_path / "dpo"))
    margins = [h["rewards/margins"] for h in result.log_history if "rewards/margins" in h]
    assert len(margins) == 8
    assert margins[-1] > margins[0] + 0.05, margins  # the policy moves towards the chosen replies
    assert (tmp_path / "dpo" / "config.json").exists() and (tmp_path / "dpo" / "training.json").exists()
    assert result.steps == 8 and result.tokens_per_second > 0


def test_sft_then_confidence_weighted_dpo_then_kto_and_reward(tiny_dir: Path, run_dir: Path, tmp_path: Path) -> None:
    sft = train(_quick(load_recipe("sft"), tiny_dir, run_dir, tmp_path / "sft", max_steps=4))
    assert sft.metrics["loss"]["last"] < sft.metrics["loss"]["first"]
    weighted = _quick(load_recipe("dpo"), tiny_dir, run_dir, tmp_path / "wdpo", max_steps=2)
    weighted = weighted.with_overrides(model=str(tmp_path / "sft"), weighting="confidence")
    assert train(weighted).steps == 2
    robust = _quick(load_recipe("dpo"), tiny_dir, run_dir, tmp_path / "rdpo", max_steps=2, loss_type=["robust"],
                    label_smoothing=0.1)
    assert train(robust).steps == 2
    assert train(_quick(load_recipe("kto"), tiny_dir, run_dir, tmp_path / "kto", max_steps=2)).steps == 2
    reward = train(_quick(load_recipe("reward"), tiny_dir, run_dir, tmp_path / "rm", max_steps=2))
    config = json.loads((tmp_path / "rm" / "config.json").read_text())
    assert reward.steps == 2 and config["architectures"] == ["LlamaForSequenceClassification"]
    assert len(config["id2label"]) == 1  # one score per sequence


def test_lora_adapter_is_merged_into_a_loadable_model(tiny_dir: Path, run_dir: Path, tmp_path: Path) -> None:
    recipe = _quick(load_recipe("dpo"), tiny_dir, run_dir, tmp_path / "lora", max_steps=2)
    recipe = recipe.with_overrides(lora={"r": 4, "alpha": 8, "dropout": 0.0})
    assert train(recipe).steps == 2
    from wildfeedback.llm.local import load_causal_lm

    model, _ = load_causal_lm(tmp_path / "lora")
    assert not any("lora" in name for name, _ in model.named_parameters())
