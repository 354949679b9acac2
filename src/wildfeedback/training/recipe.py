"""A training recipe: which TRL trainer, which model, which data, which settings.

Recipes are YAML files (`train/recipes/*.yaml` ship the paper's: SFT on the chosen
replies, then DPO with beta 0.1 from the SFT model; KTO and a reward model too).
The `trl:` block goes to TRL's own config class unchanged, so every TRL option is
available without this package knowing it; an unknown key fails with TRL's error.
"""

from __future__ import annotations

import os
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from wildfeedback.errors import WildfeedbackError, describe_validation_error
from wildfeedback.shipped import load_yaml_model, shipped_names

Task = Literal["sft", "dpo", "kto", "reward"]
TASKS: tuple[str, ...] = ("sft", "dpo", "kto", "reward")


class RecipeError(WildfeedbackError, ValueError):
    pass


class LoraSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    r: int = Field(default=16, ge=1)
    alpha: int = Field(default=32, ge=1)
    dropout: float = Field(default=0.05, ge=0.0, lt=1.0)
    target_modules: str | list[str] = "all-linear"
    merge: bool = True  # save the merged model (what `evaluate` and `--llm embedded:DIR` load)


class Recipe(BaseModel):
    model_config = ConfigDict(extra="forbid")

    task: Task
    model: str = "embedded"
    data: str = "out/run"
    output_dir: str
    lora: LoraSettings | None = None
    weighting: Literal["none", "confidence"] = "none"
    seed: int = 0
    trl: dict[str, Any] = Field(default_factory=dict)

    def with_overrides(self, **values: Any) -> Recipe:
        """A copy with the given fields replaced (None leaves a field as it is);
        `trl` entries are merged into the recipe's, not replacing them."""
        data = self.model_dump()
        for key, value in values.items():
            if value is None:
                continue
            if key == "trl":
                data["trl"] = {**data["trl"], **value}
            else:
                data[key] = value
        try:
            return Recipe.model_validate(data)
        except ValidationError as error:
            raise RecipeError(describe_validation_error(error)) from None


def shipped_recipes() -> list[str]:
    return shipped_names(__package__, "recipes")


def load_recipe(name_or_path: str | os.PathLike[str]) -> Recipe:
    """A shipped recipe by name (`sft`, `dpo`, `kto`, `reward`) or a YAML file."""
    return load_yaml_model(name_or_path, Recipe, package=__package__, folder="recipes", kind="recipe",
                           error=RecipeError)


def parse_assignment(text: str) -> tuple[str, Any]:
    """`--set beta=0.2` -> ("beta", 0.2): the value is read as YAML (numbers, lists, booleans)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise RecipeError(f"--set {text!r}: expected KEY=VALUE, e.g. --set learning_rate=1e-6")
    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError as error:
        raise RecipeError(f"--set {text!r}: the value is not valid YAML: {error}") from None
    if isinstance(parsed, str):  # YAML 1.1 reads "1e-6" as text; a number is meant
        try:
            parsed = float(parsed)
        except ValueError:
            pass
    return key.strip(), parsed
