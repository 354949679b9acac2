"""Preference data in TRL's own dataset formats, with provenance, as JSONL, Parquet and
a Hugging Face dataset directory, plus a dataset card.

* `dpo/`: conversational preference with an explicit prompt: `prompt` (messages),
  `chosen` and `rejected` (one assistant message each): `DPOTrainer`.
* `kto/`: unpaired preference: `prompt`, `completion` (one assistant message),
  `label` (True: the user was satisfied): `KTOTrainer`.
* `rm/`: the pairs again for `RewardTrainer`, with a `margin` from the detector's
  confidence in the dissatisfaction (0 where there is none).

Every row also carries where it came from: id, kind, source, conversation id,
turn index, categories, evidence, preferences, checklist, detector, generator,
prompt versions (JSON text), confidence, and for `corrected` pairs the chosen
reply's own prompt (`chosen_prompt`, JSON text).

Rows stream to JSONL as they come; Parquet and the dataset directory are made
from the JSONL at the end (preference data is small next to the logs it comes from).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from statistics import median
from typing import Any

import orjson

from wildfeedback.io.outputs import (
    check_folder_target,
    mark_as_ours,
    remove_temporary,
    swap_in,
    temporary_file,
    temporary_folder,
)
from wildfeedback.schema import PreferencePair, UnpairedExample

FORMATS = ("dpo", "kto", "rm")


def _assistant(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


def _prompt(turns: list[Any]) -> list[dict[str, str]]:
    return [{"role": t.role, "content": t.content} for t in turns]


def _provenance(record: PreferencePair | UnpairedExample) -> dict[str, Any]:
    out = {
        "id": record.id,
        "source": record.source,
        "conversation_id": record.conversation_id,
        "turn_index": record.turn_index,
        "feedback_turn": record.feedback_turn,
        "categories": list(record.categories),
        "evidence": record.evidence,
        "confidence": record.confidence,
        "detector": record.detector,
    }
    if isinstance(record, PreferencePair):
        out.update(
            kind=record.kind,
            preferences=record.preferences,
            checklist=list(record.checklist),
            generator=record.generator,
            prompt_versions=json.dumps(record.prompt_versions, sort_keys=True),
            chosen_prompt=json.dumps(_prompt(record.chosen_prompt)) if record.chosen_prompt else None,
        )
    return out


def dpo_row(pair: PreferencePair) -> dict[str, Any]:
    return {"prompt": _prompt(pair.prompt), "chosen": _assistant(pair.chosen), "rejected": _assistant(pair.rejected),
            **_provenance(pair)}


def rm_row(pair: PreferencePair) -> dict[str, Any]:
    return {**dpo_row(pair), "margin": float(pair.confidence or 0.0)}


def kto_row(example: UnpairedExample) -> dict[str, Any]:
    return {"prompt": _prompt(example.prompt), "completion": _assistant(example.completion), "label": example.label,
            **_provenance(example)}


@dataclass
class ExportStats:
    rows: Counter[str] = field(default_factory=Counter)
    kinds: Counter[str] = field(default_factory=Counter)
    categories: Counter[str] = field(default_factory=Counter)
    labels: Counter[str] = field(default_factory=Counter)
    chosen_chars: list[int] = field(default_factory=list)
    rejected_chars: list[int] = field(default_factory=list)
    completion_chars: list[int] = field(default_factory=list)


class PreferenceExporter:
    """Streams pairs and unpaired examples into OUT/{dpo,kto,rm}/train.jsonl, then makes
    Parquet, a `datasets` directory and the card on `close()`."""

    def __init__(self, directory: str | os.PathLike[str], *, overwrite: bool = False):
        self.directory = Path(directory)
        check_folder_target(self.directory, overwrite=overwrite, what="export")
        self.stats = ExportStats()
        self._files = {}
        self._partials: dict[str, Path] = {}
        for name in FORMATS:
            (self.directory / name).mkdir(parents=True, exist_ok=True)
            self._partials[name] = temporary_file(self.directory / name / "train.jsonl")
            self._files[name] = open(self._partials[name], "wb")

    def add_pair(self, pair: PreferencePair) -> None:
        self._write("dpo", dpo_row(pair))
        self._write("rm", rm_row(pair))
        self.stats.kinds[pair.kind] += 1
        self.stats.categories.update(pair.categories)
        self.stats.chosen_chars.append(len(pair.chosen))
        self.stats.rejected_chars.append(len(pair.rejected))

    def add_unpaired(self, example: UnpairedExample) -> None:
        self._write("kto", kto_row(example))
        self.stats.labels["desirable" if example.label else "undesirable"] += 1
        self.stats.completion_chars.append(len(example.completion))

    def _write(self, name: str, row: dict[str, Any]) -> None:
        self._files[name].write(orjson.dumps(row) + b"\n")
        self.stats.rows[name] += 1

    def close(self, card: dict[str, Any] | None = None) -> dict[str, Path]:
        """Finish every format (JSONL, Parquet, dataset directory) and write the card."""
        written = {}
        for name, stream in self._files.items():
            stream.close()
            folder = self.directory / name
            jsonl = folder / "train.jsonl"
            os.replace(self._partials[name], jsonl)
            written[name] = folder
            if self.stats.rows[name]:
                _to_parquet_and_dataset(jsonl, folder)
        (self.directory / "README.md").write_text(dataset_card(self.stats, card or {}), encoding="utf-8")
        mark_as_ours(self.directory, "preference exports")
        return written

    def abort(self) -> None:
        for name, stream in self._files.items():
            stream.close()
            remove_temporary(self._partials[name])


def _to_parquet_and_dataset(jsonl: Path, folder: Path) -> None:
    import datasets

    # from_list sees every row before fixing the column types (a column that is
    # null in the first rows and text later would trip block-wise JSON inference).
    with open(jsonl, "rb") as stream:
        rows = [orjson.loads(line) for line in stream if line.strip()]
    dataset = datasets.Dataset.from_list(rows)
    dataset.to_parquet(str(folder / "train.parquet"))
    target = folder / "hf"
    built = temporary_folder(target)
    try:
        datasets.DatasetDict({"train": dataset}).save_to_disk(str(built))
        swap_in(built, target, kind="dataset")
    except BaseException:
        remove_temporary(built)
        raise


def _length_row(name: str, values: list[int]) -> str:
    if not values:
        return f"| {name} | 0 | | | |"
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]
    return f"| {name} | {len(values):,} | {sum(values) / len(values):,.0f} | {median(values):,.0f} | {p90:,} |"


def dataset_card(stats: ExportStats, info: dict[str, Any]) -> str:
    """README.md for the exported dataset: counts, categories, lengths, models, how it was made."""
    kinds = "\n".join(f"| {k} | {n:,} |" for k, n in stats.kinds.most_common()) or "| (none) | 0 |"
    categories = "\n".join(f"| {c} | {n:,} |" for c, n in stats.categories.most_common()) or "| (none) | 0 |"
    settings = "\n".join(f"| {k} | {v} |" for k, v in info.items()) or "| | |"
    return f"""---
