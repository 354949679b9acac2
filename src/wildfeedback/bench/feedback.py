"""`bench feedback`: detectors against real users' (dis)satisfaction in LLM-era chats.

The labels are `../shared/data/sharegpt-feedback/labels.jsonl`: 2,086 user turns
of real ChatGPT conversations judged SAT / DSAT / NEUTRAL with WildFeedback's
rubric. Protocol:

* the data's own `fold` field (five folds by conversation): the lexical student
  is trained on four folds and tested on the fifth, for each fold; figures are
  pooled over the five test folds. The shipped MiniLM student is not retrained
  (it is what `signals detect` uses today) and reads every turn;
* the lexical student is trained as it is shipped (`train_lexical`): inside each
  training split, its calibration and DSAT / SAT thresholds come from that split's
  own folds, so no choice sees the test fold; its labels are read at those
  thresholds (and, for comparison, at the argmax). The DSAT precision-recall points
  show what other thresholds would give;
* rates are compared on the `random` stratum only (the other two strata were
  drawn for their cue words);
* the annotators' own agreement is Cohen's kappa over the turns labelled twice;
* other sources: the lexical student trained on USS, IFLLM and OASST alone (their
  own ratings; leave-ShareGPT-out) and read on every ShareGPT label, and those
  sources pooled with each training split, their SAT harmonised to NEUTRAL;
* optionally (`--cross-encoder`), MiniLM with a LoRA adapter fine-tuned as a
  cross-encoder on the training folds, alone, averaged with the lexical student,
  and as the second stage of the two-stage student (`signals/two_stage.py`);
* learning curve: the same folds with only 100 / 300 / 1,000 / all training turns;
* throughput: `signals detect` in a fresh process (start-up included) on the first
  N conversations of the packaged ShareGPT file, with that process's peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from wildfeedback.evaluate.stats import agreement
from wildfeedback.io.reader import read_conversations
from wildfeedback.schema import Conversation
from wildfeedback.signals.calibration import softmax
from wildfeedback.signals.cross_encoder import CrossEncoder, CrossEncoderConfig
from wildfeedback.signals.labels import LABELS, LabelledTurn, counts, examples_from
from wildfeedback.signals.lexical import LexicalStudent, out_of_fold_logits, train_lexical
from wildfeedback.signals.two_stage import UNCERTAIN_BELOW, cross_fitted

DEFAULT_DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data"
PR_THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
LEARNING_CURVE_SIZES = (100, 300, 1000)
POOLED_SHARE = 0.7  # of the training weight on the ShareGPT turns when pooled with the other sources
OTHER_SOURCES = ("uss/MWOZ.txt", "uss/SGD.txt", "uss/ReDial.txt", "uss/CCPE.txt", "ifllm/query_logs_table.csv",
                 "oasst/en_100_tree.jsonl")


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


def summarise(items: Sequence[LabelledItem], probabilities: np.ndarray,
              predicted: Sequence[str] | None = None) -> dict[str, Any]:
    """Agreement of `predicted` (the argmax when not given), rates on the random stratum —
    the share of turns labelled and, as a report estimates them, the mean probability —
    DSAT precision-recall points, per-category F1."""
    gold = [item.turn.label for item in items]
    predicted = list(predicted) if predicted is not None else labels_of(probabilities)
    result = agreement(gold, predicted, labels=list(LABELS))
    random = [i for i, item in enumerate(items) if item.stratum == "random"]
    result["random_stratum_rates"] = {
        label: {"predicted": round(100 * sum(predicted[i] == label for i in random) / len(random), 1),
                "estimated": round(100 * float(probabilities[random, k].mean()), 1),
                "labelled": round(100 * sum(gold[i] == label for i in random) / len(random), 1)}
        for k, label in enumerate(LABELS)
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


@dataclass
class CrossValidated:
    """Out-of-fold readings of every labelled turn."""

    probabilities: np.ndarray
    labels: list[str]  # at each fold's own calibrated thresholds
    categories: list[list[str]]


def cross_validate_lexical(items: Sequence[LabelledItem], c: float = 10.0, train_size: int | None = None,
                           seed: int = 0, categories: bool = True) -> CrossValidated:
    """The shipped recipe (`train_lexical`) fold by fold: trained on four folds — its
    calibration and thresholds from those folds alone, under their own folds — and read
    on the fifth. `train_size`: train on a seeded sample of that many turns of the four."""
    probabilities = np.zeros((len(items), len(LABELS)))
    labels: list[str] = ["NEUTRAL"] * len(items)
    chosen: list[list[str]] = [[] for _ in items]
    rng = np.random.default_rng(seed)
    for fold in sorted({item.fold for item in items}):
        train = [item for item in items if item.fold != fold]
        if train_size is not None and train_size < len(train):
            train = [train[i] for i in sorted(rng.choice(len(train), train_size, replace=False))]
        model = train_lexical([item.turn for item in train], folds=np.array([item.fold for item in train]),
                              uniform=np.array([item.stratum == "random" for item in train]), c=c,
                              categories=categories)
        test = [i for i, item in enumerate(items) if item.fold == fold]
        turns = [items[i].turn for i in test]
        fold_probabilities = model.predict_proba(turns)
        fold_labels = model.calibration.labels(fold_probabilities)
        fold_categories = model.categories_for(turns, fold_labels)
        for i, p, label, names in zip(test, fold_probabilities, fold_labels, fold_categories, strict=True):
            probabilities[i], labels[i], chosen[i] = p, label, names
    return CrossValidated(probabilities, labels, chosen)


def learning_curve(items: Sequence[LabelledItem], sizes: Sequence[int] = LEARNING_CURVE_SIZES,
                   full: CrossValidated | None = None) -> list[dict[str, Any]]:
    """Kappa and DSAT / SAT F1 under the folds when only N labelled turns are there to train
    on (a seeded sample of each fold's training turns): how many labels a team needs."""
    points = []
    for size in [*sizes, None]:
        result = full if size is None and full is not None else cross_validate_lexical(items, train_size=size,
                                                                                       categories=False)
        scores = agreement([item.turn.label for item in items], result.labels, labels=list(LABELS))
        points.append({"train_turns": size or "all", "kappa": round(scores["kappa"], 3),
                       "dsat_f1": round(scores["per_class"]["DSAT"]["f1"], 3),
                       "sat_f1": round(scores["per_class"]["SAT"]["f1"], 3)})
    return points


def other_sources(data: Path) -> list[LabelledTurn]:
    """The labelled turns of USS, IFLLM and OASST (their own ratings, `examples_from`)."""
    examples: list[LabelledTurn] = []
    for relative in OTHER_SOURCES:
        path = data / relative
        if path.exists():
            examples += examples_from(c for c in read_conversations(path) if isinstance(c, Conversation))
    return examples


def leave_sharegpt_out(items: Sequence[LabelledItem], examples: Sequence[LabelledTurn]) -> dict[str, Any]:
    """Trained on the other sources only, read on every ShareGPT label (argmax: without
    ShareGPT labels there is nothing to calibrate on): how far USS-style data carries."""
    model = LexicalStudent.fit(examples, categories=False)
    result = summarise(items, model.predict_proba([item.turn for item in items]))
    result["trained_on"] = counts(examples)
    return result


def pooled(items: Sequence[LabelledItem], examples: Sequence[LabelledTurn], share: float = POOLED_SHARE) -> dict[str, Any]:
    """The other sources pooled with the four training folds, fold by fold, their targets
    harmonised (their SAT, a rating of 4-5, becomes NEUTRAL: the ShareGPT rubric's SAT is a
    visible sign of approval) and weighted so the ShareGPT turns carry `share` of the
    weight; argmax of the raw scores, to compare with the ShareGPT-only argmax row."""
    harmonised = [replace(e, label="NEUTRAL") if e.label == "SAT" else e for e in examples]
    probabilities = np.zeros((len(items), len(LABELS)))
    for fold in sorted({item.fold for item in items}):
        train = [item.turn for item in items if item.fold != fold]
        weights = np.r_[np.full(len(train), share / len(train)), np.full(len(harmonised), (1 - share) / len(harmonised))]
        model = LexicalStudent.fit([*train, *harmonised], categories=False, sample_weight=weights * (len(weights)))
        test = [i for i, item in enumerate(items) if item.fold == fold]
        probabilities[test] = softmax(model.logits([items[i].turn for i in test]))
    return summarise(items, probabilities)


def sharegpt_only_raw(items: Sequence[LabelledItem]) -> dict[str, Any]:
    """The ShareGPT-only model's argmax of the raw scores (before calibration), fold by fold."""
    probabilities = np.zeros((len(items), len(LABELS)))
    for fold in sorted({item.fold for item in items}):
        model = LexicalStudent.fit([item.turn for item in items if item.fold != fold], categories=False)
        test = [i for i, item in enumerate(items) if item.fold == fold]
        probabilities[test] = softmax(model.logits([items[i].turn for i in test]))
    return summarise(items, probabilities)


def cross_encoder_rows(items: Sequence[LabelledItem], lexical: CrossValidated, folds: Sequence[int] | None = None,
                       config: CrossEncoderConfig | None = None) -> dict[str, dict[str, Any]]:
    """The cross-encoder (MiniLM with a LoRA adapter) trained on the training folds and read
    on the test fold (argmax of its softmax), alone and averaged with the lexical student's
    calibrated probabilities, over the chosen folds only (about eight minutes a fold on 2
    CPU cores), with its inference speed; over all folds, the two-stage student as shipped
    (`cross_fitted`: each fold's calibrations and thresholds from the other folds)."""
    every = sorted({item.fold for item in items})
    chosen = every if folds is None else sorted(set(folds))
    rows = np.array([i for i, item in enumerate(items) if item.fold in chosen])
    cross = np.zeros((len(items), len(LABELS)), dtype=np.float32)
    turns = [item.turn for item in items]
    fold_of = np.array([item.fold for item in items])
    seconds = 0.0
    for fold in chosen:
        model = CrossEncoder(config).fit([t for t, f in zip(turns, fold_of, strict=True) if f != fold],
                                         log=lambda line, fold=fold: print(f"fold {fold}: {line}", file=sys.stderr,
                                                                                 flush=True)).merge()
        test = np.flatnonzero(fold_of == fold)
        started = time.perf_counter()
        cross[test] = model.logits([turns[i] for i in test])
        seconds += time.perf_counter() - started
    subset = [items[i] for i in rows]
    speed = {"turns_per_s": round(len(rows) / seconds, 1) if seconds else None, "folds": chosen}
    results = {
        CROSS: {**summarise(subset, softmax(cross[rows])), "inference": speed},
        MIXED: summarise(subset, (softmax(cross[rows]) + lexical.probabilities[rows]) / 2),
        LEXICAL_SAME_FOLDS: summarise(subset, lexical.probabilities[rows], [lexical.labels[i] for i in rows]),
    }
    if chosen == every:
        gold = [t.label for t in turns]
        uniform = np.array([item.stratum == "random" for item in items])
        measured = cross_fitted(gold, fold_of, out_of_fold_logits(turns, fold_of), cross, uniform)
        results[TWO_STAGE] = {**summarise(items, measured["probabilities"], measured["labels"]),
                              "sent_to_cross_encoder": measured["sent"]}
    return results


def shipped_student_probabilities(items: Sequence[LabelledItem]) -> np.ndarray:
    from wildfeedback.signals.student import StudentDetector

    return StudentDetector.load().predict_proba([item.turn for item in items])


# The CLI in a fresh interpreter that writes its own peak RSS (VmHWM, kB) to argv[1] on exit. Not
# getrusage: a child's ru_maxrss also counts the parent's memory copied at fork, before exec.
_PEAK_RSS_WRAPPER = """
import atexit, re, sys
peak_file = sys.argv.pop(1)
def record():
    with open('/proc/self/status') as status:
        peak = re.search(r'VmHWM:\\s+(\\d+)', status.read())
    if peak:
        open(peak_file, 'w').write(peak.group(1))
atexit.register(record)
sys.argv[0] = 'wildfeedback'
from wildfeedback.cli import main
main()
"""


def throughput(conversations: int) -> dict[str, Any]:
    """`wildfeedback signals detect --detector student` as a user runs it (a fresh process:
    start-up and model loading included) on the first N conversations of the packaged
    ShareGPT (its few empty records skipped), with the process's own peak RSS: the lexical and
    the two-stage student at 4N and 16N (is RSS flat in the corpus size?) and the MiniLM student at N."""
    from wildfeedback.io.ingest import sharegpt_package_file
    from wildfeedback.signals.lexical import DEFAULT_DIR as LEXICAL_DIR
    from wildfeedback.signals.student import DEFAULT_DIR as MINILM_DIR
    from wildfeedback.signals.two_stage import DEFAULT_DIR as TWO_STAGE_DIR

    source = sharegpt_package_file()
    runs = {f"{name} student, {n:,} conversations": (n, model)
            for name, model in (("lexical", LEXICAL_DIR), ("two-stage", TWO_STAGE_DIR))
            for n in (4 * conversations, 16 * conversations)}
    runs[f"MiniLM student, {conversations:,} conversations"] = (conversations, MINILM_DIR)
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        for name, (limit, model) in runs.items():
            output, peak = Path(folder) / f"signals-{len(results)}.jsonl", Path(folder) / f"peak-{len(results)}"
            arguments = ["signals", "detect", str(source), "-o", str(output), "--limit", str(limit), "--on-error",
                         "skip", "--json", "--student-model", str(model)]
            started = time.perf_counter()
            done = subprocess.run([sys.executable, "-c", _PEAK_RSS_WRAPPER, str(peak), *arguments],
                                  capture_output=True, text=True)
            seconds = time.perf_counter() - started
            if done.returncode != 0:
                raise RuntimeError(f"wildfeedback {' '.join(arguments)} failed: {done.stderr[-2000:]}")
            read = int(json.loads(done.stdout)["conversations"])
            results[name] = {"conversations": read, "seconds": round(seconds, 2),
                             "conversations_per_s": round(read / seconds, 1),
                             "peak_rss_mb": round(int(peak.read_text()) / 1024) if peak.exists() else None}  # Linux only
    return results


def _labels_path(data: str | None) -> Path:
    return Path(data or DEFAULT_DATA) / "sharegpt-feedback" / "labels.jsonl"


LEXICAL = "lexical student (default; nested calibration, thresholds)"
LEXICAL_ARGMAX = "lexical student, argmax of calibrated probabilities"
LEXICAL_RAW = "lexical student, argmax of raw scores"
MINILM = "MiniLM student (previous default, not retrained)"
OTHERS_ONLY = "trained on USS + IFLLM + OASST only (argmax)"
CROSS = "MiniLM fine-tuned end to end, cross-encoder (argmax)"
MIXED = "mean of the cross-encoder's and the lexical student's probabilities (argmax)"
LEXICAL_SAME_FOLDS = "lexical student (default) on the cross-encoder's folds"
TWO_STAGE = (f"two-stage: lexical, cross-encoder on turns below {UNCERTAIN_BELOW} (calibrations, thresholds "
             "cross-fitted)")
POOLED = f"ShareGPT folds pooled with USS + IFLLM + OASST, harmonised, weight {POOLED_SHARE} (argmax of raw scores)"


def run_feedback_bench(data: str | None = None, conversations: int = 200, curve: bool = True,
                       other: bool = True, cross_encoder_folds: Sequence[int] | None = ()) -> dict[str, Any]:
    """`cross_encoder_folds`: () skips the cross-encoder, None runs it on every fold."""
    path = _labels_path(data)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the ShareGPT feedback labels are not there (pass --data)")
    items = load_labels(path)
    lexical = cross_validate_lexical(items)
    results: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                    "python": platform.python_version()},
        "labels": {"turns": len(items), "file": str(path)},
        "detectors": {
            LEXICAL: {**summarise(items, lexical.probabilities, lexical.labels),
                      "category_f1": category_f1(items, lexical.categories)},
            LEXICAL_ARGMAX: summarise(items, lexical.probabilities),
            MINILM: summarise(items, shipped_student_probabilities(items)),
        },
        "annotators": annotator_kappa(items),
    }
    if other:
        examples = other_sources(path.parents[1])
        if examples:
            results["detectors"][LEXICAL_RAW] = sharegpt_only_raw(items)
            results["detectors"][POOLED] = pooled(items, examples)
            results["detectors"][OTHERS_ONLY] = leave_sharegpt_out(items, examples)
    if cross_encoder_folds != ():
        results["detectors"].update(cross_encoder_rows(items, lexical, cross_encoder_folds))
    if curve:
        results["learning_curve"] = learning_curve(items, full=lexical)
    if conversations:
        results["throughput"] = throughput(conversations)
    return results


