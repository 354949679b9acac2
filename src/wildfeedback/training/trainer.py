"""Run a recipe with TRL's trainer for its task, and say what it did.

The policy may be any local model directory or a GGUF file (the embedded SmolLM2
by default); it is loaded offline and made trainable (`llm.local.trainable`).
TRL builds a reference model from the policy's hub id when it is given none, which
a local or GGUF model does not have, so the reference is loaded here, the same way
(with LoRA there is none: the adapter switched off is the reference).

Confidence weighting for DPO samples each pair with probability in proportion to
its weight (`WeightedDPOTrainer`): the expected loss of a batch is then the
confidence-weighted loss, with TRL's loss code untouched.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from wildfeedback.llm.local import load_causal_lm, trainable
from wildfeedback.training.data import load_task_data
from wildfeedback.training.recipe import Recipe


@dataclass
class TrainResult:
    task: str
    output_dir: str
    model: str
    examples: int
    steps: int
    seconds: float
    tokens: int
    tokens_per_second: float
    device: str
    peak_gpu_memory_gb: float | None
    metrics: dict[str, Any] = field(default_factory=dict)  # first and last logged values of each metric
    log_history: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _weighted_dpo_class() -> Any:
    import torch
    from trl import DPOTrainer

    class WeightedDPOTrainer(DPOTrainer):
        """DPO with pairs drawn in proportion to their `weight` column."""

        def _get_train_sampler(self, train_dataset: Any = None) -> Any:
            weights = self.train_dataset["weight"]
            generator = torch.Generator().manual_seed(self.args.seed)
            return torch.utils.data.WeightedRandomSampler(weights, num_samples=len(weights), replacement=True,
                                                          generator=generator)

    return WeightedDPOTrainer


def _config(recipe: Recipe) -> Any:
    import torch
    import trl

    config_class = {"sft": trl.SFTConfig, "dpo": trl.DPOConfig, "kto": trl.KTOConfig, "reward": trl.RewardConfig}
    settings: dict[str, Any] = {"report_to": [], "save_strategy": "no", "seed": recipe.seed, **recipe.trl}
    if not torch.cuda.is_available():
        settings.setdefault("use_cpu", True)
        # TRL 1.x defaults to bf16; on a CPU without bf16 units autocast makes each step ~20x slower.
        settings.setdefault("bf16", False)
    elif torch.cuda.is_bf16_supported():
        settings.setdefault("bf16", True)
    return config_class[recipe.task](output_dir=recipe.output_dir, **settings)


def _peft_config(recipe: Recipe) -> Any:
    if recipe.lora is None:
        return None
    from peft import LoraConfig

    return LoraConfig(r=recipe.lora.r, lora_alpha=recipe.lora.alpha, lora_dropout=recipe.lora.dropout,
                      target_modules=recipe.lora.target_modules,
                      task_type="SEQ_CLS" if recipe.task == "reward" else "CAUSAL_LM")


def train(recipe: Recipe) -> TrainResult:
    """Train, save the model and tokenizer to `recipe.output_dir` (with `training.json`)."""
    import torch
    import trl

    data = load_task_data(recipe.data, recipe.task, recipe.weighting)
    head = "reward" if recipe.task == "reward" else "causal"
    model, tokenizer = load_causal_lm(recipe.model, head=head)
    model = trainable(model)
    args = _config(recipe)
    peft = _peft_config(recipe)
    kwargs: dict[str, Any] = {"model": model, "args": args, "train_dataset": data, "processing_class": tokenizer}
    if peft is not None:
        kwargs["peft_config"] = peft
    if recipe.task in ("dpo", "kto") and peft is None:
        reference, _ = load_causal_lm(recipe.model)
        kwargs["ref_model"] = trainable(reference)
    trainer_class = {"sft": trl.SFTTrainer, "dpo": trl.DPOTrainer, "kto": trl.KTOTrainer,
                     "reward": trl.RewardTrainer}[recipe.task]
    if recipe.task == "dpo" and recipe.weighting == "confidence":
        trainer_class = _weighted_dpo_class()
    trainer = trainer_class(**kwargs)

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    output = trainer.train()
    seconds = time.perf_counter() - started
    peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None

    final = trainer.model
    if peft is not None and recipe.lora is not None and recipe.lora.merge:
        final = final.merge_and_unload()
    out = Path(recipe.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    final.save_pretrained(out)
    tokenizer.save_pretrained(out)

    history = [dict(h) for h in trainer.state.log_history]
    tokens = int(trainer.state.num_input_tokens_seen or 0) or _logged_tokens(history)
    result = TrainResult(
        task=recipe.task,
        output_dir=str(out),
        model=str(recipe.model),
        examples=data.num_rows,
        steps=output.global_step,
        seconds=seconds,
        tokens=tokens,
        tokens_per_second=tokens / seconds if seconds and tokens else 0.0,
        device=str(trainer.args.device),
        peak_gpu_memory_gb=peak,
        metrics=_first_and_last(history),
        log_history=history,
    )
    (out / "training.json").write_text(json.dumps({"recipe": recipe.model_dump(), "result": result.as_dict()},
                                                  indent=2, default=str) + "\n")
    return result


def _logged_tokens(history: list[dict[str, Any]]) -> int:
    counts = [h["num_tokens"] for h in history if isinstance(h.get("num_tokens"), int | float)]
    return int(max(counts)) if counts else 0


def _first_and_last(history: list[dict[str, Any]]) -> dict[str, Any]:
    series: dict[str, list[float]] = {}
    for entry in history:
        for key, value in entry.items():
            if isinstance(value, int | float) and key not in ("epoch", "step"):
                series.setdefault(key, []).append(float(value))
    return {key: {"first": values[0], "last": values[-1], "n": len(values)} for key, values in series.items()}
