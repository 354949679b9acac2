"""The training data of each task, read from the exports of `wildfeedback run`.

    sft     dpo/ export: prompt -> the chosen reply (prompt-completion, loss on the reply)
    dpo     dpo/ export: prompt, chosen, rejected (+ `weight` for confidence weighting)
    kto     kto/ export: prompt, completion, label
    reward  rm/ export: prompt, chosen, rejected, margin

`data` may be the run's directory (its `dpo/`, `kto/`, `rm/` folders), one export
folder, or a file (.jsonl / .parquet) of that format. Only the columns the trainer
reads are kept: provenance stays in the export, not in the tokenised dataset.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from wildfeedback.errors import WildfeedbackError

COLUMNS = {
    "sft": ("prompt", "completion"),
    "dpo": ("prompt", "chosen", "rejected"),
    "kto": ("prompt", "completion", "label"),
    "reward": ("prompt", "chosen", "rejected", "margin"),
}
EXPORT_OF = {"sft": "dpo", "dpo": "dpo", "kto": "kto", "reward": "rm"}
# Weights are the detector's confidence in the dissatisfaction, floored so no pair
# vanishes; pairs that carry no confidence (people's own choices: rankings,
# side-by-side picks) weigh 1.
MIN_WEIGHT = 0.05


class DataError(WildfeedbackError, ValueError):
    pass


def export_file(data: str | Path, task: str) -> Path:
    path = Path(data)
    if path.is_file():
        return path
    for folder in (path / EXPORT_OF[task], path):
        for name in ("train.parquet", "train.jsonl"):
            if (folder / name).is_file():
                return folder / name
    raise DataError(f"no {EXPORT_OF[task]} export under {path} (expected {path / EXPORT_OF[task] / 'train.parquet'}); "
                    "make one with `wildfeedback run`")


def load_task_data(data: str | Path, task: str, weighting: str = "none") -> Any:
    """A `datasets.Dataset` with exactly the columns the task's trainer reads."""
    import datasets

    path = export_file(data, task)
    kind = "parquet" if path.suffix == ".parquet" else "json"
    dataset = datasets.load_dataset(kind, data_files=str(path), split="train")
    if dataset.num_rows == 0:
        raise DataError(f"{path}: the export is empty: nothing to train on")
    if task == "sft":
        dataset = dataset.map(lambda row: {"completion": row["chosen"]})
    missing = [c for c in COLUMNS[task] if c not in dataset.column_names]
    if missing:
        raise DataError(f"{path}: not a {EXPORT_OF[task]} export: no column {', '.join(missing)}")
    keep = list(COLUMNS[task])
    if task == "dpo" and weighting == "confidence":
        if "confidence" not in dataset.column_names:
            raise DataError(f"{path}: confidence weighting needs a `confidence` column")
        dataset = dataset.map(lambda row: {"weight": 1.0 if row["confidence"] is None
                                           else max(MIN_WEIGHT, float(row["confidence"]))})
        keep.append("weight")
    return dataset.select_columns(keep)
