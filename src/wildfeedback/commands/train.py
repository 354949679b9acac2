"""`wildfeedback train sft|dpo|kto|reward`: a YAML recipe run through TRL."""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from wildfeedback.commands.console import err, fail

app = typer.Typer(help="Train with TRL from the exports of `wildfeedback run` (recipes as YAML).",
                  no_args_is_help=True)


def _train(task: str, config: Optional[Path], data: Optional[str], model: Optional[str], output: Optional[str],
           max_steps: Optional[int], weighting: Optional[str], settings: Optional[list[str]], as_json: bool) -> None:
    from wildfeedback.training.data import DataError
    from wildfeedback.training.recipe import RecipeError, load_recipe, parse_assignment
    from wildfeedback.training.trainer import train

    try:
        recipe = load_recipe(config if config is not None else task)
        if recipe.task != task:
            raise RecipeError(f"{config}: a {recipe.task} recipe, not {task}")
        trl = dict(parse_assignment(s) for s in settings or [])
        if max_steps is not None:
            trl["max_steps"] = max_steps
        recipe = recipe.with_overrides(data=data, model=model, output_dir=output, weighting=weighting, trl=trl)
        # Transformers writes its log lines to stdout; stdout is for the result alone.
        with contextlib.redirect_stdout(sys.stderr):
            result = train(recipe)
    except (RecipeError, DataError, FileNotFoundError) as error:
        raise fail(str(error), 2) from None
    except TypeError as error:  # an unknown key in the recipe's trl block: TRL's own words
        raise fail(f"the recipe's trl settings: {error}", 2) from None
    summary = {k: v for k, v in result.as_dict().items() if k != "log_history"}
    if as_json:
        print(json.dumps(summary, indent=2, default=str))
        return
    err.print(f"{task}: {result.examples} examples, {result.steps} steps in {result.seconds:.0f} s on {result.device}, "
              f"{result.tokens_per_second:,.0f} tokens/s"
              + (f", peak GPU memory {result.peak_gpu_memory_gb:.1f} GB" if result.peak_gpu_memory_gb else ""))
    for key in ("loss", "rewards/margins", "rewards/accuracies"):
        if key in result.metrics:
            err.print(f"  {key}: {result.metrics[key]['first']:.4f} → {result.metrics[key]['last']:.4f}")
    err.print(f"→ {result.output_dir}")


def _command(task: str):  # type: ignore[no-untyped-def]
    def command(
        config: Annotated[Optional[Path], typer.Option("--config", "-c", help="A recipe YAML (default: the shipped recipe of this task).")] = None,
        data: Annotated[Optional[str], typer.Option(help="The run directory or export to train on.")] = None,
        model: Annotated[Optional[str], typer.Option(help="A model directory, a .gguf file, or 'embedded'.")] = None,
        output: Annotated[Optional[str], typer.Option("-o", "--output", help="Where the trained model goes.")] = None,
        max_steps: Annotated[Optional[int], typer.Option(help="Stop after N optimiser steps.")] = None,
        weighting: Annotated[Optional[str], typer.Option(help="dpo: none | confidence.")] = None,
        settings: Annotated[Optional[list[str]], typer.Option("--set", help="A TRL setting, KEY=VALUE (repeatable).")] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")] = False,
    ) -> None:
        _train(task, config, data, model, output, max_steps, weighting, settings, as_json)

    command.__doc__ = {"sft": "Supervised fine-tuning on the chosen replies.",
                       "dpo": "DPO on the pairs (the paper: beta 0.1, from the SFT model).",
                       "kto": "KTO on the unpaired labels.",
                       "reward": "A reward model on the pairs, with confidence margins."}[task]
    return command


for _task in ("sft", "dpo", "kto", "reward"):
    app.command(_task)(_command(_task))
