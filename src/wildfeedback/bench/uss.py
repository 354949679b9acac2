"""`bench uss`: the student detector on the USS dialogues (MWOZ, SGD, ReDial) against
SPUR's published conversation-level numbers.

Protocol, per test set X and seed:

* X's dialogues are shuffled with the seed: 5% train (in-domain adaptation and
  tuning of the conversation rule), 15% unused, 80% test.
* The student is pretrained once per X on every *other* labelled source: the
  other USS sets (CCPE included), IFLLM and OASST turns. No dialogue of X enters
  pretraining. It is then adapted on X's 5% (a small logistic regression on the
  pretrained model's logits, i.e. a per-domain recalibration), and the
  conversation rule's two thresholds are tuned on out-of-fold predictions for the
  same 5%. Nothing from the 80% test portion influences training, thresholds or
  model choice.
* Labels: a turn's label is the rounded mean of its annotators' ratings
  (<= 2.5 DSAT, >= 3.5 SAT, else NEUTRAL) for user turns that follow a system
  turn; a conversation's label is its first non-NEUTRAL turn's label (NEUTRAL if
  none) — SPUR's rule, on these files' 1,000 dialogues per set, so the comparison
  with the published figures is approximate.
* Predicted conversation label: the label rule applied in probability — with
  turn probabilities (S_t, D_t, N_t), P(conversation SAT) = sum_t S_t prod_{s<t} N_s,
  likewise DSAT, P(NEUTRAL) = prod_t N_t — then the argmax after two log-biases
  tuned on the 5% (out-of-fold predictions).

`--ablation` runs the same seeds and splits under each variant of `ABLATION`, from
the shipped protocol to a plain probe on the 5% (no pretraining, no
recalibration, the user turn's embedding alone, the untuned argmax rule), to show
which step gains or loses what.

Reported: conversation-level weighted precision / recall / F1 (mean ± std over
seeds) beside the published baselines; turn-level weighted F1, accuracy and ECE;
throughput (conversations/s, embedding included, nothing cached) and peak RSS of
a fresh process running the student; and accuracy on a source left out of
training (IFLLM).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from wildfeedback.schema import Conversation
from wildfeedback.signals.encoder import DIM, Encoder
from wildfeedback.signals.labels import LABELS, LabelledTurn, candidate_turns, examples_from, first_non_neutral
from wildfeedback.signals.student import (
    ConversationRule,
    StudentDetector,
    expected_calibration_error,
    featurize,
    first_non_neutral_probabilities,
    fit_weights,
)

TEST_SETS = ("MWOZ", "SGD", "ReDial")
USS_SETS = ("MWOZ", "SGD", "ReDial", "CCPE")
# Published conversation-level weighted F1 (data README; SPUR, Lin et al. 2024).
PUBLISHED = {
    "SPUR (GPT-4, learned rubric)": {"MWOZ": 59.0, "SGD": 72.6, "ReDial": 66.3},
    "GPT-4 zero-shot": {"MWOZ": 53.6, "SGD": 71.9, "ReDial": 57.0},
    "ASAP": {"MWOZ": 52.5, "SGD": 66.3, "ReDial": 58.3},
    "USDA": {"MWOZ": 35.3, "SGD": 61.3, "ReDial": 48.3},
}
DEFAULT_DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data"


def data_dir(path: str | os.PathLike[str] | None = None) -> Path:
    chosen = Path(path or os.environ.get("WILDFEEDBACK_DATA") or DEFAULT_DATA)
    if not (chosen / "uss").is_dir():
        raise FileNotFoundError(f"USS data not found under {chosen} (expected {chosen / 'uss'}/MWOZ.txt ...)")
    return chosen


def load(path: Path) -> list[Conversation]:
    from wildfeedback.io.reader import read_conversations

    return [c for c in read_conversations(path) if isinstance(c, Conversation)]


def weighted_prf(gold: Sequence[str], predicted: Sequence[str]) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, precision_recall_fscore_support

    p, r, f, _ = precision_recall_fscore_support(gold, predicted, labels=list(LABELS), average="weighted",
                                                 zero_division=0)
    return {"precision": 100 * p, "recall": 100 * r, "f1": 100 * f, "accuracy": 100 * accuracy_score(gold, predicted)}


class _Data:
    """Labelled turns of every source with their features, grouped by conversation."""

    def __init__(self, root: Path, encoder: Encoder, sets: Sequence[str], limit: int | None,
                 extra: Sequence[str]) -> None:
        self.conversations: dict[str, list[Conversation]] = {}
        for name in USS_SETS:
            if name in sets or "uss" in extra:
                conversations = load(root / "uss" / f"{name}.txt")
                self.conversations[name] = conversations[:limit] if limit else conversations
        if "ifllm" in extra and (root / "ifllm" / "query_logs_table.csv").exists():
            self.conversations["ifllm"] = load(root / "ifllm" / "query_logs_table.csv")
        if "oasst" in extra and (root / "oasst" / "en_100_tree.jsonl").exists():
            self.conversations["oasst"] = load(root / "oasst" / "en_100_tree.jsonl")
        self.examples: dict[str, list[LabelledTurn]] = {}
        self.features: dict[str, np.ndarray] = {}
        for name, conversations in self.conversations.items():
            examples = examples_from(conversations)
            self.examples[name] = examples
            self.features[name] = featurize(examples, encoder)

    def rows(self, name: str, conversation_ids: set[str]) -> np.ndarray:
        return np.array([i for i, e in enumerate(self.examples[name]) if e.conversation_id in conversation_ids], dtype=int)


def _conversation_probabilities(examples: Sequence[LabelledTurn], probabilities: np.ndarray,
                                ids: Sequence[str]) -> list[np.ndarray]:
    grouped: dict[str, list[np.ndarray]] = {i: [] for i in ids}
    for e, p in zip(examples, probabilities, strict=True):
        if e.conversation_id in grouped:
            grouped[e.conversation_id].append(p)
    return [np.array(grouped[i]).reshape(-1, 3) for i in ids]


def tune_rule(probabilities: list[np.ndarray], gold: Sequence[str]) -> ConversationRule:
    """The log-biases with the best weighted F1 on these conversations (ties: smallest biases)."""
    grid = np.round(np.linspace(-2.0, 2.0, 21), 2)
    base = [first_non_neutral_probabilities(p) for p in probabilities]
    logs = np.log(np.array(base).reshape(-1, 3) + 1e-9)
    best, best_key = ConversationRule(), (-1.0, 0.0)
    for sat in grid:
        for dsat in grid:
            predicted = [LABELS[k] for k in (logs + np.array([sat, dsat, 0.0])).argmax(axis=1)]
            f1 = weighted_prf(gold, predicted)["f1"]
            key = (round(f1, 6), -abs(sat) - abs(dsat))
            if key > best_key:
                best, best_key = ConversationRule(float(sat), float(dsat)), key
    return best


def _logits(model: StudentDetector, x: np.ndarray) -> np.ndarray:
    return model.logits(x)


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


class _Adapter:
    """Per-domain recalibration: multinomial LR on the pretrained logits."""

    def __init__(self, logits: np.ndarray, labels: Sequence[str], c: float = 1.0) -> None:
        self.mean, self.scale, self.coef, self.intercept = fit_weights(logits, labels, c=c)

    def proba(self, logits: np.ndarray) -> np.ndarray:
        return _softmax(((logits - self.mean) / self.scale) @ self.coef.T + self.intercept)


def _split(ids: Sequence[str], seed: int, train_frac: float, test_frac: float) -> tuple[list[str], list[str]]:
    order = np.random.default_rng(seed).permutation(len(ids))
    n_train = max(2, round(train_frac * len(ids)))
    n_test = round(test_frac * len(ids))
    shuffled = [ids[i] for i in order]
    return shuffled[:n_train], shuffled[len(ids) - n_test:]


def run_uss_bench(seeds: int = 5, *, sets: Sequence[str] = TEST_SETS, data: str | os.PathLike[str] | None = None,
                  train_frac: float = 0.05, test_frac: float = 0.8, limit: int | None = None,
                  extra: Sequence[str] = ("uss", "ifllm", "oasst"), adapt: bool = True, c: float = 0.0005,
                  folds: int = 5, encoder: Encoder | None = None, throughput: int = 0, llm_sample: int = 0,
                  threshold: float = 0.8, generalisation: bool = True, progress: bool = False,
                  rule: str = "tuned", features: str = "student") -> dict[str, Any]:
    """Run the benchmark; returns a dict of per-set, per-seed and summary results. `rule`:
    "tuned" (the conversation rule in probability, its biases tuned on the 5%) or "argmax"
    (each turn's argmax, then the first non-NEUTRAL one: the labels' own rule, untuned).
    `features`: "student" (reply, user turn, their interactions, text features) or "user"
    (the user turn's embedding alone: a plain probe)."""
    if rule not in ("tuned", "argmax") or features not in ("student", "user"):
        raise ValueError(f"rule must be tuned or argmax ({rule!r}), features student or user ({features!r})")
    root = data_dir(data)
    encoder = encoder or Encoder()
    started = time.perf_counter()
    corpus = _Data(root, encoder, sets, limit, extra)
    if features == "user":  # featurize's second block
        corpus.features = {name: x[:, DIM:2 * DIM] for name, x in corpus.features.items()}
    results: dict[str, Any] = {"protocol": {"seeds": seeds, "train_frac": train_frac, "test_frac": test_frac,
                                            "limit": limit, "extra": list(extra), "adapt": adapt, "c": c,
                                            "rule": rule, "features": features},
                               "sets": {}, "published": PUBLISHED}
    for name in sets:
        pool = [n for n in corpus.examples if n != name]
        pool_x = np.vstack([corpus.features[n] for n in pool]) if pool else np.zeros((0, 0))
        pool_y = [e.label for n in pool for e in corpus.examples[n]]
        base = None
        if pool_y:
            base = StudentDetector(*fit_weights(pool_x, pool_y, c=c))
        conversations = corpus.conversations[name]
        ids = [conv.id for conv in conversations]
        examples, x = corpus.examples[name], corpus.features[name]
        gold_turn_by_conv: dict[str, list[str]] = {i: [] for i in ids}
        for e in examples:
            gold_turn_by_conv[e.conversation_id].append(e.label)
        gold_conv = {i: first_non_neutral(gold_turn_by_conv[i]) for i in ids}
        per_seed = []
        for seed in range(seeds):
            train_ids, test_ids = _split(ids, seed, train_frac, test_frac)
            train_rows = corpus.rows(name, set(train_ids))
            test_rows = corpus.rows(name, set(test_ids))
            train_ex = [examples[i] for i in train_rows]
            train_y = [e.label for e in train_ex]
            if base is None:  # no other source: train on the 5% alone
                model = StudentDetector(*fit_weights(x[train_rows], train_y, c=c))
                oof = _out_of_fold(x[train_rows], train_ex, train_ids, folds, seed, c, base=None)

                def proba(rows: np.ndarray, model: StudentDetector = model, x: np.ndarray = x) -> np.ndarray:
                    return model.proba_features(x[rows])
            elif adapt:
                base_logits = _logits(base, x)
                adapter = _Adapter(base_logits[train_rows], train_y)
                oof = _out_of_fold(base_logits[train_rows], train_ex, train_ids, folds, seed, c, base=base)

                def proba(rows: np.ndarray, adapter: _Adapter = adapter, z: np.ndarray = base_logits) -> np.ndarray:
                    return adapter.proba(z[rows])
            else:
                oof = base.proba_features(x[train_rows])

                def proba(rows: np.ndarray, base: StudentDetector = base, x: np.ndarray = x) -> np.ndarray:
                    return base.proba_features(x[rows])
            tuned = tune_rule(_conversation_probabilities(train_ex, oof, train_ids), [gold_conv[i] for i in train_ids])
            test_ex = [examples[i] for i in test_rows]
            p_test = proba(test_rows)
            grouped = _conversation_probabilities(test_ex, p_test, test_ids)
            conv_pred = ([tuned.label(p) for p in grouped] if rule == "tuned" else
                         [first_non_neutral(LABELS[k] for k in p.argmax(axis=1)) for p in grouped])
            conv_metrics = weighted_prf([gold_conv[i] for i in test_ids], conv_pred)
            turn_gold = [e.label for e in test_ex]
            turn_pred = [LABELS[k] for k in p_test.argmax(axis=1)]
            turn_metrics = weighted_prf(turn_gold, turn_pred)
            turn_metrics["ece"] = 100 * expected_calibration_error(p_test, turn_gold)
            per_seed.append({"seed": seed, "conversation": conv_metrics, "turn": turn_metrics,
                             "rule": {"sat": tuned.sat, "dsat": tuned.dsat}, "n_train": len(train_ids),
                             "n_test": len(test_ids), "n_test_turns": len(test_ex)})
            if progress:
                print(f"{name} seed {seed}: conversation F1 {conv_metrics['f1']:.1f}, turn F1 "
                      f"{turn_metrics['f1']:.1f}, rule {tuned}", file=sys.stderr, flush=True)
        results["sets"][name] = {"seeds": per_seed, "summary": _summary(per_seed),
                                 "gold_conversations": _distribution(gold_conv.values()),
                                 "pretrained_on": pool}
        if base is not None:
            results["sets"][name]["cascade"] = cascade_savings(corpus, name, base, threshold)
    if generalisation and len(corpus.examples) > 1:
        results["generalisation"] = [_leave_source_out(corpus, held, c) for held in corpus.examples]
    results["seconds"] = time.perf_counter() - started
    if throughput:
        results["throughput"] = {"student": measure_throughput(root, throughput)}
        if llm_sample:
            for detector in ("llm", "cascade"):
                if progress:
                    print(f"{detector} on the embedded model, {llm_sample} dialogues ...", file=sys.stderr, flush=True)
                results["throughput"][detector] = measure_throughput(root, llm_sample, detector=detector,
                                                                     threshold=threshold)
    return results


ABLATION = {  # name: run_uss_bench options, from the shipped protocol to a plain probe on the 5%
    "shipped: pretrained on other sources, recalibrated on the 5%, tuned rule": {},
    "pretrained on other sources, not recalibrated, tuned rule": {"adapt": False},
    "5% only, student features, tuned rule": {"extra": ()},
    "5% only, student features, argmax rule": {"extra": (), "rule": "argmax"},
    "5% only, student features, weaker L2 (C 0.05), tuned rule": {"extra": (), "c": 0.05},
    "5% only, user-turn embedding (plain probe, C 1), tuned rule": {"extra": (), "features": "user", "c": 1.0},
    "5% only, user-turn embedding (plain probe, C 1), argmax rule": {"extra": (), "features": "user", "c": 1.0,
                                                                     "rule": "argmax"},
}


def ablation(seeds: int, *, data: str | os.PathLike[str] | None = None, sets: Sequence[str] = TEST_SETS,
             limit: int | None = None, encoder: Encoder | None = None) -> dict[str, Any]:
    """Where the points go between a plain probe and the shipped protocol: the same seeds
    and splits under each variant of `ABLATION`, conversation-level weighted F1 per set."""
    encoder = encoder or Encoder()
    rows = {}
    for name, options in ABLATION.items():
        print(f"ablation: {name} ...", file=sys.stderr, flush=True)
        result = run_uss_bench(seeds, sets=sets, data=data, limit=limit, encoder=encoder, generalisation=False,
                               **options)
        rows[name] = {s: result["sets"][s]["summary"]["conversation"]["f1"] for s in sets}
    return {"seeds": seeds, "sets": list(sets), "rows": rows}


def render_ablation(results: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"USS ablation: conversation-level weighted F1 (%), {results['seeds']} seed(s), "
                        "5% train / 80% test")
    table.add_column("variant")
    for name in results["sets"]:
        table.add_column(name, justify="right")
    for variant, scores in results["rows"].items():
        table.add_row(variant, *(f"{scores[s]['mean']:.1f} ± {scores[s]['std']:.1f}" for s in results["sets"]))
    Console(width=170).print(table)


def _out_of_fold(x: np.ndarray, train_ex: list[LabelledTurn], train_ids: list[str], folds: int, seed: int, c: float,
                 base: StudentDetector | None) -> np.ndarray:
    """Out-of-fold probabilities for the training dialogues (folds by dialogue)."""
    order = np.random.default_rng(seed + 1000).permutation(len(train_ids))
    fold_of = {train_ids[j]: k % folds for k, j in enumerate(order)}
    fold = np.array([fold_of[e.conversation_id] for e in train_ex])
    labels = np.array([e.label for e in train_ex])
    out = np.zeros((len(train_ex), 3))
    for k in range(folds):
        held, kept = fold == k, fold != k
        if not held.any():
            continue
        if base is not None:
            out[held] = _Adapter(x[kept], labels[kept]).proba(x[held])
        else:
            out[held] = StudentDetector(*fit_weights(x[kept], labels[kept], c=c)).proba_features(x[held])
    return out


def _leave_source_out(corpus: _Data, held: str, c: float) -> dict[str, Any]:
    """Train on every other source, test on all turns of `held`: generalisation to another kind of chat."""
    pool = [n for n in corpus.examples if n != held]
    model = StudentDetector(*fit_weights(np.vstack([corpus.features[n] for n in pool]),
                                         [e.label for n in pool for e in corpus.examples[n]], c=c))
    p = model.proba_features(corpus.features[held])
    gold = [e.label for e in corpus.examples[held]]
    predicted = [LABELS[k] for k in p.argmax(axis=1)]
    majority = max(LABELS, key=gold.count)
    # Binary view: is the predicted polarity (SAT vs not-SAT) right? IFLLM is mostly SAT.
    return {
        "held_out": held,
        "trained_on": pool,
        "n": len(gold),
        "gold": _distribution(gold),
        "predicted": _distribution(predicted),
        "metrics": weighted_prf(gold, predicted),
        "majority_label": majority,
        "majority_accuracy": 100 * gold.count(majority) / max(len(gold), 1),
        "ece": 100 * expected_calibration_error(p, gold),
        "dsat_auc": _auc([g == "DSAT" for g in gold], p[:, 1]),
        "sat_auc": _auc([g == "SAT" for g in gold], p[:, 0]),
    }


def _auc(positive: Sequence[bool], score: np.ndarray) -> float | None:
    from sklearn.metrics import roc_auc_score

    if len(set(positive)) < 2:
        return None
    return 100 * float(roc_auc_score(positive, score))


def _distribution(labels: Any) -> dict[str, int]:
    labels = list(labels)
    return {label: labels.count(label) for label in LABELS}


def _summary(per_seed: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for level in ("conversation", "turn"):
        keys = per_seed[0][level].keys()
        out[level] = {k: {"mean": float(np.mean([s[level][k] for s in per_seed])),
                          "std": float(np.std([s[level][k] for s in per_seed]))} for k in keys}
    return out


# -- throughput ------------------------------------------------------------


def measure_throughput(root: Path, n: int = 200, model: str | None = None, detector: str = "student",
                       threshold: float = 0.8) -> dict[str, Any]:
    """Conversations/s and peak RSS of a fresh process that loads one detector and
    labels the first `n` MWOZ dialogues, nothing cached. Threads: as torch chooses
    on this machine (all cores). `detector`: student, llm or cascade (the LLM ones
    on the embedded model, so `n` should be small)."""
    command = [sys.executable, "-m", "wildfeedback.bench.uss", "--worker", detector, "--worker-n", str(n),
               "--data", str(root), "--threshold", str(threshold)]
    if model:
        command += ["--model", model]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"the {detector} throughput worker failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _worker(root: Path, detector: str, n: int, model: str | None, threshold: float) -> dict[str, Any]:
    import resource

    import torch

    conversations = load(root / "uss" / "MWOZ.txt")[:n]
    t0 = time.perf_counter()
    student = StudentDetector.load(model, encoder=Encoder())
    student.encoder.model  # noqa: B018 - load the encoder before timing
    backend = None
    if detector == "student":
        run = student
    else:
        from wildfeedback.llm import make_backend
        from wildfeedback.signals.cascade import CascadeDetector
        from wildfeedback.signals.llm_detector import LLMDetector

        backend = make_backend("embedded")
        backend.load()  # type: ignore[attr-defined]
        llm = LLMDetector(backend)
        run = llm if detector == "llm" else CascadeDetector(student, llm, threshold=threshold)
    t1 = time.perf_counter()
    outcome = run.detect(conversations)
    t2 = time.perf_counter()
    turns = sum(1 for c in conversations for _ in candidate_turns(c))
    result: dict[str, Any] = {
        "detector": detector,
        "conversations": len(conversations),
        "turns": turns,
        "signals": len(outcome.signals),
        "issues": len(outcome.issues),
        "load_seconds": t1 - t0,
        "seconds": t2 - t1,
        "conversations_per_s": len(conversations) / (t2 - t1),
        "turns_per_s": turns / (t2 - t1),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "torch_threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
    }
    if backend is not None:
        result["usage"] = backend.usage.as_dict()
        labels = [s.label for s in outcome.signals]
        result["labels"] = {label: labels.count(label) for label in LABELS}
    if detector == "cascade":
        result["cascade"] = run.stats.as_dict()  # type: ignore[union-attr]
    return result


def cascade_savings(corpus: _Data, name: str, model: StudentDetector, threshold: float) -> dict[str, Any]:
    """What the cascade would send to the LLM on a whole set, counted without calling it:
    turns deferred, calls and prompt characters against an LLM-only run."""
    from wildfeedback.signals.cascade import CascadeStats
    from wildfeedback.signals.llm_detector import LLMDetector

    class _NoBackend:  # the prompts are built, never sent
        model = "none"

        def versioned(self, template_version: str) -> _NoBackend:
            return self

    llm = LLMDetector(_NoBackend())  # type: ignore[arg-type]
    conversations = corpus.conversations[name]
    p = model.proba_features(corpus.features[name])
    unsure: dict[str, list[int]] = {}
    for example, probabilities in zip(corpus.examples[name], p, strict=True):
        if probabilities.max() < threshold:
            unsure.setdefault(example.conversation_id, []).append(example.turn_index)
    stats = CascadeStats(turns=len(p), deferred_turns=sum(len(v) for v in unsure.values()))
    for conversation in conversations:
        everything = llm.requests(conversation)
        stats.llm_only_calls += len(everything)
        stats.llm_only_prompt_chars += sum(len(prompt) for _, prompt in everything)
        if conversation.id in unsure:
            deferred = llm.requests(conversation, unsure[conversation.id])
            stats.llm_calls += len(deferred)
            stats.prompt_chars += sum(len(prompt) for _, prompt in deferred)
    return {"set": name, "threshold": threshold, **stats.as_dict()}


# -- printing --------------------------------------------------------------


def render(results: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=170)
    sets = list(results["sets"])
    p = results["protocol"]
    table = Table(title=f"USS conversation-level weighted P / R / F1 (%), {p['seeds']} seed(s), "
                        f"{p['train_frac']:.0%} train / {p['test_frac']:.0%} test")
    table.add_column("method")
    for name in sets:
        table.add_column(f"{name} P", justify="right")
        table.add_column(f"{name} R", justify="right")
        table.add_column(f"{name} F1", justify="right")

    def cell(summary: dict[str, Any], key: str) -> str:
        return f"{summary[key]['mean']:.1f} ± {summary[key]['std']:.1f}"

    table.add_row("student (MiniLM + LR)", *[
        x for name in sets for x in (cell(results["sets"][name]["summary"]["conversation"], k)
                                     for k in ("precision", "recall", "f1"))])
    for method, scores in PUBLISHED.items():
        table.add_row(method + " [published]", *[x for name in sets for x in ("", "", f"{scores.get(name, '')}")])
    console.print(table)

    turns = Table(title="USS turn level (each user turn after a system turn), weighted, %")
    turns.add_column("set")
    for k in ("precision", "recall", "f1", "accuracy", "ece"):
        turns.add_column(k, justify="right")
    for name in sets:
        summary = results["sets"][name]["summary"]["turn"]
        turns.add_row(name, *(cell(summary, k) for k in ("precision", "recall", "f1", "accuracy", "ece")))
    console.print(turns)

    if "generalisation" in results:
        held = Table(title="Generalisation: trained on every other source, tested on all turns of one, %")
        for column in ("left out", "turns", "accuracy", "majority", "weighted F1", "ECE", "AUC SAT", "AUC DSAT",
                       "gold S/D/N", "predicted S/D/N"):
            held.add_column(column, justify="right" if column not in ("left out",) else "left")
        for g in results["generalisation"]:
            held.add_row(g["held_out"], str(g["n"]), f"{g['metrics']['accuracy']:.1f}",
                         f"{g['majority_label']} {g['majority_accuracy']:.1f}", f"{g['metrics']['f1']:.1f}",
                         f"{g['ece']:.1f}", _fmt(g["sat_auc"]), _fmt(g["dsat_auc"]),
                         "/".join(str(g["gold"][k]) for k in LABELS), "/".join(str(g["predicted"][k]) for k in LABELS))
        console.print(held)
    cascades = [v["cascade"] for v in results["sets"].values() if "cascade" in v]
    if cascades:
        console.print("Cascade (student first; turns with top probability < "
                      f"{cascades[0]['threshold']} to the LLM), counted over each whole set without calling it: "
                      + "; ".join(f"{c['set']}: {c['deferred_share']:.0%} of {c['turns']:,} turns deferred, "
                                  f"{c['llm_calls']:,} calls instead of {c['llm_only_calls']:,} "
                                  f"({c['calls_saved_share']:.0%} saved), prompt characters "
                                  f"{c['prompt_chars_saved_share']:.0%} saved" for c in cascades))
    for detector, t in results.get("throughput", {}).items():
        line = (f"Throughput {detector}: {t['conversations_per_s']:.2f} conversations/s ({t['turns_per_s']:.1f} turns/s) "
                f"on {t['cpus']} CPU(s), peak RSS {t['peak_rss_mb']:.0f} MB ({t['conversations']} MWOZ dialogues, "
                f"nothing cached; load {t['load_seconds']:.1f} s)")
        if "usage" in t:
            u = t["usage"]
            line += (f"; embedded LLM: {u['calls']} calls, {u['prompt_tokens']:,} prompt + "
                     f"{u['completion_tokens']:,} completion tokens; {t['signals']} signals, {t['issues']} issues")
        console.print(line)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def main(argv: Sequence[str] | None = None) -> dict[str, Any] | None:
    parser = argparse.ArgumentParser(prog="wildfeedback bench uss", description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--data", default=None, help="the shared data folder (default ../shared/data)")
    parser.add_argument("--sets", nargs="+", default=list(TEST_SETS), choices=TEST_SETS + ("CCPE",))
    parser.add_argument("--limit", type=int, default=None, help="first N dialogues of each USS set (quick runs)")
    parser.add_argument("--no-extra", action="store_true", help="train on the in-domain 5%% only")
    parser.add_argument("--no-adapt", action="store_true", help="no in-domain recalibration")
    parser.add_argument("--throughput", type=int, default=200, help="dialogues for the student's throughput run (0: skip)")
    parser.add_argument("--llm-sample", type=int, default=2,
                        help="dialogues for the LLM detector's and the cascade's throughput runs on the embedded model (0: skip)")
    parser.add_argument("--threshold", type=float, default=0.8, help="the cascade's threshold")
    parser.add_argument("--cache", default=None, help="an .npz embedding cache file (read and written)")
    parser.add_argument("--ablation", action="store_true",
                        help="where the points go: the shipped protocol against a plain probe, step by step")
    parser.add_argument("--json", default=None, help="also write the results as JSON here")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--worker-n", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--model", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker is not None:
        print(json.dumps(_worker(data_dir(args.data), args.worker, args.worker_n, args.model, args.threshold)))
        return None
    encoder = Encoder(cache_file=args.cache)
    if args.ablation:
        results = ablation(args.seeds, data=args.data, sets=args.sets, limit=args.limit, encoder=encoder)
        encoder.save_cache()
        render_ablation(results)
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
        return results
    results = run_uss_bench(args.seeds, sets=args.sets, data=args.data, limit=args.limit,
                            extra=() if args.no_extra else ("uss", "ifllm", "oasst"), adapt=not args.no_adapt,
                            encoder=encoder, throughput=args.throughput, llm_sample=args.llm_sample,
                            threshold=args.threshold, progress=True)
    encoder.save_cache()
    render(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
