"""`bench feedback`: detectors against real users' (dis)satisfaction in LLM-era chats.

The labels are `../shared/data/sharegpt-feedback/labels.jsonl`: 2,086 user turns
of real ChatGPT conversations judged SAT / DSAT / NEUTRAL with WildFeedback's
rubric. Protocol:

* the data's own `fold` field (five folds by conversation): the lexical student
  is trained on four folds and tested on the fifth, for each fold; figures are
  pooled over the five test folds. The shipped MiniLM student is not retrained
  (it is what `signals detect` uses today) and reads every turn;
* labels are the argmax of each model's probabilities; the DSAT
  precision-recall points show what a stricter DSAT threshold would give;
* rates are compared on the `random` stratum only (the other two strata were
  drawn for their cue words);
* the annotators' own agreement is Cohen's kappa over the turns labelled twice;
* throughput: each detector on the first N conversations of the packaged
  ShareGPT file, in this process, after its model is loaded.

Not yet here (issue 11): the learning curve, leave-one-source-out, and a fine-
tuned encoder.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from wildfeedback.evaluate.stats import agreement
from wildfeedback.signals.labels import LABELS, LabelledTurn

DEFAULT_DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data"
PR_THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


@dataclass(frozen=True)
class LabelledItem:
    turn: LabelledTurn
    fold: int
    stratum: str
    second_label: str | None


def load_labels(path: str | os.PathLike[str]) -> list[LabelledItem]:
    """The labelled turns; a line that does not fit names its number."""
    items = []
    with open(path, encoding="utf-8") as stream:
        for number, line in enumerate(stream, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                turn = LabelledTurn(row["conversation_id"], "sharegpt", int(row["turn_index"]),
                                    row["assistant_reply"] or "", row["user_turn"] or "", row["label"],
                                    row.get("previous_user_turn") or "", 1, tuple(row.get("categories") or ()))
                second = row.get("second_label")  # {"label": ..., "categories": ..., "evidence": ...} or null
                items.append(LabelledItem(turn, int(row["fold"]), row["stratum"],
                                          second["label"] if isinstance(second, dict) else second))
            except (KeyError, TypeError, ValueError) as error:
                raise ValueError(f"{path}, line {number}: {type(error).__name__}: {error}") from None
    return items


def labels_of(probabilities: np.ndarray) -> list[str]:
    return [LABELS[int(i)] for i in np.argmax(probabilities, axis=1)]


def summarise(items: Sequence[LabelledItem], probabilities: np.ndarray) -> dict[str, Any]:
    """Agreement, rates on the random stratum, DSAT precision-recall points, per-category F1."""
    gold = [item.turn.label for item in items]
    predicted = labels_of(probabilities)
    result = agreement(gold, predicted, labels=list(LABELS))
    random = [i for i, item in enumerate(items) if item.stratum == "random"]
    result["random_stratum_rates"] = {
        label: {"predicted": round(100 * sum(predicted[i] == label for i in random) / len(random), 1),
                "labelled": round(100 * sum(gold[i] == label for i in random) / len(random), 1)}
        for label in LABELS
    } if random else {}
    is_dsat = np.array([label == "DSAT" for label in gold])
    points = []
    for threshold in PR_THRESHOLDS:
        chosen = probabilities[:, LABELS.index("DSAT")] >= threshold
        hits = int(np.sum(chosen & is_dsat))
        points.append({"threshold": threshold, "precision": round(hits / max(int(chosen.sum()), 1), 3),
                       "recall": round(hits / max(int(is_dsat.sum()), 1), 3)})
    result["dsat_precision_recall"] = points
    return result


def category_f1(items: Sequence[LabelledItem], predicted: Sequence[Sequence[str]]) -> dict[str, float]:
    """F1 per rubric category over the turns, a category counted where the turn names it."""
    names = sorted({name for item in items for name in item.turn.categories})
    scores = {}
    for name in names:
        gold = np.array([name in item.turn.categories for item in items])
        guess = np.array([name in chosen for chosen in predicted])
        hits = int(np.sum(gold & guess))
        precision, recall = hits / max(int(guess.sum()), 1), hits / max(int(gold.sum()), 1)
        scores[name] = round(2 * precision * recall / (precision + recall), 3) if hits else 0.0
    return scores


def annotator_kappa(items: Sequence[LabelledItem]) -> dict[str, Any] | None:
    twice = [item for item in items if item.second_label]
    if not twice:
        return None
    return agreement([i.turn.label for i in twice], [i.second_label for i in twice], labels=list(LABELS))  # type: ignore[misc]


def cross_validate_lexical(items: Sequence[LabelledItem], c: float = 10.0) -> tuple[np.ndarray, list[list[str]]]:
    """Out-of-fold probabilities and categories of the lexical student, fold by fold."""
    from wildfeedback.signals.lexical import LexicalStudent

    probabilities = np.zeros((len(items), len(LABELS)))
    categories: list[list[str]] = [[] for _ in items]
    for fold in sorted({item.fold for item in items}):
        train = [item.turn for item in items if item.fold != fold]
        test = [i for i, item in enumerate(items) if item.fold == fold]
        model = LexicalStudent.fit(train, c=c)
        turns = [items[i].turn for i in test]
        fold_probabilities = model.predict_proba(turns)
        fold_categories = model.categories_for(turns, labels_of(fold_probabilities))
        for i, p, chosen in zip(test, fold_probabilities, fold_categories, strict=True):
            probabilities[i], categories[i] = p, chosen
    return probabilities, categories


def shipped_student_probabilities(items: Sequence[LabelledItem]) -> np.ndarray:
    from wildfeedback.signals.student import StudentDetector

    return StudentDetector.load().predict_proba([item.turn for item in items])


def throughput(conversations: int) -> dict[str, Any]:
    """Conversations per second of each detector on the packaged ShareGPT file."""
    from wildfeedback.ingest import sharegpt_package_file
    from wildfeedback.io.reader import read_conversations
    from wildfeedback.schema import Conversation
    from wildfeedback.signals.lexical import LexicalStudent
    from wildfeedback.signals.student import StudentDetector, turns_of

    sample = []
    for record in read_conversations(sharegpt_package_file()):
        if isinstance(record, Conversation):
            sample.append(record)
            if len(sample) >= conversations:
                break
    turns = len(turns_of(sample))
    lexical = LexicalStudent.fit([item.turn for item in load_labels(_labels_path(None))])
    results = {}
    for name, detector in (("shipped student (MiniLM)", StudentDetector.load()), ("lexical student", lexical)):
        started = time.perf_counter()
        detector.detect(sample)
        seconds = time.perf_counter() - started
        results[name] = {"conversations": len(sample), "turns": turns, "seconds": round(seconds, 2),
                         "conversations_per_s": round(len(sample) / seconds, 1)}
    results["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return results


def _labels_path(data: str | None) -> Path:
    return Path(data or DEFAULT_DATA) / "sharegpt-feedback" / "labels.jsonl"


def run_feedback_bench(data: str | None = None, conversations: int = 200) -> dict[str, Any]:
    path = _labels_path(data)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the ShareGPT feedback labels are not there (pass --data)")
    items = load_labels(path)
    lexical, categories = cross_validate_lexical(items)
    results: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                    "python": platform.python_version()},
        "labels": {"turns": len(items), "file": str(path)},
        "annotators": annotator_kappa(items),
        "lexical student (5-fold, given folds)": {**summarise(items, lexical),
                                                   "category_f1": category_f1(items, categories)},
        "shipped student (not retrained)": summarise(items, shipped_student_probabilities(items)),
    }
    if conversations:
        results["throughput"] = throughput(conversations)
    return results


def render(results: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(stderr=True)
    table = Table(title=f"bench feedback — {results['labels']['turns']:,} labelled ShareGPT turns", title_justify="left")
    for column in ("detector", "kappa", "acc", "DSAT P", "DSAT R", "DSAT F1", "SAT F1", "random DSAT% pred/lab",
                   "random SAT% pred/lab"):
        table.add_column(column, justify="right" if column != "detector" else "left")
    rows = {k: v for k, v in results.items() if "student" in k}
    if results.get("annotators"):
        rows["annotators (second label)"] = results["annotators"]
    for name, r in rows.items():
        per, rates = r["per_class"], r.get("random_stratum_rates") or {}
        table.add_row(name, f"{r['kappa']:.2f}", f"{r['accuracy']:.2f}", f"{per['DSAT']['precision']:.2f}",
                      f"{per['DSAT']['recall']:.2f}", f"{per['DSAT']['f1']:.2f}", f"{per['SAT']['f1']:.2f}",
                      *(f"{rates[k]['predicted']} / {rates[k]['labelled']}" if rates else "" for k in ("DSAT", "SAT")))
    console.print(table)
    for name, speed in (results.get("throughput") or {}).items():
        if isinstance(speed, dict):
            console.print(f"{name}: {speed['conversations_per_s']} conversations/s "
                          f"({speed['turns']:,} turns of {speed['conversations']:,} conversations in {speed['seconds']} s)")
    machine = results["machine"]
    console.print(f"machine: {machine['cpus']} CPUs, {machine['processor']}, Python {machine['python']}")


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="wildfeedback bench feedback", description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=None, help="the shared data folder (default ../shared/data)")
    parser.add_argument("--throughput", type=int, default=200,
                        help="packaged ShareGPT conversations for the throughput run (0: skip)")
    parser.add_argument("--json", default=None, help="also write the results as JSON here")
    args = parser.parse_args(argv)
    results = run_feedback_bench(args.data, args.throughput)
    render(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return results
