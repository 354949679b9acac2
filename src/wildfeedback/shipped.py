"""Data files that ship inside the package (rubrics, recipes), found by name or read from a path.

A team brings its own file by giving its path; a shipped one is named. Either way
the YAML is validated into a pydantic model, and a bad file gets one precise line:
which file, which field, what is wrong.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from wildfeedback.errors import describe_validation_error

M = TypeVar("M", bound=BaseModel)


def shipped_names(package: str, folder: str) -> list[str]:
    root = resources.files(package).joinpath(folder)
    return sorted(p.name.removesuffix(".yaml") for p in root.iterdir() if p.name.endswith(".yaml"))


def load_yaml_model(name_or_path: str | os.PathLike[str], model: type[M], *, package: str, folder: str,
                    kind: str, error: type[Exception]) -> M:
    """`model` from a YAML file by path, or from `package/folder/NAME.yaml` by name."""
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml") or candidate.exists():
        if not candidate.is_file():
            raise error(f"{candidate}: no such {kind} file")
        text, where = candidate.read_text(encoding="utf-8"), str(candidate)
    else:
        resource = resources.files(package).joinpath(folder, f"{name_or_path}.yaml")
        if not resource.is_file():
            raise error(f"unknown {kind} {str(name_or_path)!r}; shipped: {', '.join(shipped_names(package, folder))}")
        text, where = resource.read_text(encoding="utf-8"), f"{kind} {name_or_path}"
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as problem:
        raise error(f"{where}: not valid YAML: {problem}") from None
    try:
        return model.model_validate(data)
    except ValidationError as problem:
        raise error(f"{where}: {describe_validation_error(problem)}") from None