def render(results: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(stderr=True, width=160)
    table = Table(title=f"bench feedback — {results['labels']['turns']:,} labelled ShareGPT turns, given 5 folds",
                  title_justify="left")
    for column in ("detector", "kappa", "acc", "DSAT P", "DSAT R", "DSAT F1", "SAT F1",
                   "random DSAT% labels/est./true", "random SAT% labels/est./true"):
        table.add_column(column, justify="right" if column != "detector" else "left")
    rows = dict(results["detectors"])
    if results.get("annotators"):
        rows["annotators (second label, 167 turns)"] = results["annotators"]
    for name, r in rows.items():
        per, rates = r["per_class"], r.get("random_stratum_rates") or {}
        table.add_row(name, f"{r['kappa']:.2f}", f"{r['accuracy']:.2f}", f"{per['DSAT']['precision']:.2f}",
                      f"{per['DSAT']['recall']:.2f}", f"{per['DSAT']['f1']:.2f}", f"{per['SAT']['f1']:.2f}",
                      *(f"{rates[k]['predicted']} / {rates[k]['estimated']} / {rates[k]['labelled']}" if rates else ""
                        for k in ("DSAT", "SAT")))
    console.print(table)
    console.print("labels: share of turns given the label; est.: mean probability (what a report estimates)")
    if results.get("learning_curve"):
        console.print("learning curve (lexical, labelled turns to train on → kappa / DSAT F1 / SAT F1): " + "; ".join(
            f"{p['train_turns']}: {p['kappa']:.2f} / {p['dsat_f1']:.2f} / {p['sat_f1']:.2f}"
            for p in results["learning_curve"]))
    for name, speed in (results.get("throughput") or {}).items():
        console.print(f"signals detect, {name}: {speed['conversations_per_s']} conversations/s "
                      f"({speed['seconds']} s with start-up), peak RSS {speed['peak_rss_mb'] or '?'} MB")
    machine = results["machine"]
    console.print(f"machine: {machine['cpus']} CPUs, {machine['processor']}, Python {machine['python']}")


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="wildfeedback bench feedback", description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=None, help="the shared data folder (default ../shared/data)")
    parser.add_argument("--throughput", type=int, default=250,
                        help="packaged ShareGPT conversations for the throughput runs (0: skip)")
    parser.add_argument("--no-curve", action="store_true", help="skip the learning curve")
    parser.add_argument("--no-other-sources", action="store_true",
                        help="skip the rows trained with USS + IFLLM + OASST (about five minutes)")
    parser.add_argument("--cross-encoder", nargs="*", type=int, default=None, metavar="FOLD",
                        help="also fine-tune MiniLM end to end on these test folds (none named: all five; "
                             "about eight minutes a fold on 2 CPU cores)")
    parser.add_argument("--json", default=None, help="also write the results as JSON here")
    args = parser.parse_args(argv)
    folds = () if args.cross_encoder is None else (args.cross_encoder or None)
    results = run_feedback_bench(args.data, args.throughput, curve=not args.no_curve, other=not args.no_other_sources,
                                 cross_encoder_folds=folds)
    render(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return results