configs:
- config_name: dpo
  data_files: dpo/train.parquet
- config_name: kto
  data_files: kto/train.parquet
- config_name: rm
  data_files: rm/train.parquet
tags:
- wildfeedback
- preference
- dpo
- kto
---
# Preference data from in-situ user feedback

Made by [wildfeedback](https://pypi.org/project/wildfeedback/) from real conversations: where a
user showed dissatisfaction with a reply, that reply is *rejected* and a reply written under the
user's own stated preferences is *chosen*; natural pairs (regenerations, ranked or side-by-side
choices, a reply after the user's correction) and unpaired labels (KTO) come from the same
conversations. Every row says where it came from (conversation id, turn, detector, models,
prompt versions).

| export | rows | TRL trainer | columns |
| --- | ---: | --- | --- |
| `dpo/` | {stats.rows['dpo']:,} | `DPOTrainer` | prompt (messages), chosen, rejected (one assistant message each) |
| `kto/` | {stats.rows['kto']:,} | `KTOTrainer` | prompt, completion, label ({stats.labels['desirable']:,} desirable, {stats.labels['undesirable']:,} undesirable) |
| `rm/` | {stats.rows['rm']:,} | `RewardTrainer` | prompt, chosen, rejected, margin (detector confidence) |

Each folder has `train.jsonl`, `train.parquet` and `hf/` (`datasets.load_from_disk`).

## Pairs by kind

| kind | pairs |
| --- | ---: |
{kinds}

## Feedback categories (pairs)

| category | pairs |
| --- | ---: |
{categories}

## Lengths (characters)

| | count | mean | median | p90 |
| --- | ---: | ---: | ---: | ---: |
{_length_row("chosen", stats.chosen_chars)}
{_length_row("rejected", stats.rejected_chars)}
{_length_row("KTO completion", stats.completion_chars)}

## How it was made

| setting | value |
| --- | --- |
{settings}
"""
