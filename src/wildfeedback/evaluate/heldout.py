"""The held-out evaluation set, chosen as WildFeedback chose theirs.

From preference pairs that carry the user's preferences and checklist: embed each
prompt together with its preferences (all-MiniLM-L6-v2), cluster the embeddings
with k-means into K groups, take the n items nearest to each centroid (so the set
covers the kinds of requests, not just the most common), drop exact repeats of a
prompt, and drop items whose prompt shares a word n-gram with the training export
(so a model is never evaluated on what it was trained on). Defaults K=70, n=10.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from wildfeedback.preferences.guards import Decontaminator, evaluation_prompts, last_user
from wildfeedback.schema import ChatTurn


class EvalItem(BaseModel):
    id: str
    prompt: list[ChatTurn] = Field(min_length=1)
    checklist: list[str] = Field(min_length=1)
    preferences: str | None = None
    conversation_id: str | None = None
    cluster: int | None = None


def read_items(path: str | Path) -> list[EvalItem]:
    """Items with a checklist from pairs.jsonl, a dpo export (JSONL / Parquet / its folder), or an items file."""
    path = Path(path)
    if path.is_dir():
        for candidate in (path / "pairs.jsonl", path / "dpo" / "train.parquet", path / "train.parquet",
                          path / "dpo" / "train.jsonl", path / "train.jsonl"):
            if candidate.is_file():
                path = candidate
                break
        else:
            raise FileNotFoundError(f"no pairs.jsonl or dpo export under {path}")
    rows: Iterable[dict[str, Any]]
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        rows = pq.read_table(path).to_pylist()
    else:
        with open(path, encoding="utf-8") as stream:
            rows = [json.loads(line) for line in stream if line.strip()]
    items = []
    for number, row in enumerate(rows):
        checklist = row.get("checklist") or []
        if not checklist:
            continue  # natural pairs have no user-derived checklist
        try:
            items.append(EvalItem(id=str(row.get("id", number)), prompt=row["prompt"], checklist=checklist,
                                  preferences=row.get("preferences"), conversation_id=row.get("conversation_id"),
                                  cluster=row.get("cluster")))
        except Exception as error:  # a precise error for a bad row
            raise ValueError(f"{path}, row {number}: {error}") from None
    return items


@dataclass
class HeldOutSelection:
    items: list[EvalItem]
    clusters: int
    candidates: int
    repeats: int
    contaminated: int


def select_held_out(items: Sequence[EvalItem], *, k: int = 70, n: int = 10, exclude: str | Path | None = None,
                    ngram: int = 8, seed: int = 0, encoder: Any = None) -> HeldOutSelection:
    from sklearn.cluster import KMeans

    from wildfeedback.signals.encoder import shared_encoder

    if not items:
        raise ValueError("no items with a checklist to choose from (run `wildfeedback run` first)")
    guard = Decontaminator(evaluation_prompts(exclude), ngram) if exclude else None
    pool, contaminated = [], 0
    for item in items:
        if guard is not None and guard.check(item.prompt):
            contaminated += 1
        else:
            pool.append(item)
    if not pool:
        raise ValueError(f"every one of {len(items)} items overlaps the training export {exclude}")
    texts = [f"{last_user(i.prompt)}\n{i.preferences or ''}" for i in pool]
    vectors = (encoder or shared_encoder()).encode(texts)
    clusters = min(k, len(pool))
    model = KMeans(n_clusters=clusters, n_init=10, random_state=seed).fit(vectors)
    distances = np.linalg.norm(vectors - model.cluster_centers_[model.labels_], axis=1)
    chosen: list[EvalItem] = []
    seen: set[str] = set()
    repeats = 0
    for cluster in range(clusters):
        members = np.flatnonzero(model.labels_ == cluster)
        for index in members[np.argsort(distances[members])]:
            item = pool[int(index)]
            key = " ".join(last_user(item.prompt).lower().split())
            if key in seen:
                repeats += 1
                continue
            if sum(1 for c in chosen if c.cluster == cluster) >= n:
                break
            seen.add(key)
            chosen.append(item.model_copy(update={"cluster": cluster}))
    return HeldOutSelection(chosen, clusters, len(items), repeats, contaminated)


def write_items(items: Sequence[EvalItem], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(i.model_dump_json() + "\n" for i in items), encoding="utf-8")
    return path
