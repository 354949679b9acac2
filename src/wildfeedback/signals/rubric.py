"""Rubrics as data: the categories of satisfaction and dissatisfaction a detector looks for.

A rubric is a YAML file (see `prompts/rubrics/wildfeedback.yaml`), so a team can
bring its own, or learn one from its labelled data, without touching code.
Shipped rubrics are found by name; anything else is read as a path.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from wildfeedback.errors import WildfeedbackError
from wildfeedback.shipped import load_yaml_model

Polarity = Literal["SAT", "DSAT"]


class RubricError(WildfeedbackError, ValueError):
    pass


class Category(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    description: str = Field(min_length=1)


class Thresholds(BaseModel):
    """How a learned rubric's overall score (sum of SAT weights minus sum of DSAT
    weights) becomes a label: SAT above `sat_above`, DSAT below `dsat_below`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sat_above: float = 0.0
    dsat_below: float = 0.0

    @model_validator(mode="after")
    def _ordered(self) -> Thresholds:
        if self.dsat_below > self.sat_above:
            raise ValueError(f"dsat_below ({self.dsat_below}) must not exceed sat_above ({self.sat_above})")
        return self

    def label(self, score: float) -> str:
        if score > self.sat_above:
            return "SAT"
        if score < self.dsat_below:
            return "DSAT"
        return "NEUTRAL"


class Rubric(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: str
    version: int | str = 1
    source: str | None = None
    sat: tuple[Category, ...] = Field(alias="SAT", min_length=1)
    dsat: tuple[Category, ...] = Field(alias="DSAT", min_length=1)
    thresholds: Thresholds = Field(default_factory=Thresholds)

    def to_yaml(self) -> str:
        data = self.model_dump(by_alias=True, exclude_none=True)
        data["SAT"] = [dict(c) for c in data["SAT"]]
        data["DSAT"] = [dict(c) for c in data["DSAT"]]
        return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)

    @model_validator(mode="after")
    def _names_are_unique(self) -> Rubric:
        names = [c.name.lower() for c in (*self.sat, *self.dsat)]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"category names repeat: {', '.join(repeated)}")
        return self

    def categories(self, polarity: Polarity) -> tuple[Category, ...]:
        return self.sat if polarity == "SAT" else self.dsat

    @cached_property
    def _canonical(self) -> dict[str, tuple[Polarity, str]]:
        table: dict[str, tuple[Polarity, str]] = {}
        for polarity in ("SAT", "DSAT"):
            for category in self.categories(polarity):  # type: ignore[arg-type]
                table[category.name.lower()] = (polarity, category.name)  # type: ignore[assignment]
        return table

    def resolve(self, name: str) -> tuple[Polarity, str] | None:
        """(polarity, canonical name) for a category name as a model wrote it, or None."""
        return self._canonical.get(name.strip().lower())

    @property
    def id(self) -> str:
        return f"{self.name}@{self.version}"


def load_rubric(name_or_path: str | Path = "wildfeedback") -> Rubric:
    """A shipped rubric by name, or a YAML file by path; precise errors for a bad file."""
    return load_yaml_model(name_or_path, Rubric, package="wildfeedback.prompts", folder="rubrics", kind="rubric",
                           error=RubricError)
