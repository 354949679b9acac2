"""`wildfeedback evaluate ...`: held-out sets, checklist-guided comparisons, agreement with people."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from wildfeedback.commands.console import (
    DEFAULT_LLM_TIMEOUT,
    CacheOption,
    ConcurrencyOption,
    LLMTimeoutOption,
    NoCacheOption,
    err,
    fail,
)
from wildfeedback.io.reader import UnknownFormatError
from wildfeedback.io.sources import InputError

app = typer.Typer(help="Evaluate with checklists from the users' own feedback; agreement with people.",
                  no_args_is_help=True)


def _open(spec: str, base_url: str | None, cache: str | None, no_cache: bool, llm_timeout: float):  # type: ignore[no-untyped-def]
    from wildfeedback.llm import open_backend

    try:
        return open_backend(spec, base_url, False if no_cache else (cache or True), deadline=llm_timeout)
    except (ValueError, ImportError, FileNotFoundError) as error:
        raise fail(str(error), 2) from None


@app.command("build-set")
def build_set(
    source: Annotated[Path, typer.Argument(help="pairs.jsonl, a run directory, or a dpo export with checklists.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="The held-out items, JSONL.")] = ...,  # type: ignore[assignment]
    k: Annotated[int, typer.Option("--k", help="k-means clusters.")] = 70,
    n: Annotated[int, typer.Option("--n", help="Items nearest to each centroid.")] = 10,
    exclude: Annotated[Optional[Path], typer.Option(help="The training export: items whose prompt overlaps it are dropped.")] = None,
    seed: Annotated[int, typer.Option()] = 0,
) -> None:
    """Choose held-out items as WildFeedback did: cluster prompt + preferences, take the nearest to each centre."""
    from wildfeedback.evaluate.heldout import read_items, select_held_out, write_items

    try:
        selection = select_held_out(read_items(source), k=k, n=n, exclude=exclude, seed=seed)
    except (FileNotFoundError, ValueError) as error:
        raise fail(str(error), 2) from None
    write_items(selection.items, output)
    err.print(f"{len(selection.items)} items in {selection.clusters} clusters → {output} "
              f"(from {selection.candidates} with checklists; {selection.repeats} repeats and "
              f"{selection.contaminated} overlapping the training export dropped)")


@app.command()
def checklist(
    items: Annotated[Path, typer.Argument(help="Held-out items (from build-set), or pairs.jsonl / a run directory.")],
    candidate: Annotated[str, typer.Option(help="The model under test: embedded, embedded:DIR (a trained model), openai:MODEL.")] = ...,  # type: ignore[assignment]
    baseline: Annotated[str, typer.Option(help="The model to beat (same forms).")] = "embedded",
    judge: Annotated[str, typer.Option(help="The judge (same forms).")] = "embedded",
    base_url: Annotated[Optional[str], typer.Option(help="Server for openai:/vllm: specs.")] = None,
    output: Annotated[Path, typer.Option("-o", "--output", help="Where evaluation.json and evaluation.html go.")] = Path("out/eval"),
    length_penalty: Annotated[int, typer.Option(help="A slight win by a reply longer by more than this many characters is a tie (-1: off).")] = 500,
    single: Annotated[bool, typer.Option("--single", help="Also score each reply alone (1-10, WB-Score rescaled).")] = False,
    limit: Annotated[Optional[int], typer.Option(help="Only the first N items.")] = None,
    max_tokens: Annotated[int, typer.Option(help="Tokens per reply.")] = 512,
    concurrency: ConcurrencyOption = 8,
    cache: CacheOption = None,
    no_cache: NoCacheOption = False,
    llm_timeout: LLMTimeoutOption = DEFAULT_LLM_TIMEOUT,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON on stdout.")] = False,
) -> None:
    """Candidate vs baseline, judged in both orders with each item's checklist; rates with bootstrap 95% CIs."""
    from wildfeedback.evaluate.checklist import ChecklistEvaluation
    from wildfeedback.evaluate.heldout import EvalItem, read_items
    from wildfeedback.report.evaluation import write_evaluation

    try:
        if items.suffix == ".jsonl" and items.is_file() and items.name != "pairs.jsonl":
            chosen = [EvalItem.model_validate_json(line) for line in items.read_text().splitlines() if line.strip()]
        else:
            chosen = read_items(items)
    except (FileNotFoundError, ValueError) as error:
        raise fail(f"{items}: {error}", 2) from None
    chosen = chosen[:limit] if limit else chosen
    if not chosen:
        raise fail(f"{items}: no items with a checklist", 2)
    evaluation = ChecklistEvaluation(
        candidate=_open(candidate, base_url, cache, no_cache, llm_timeout),
        baseline=_open(baseline, base_url, cache, no_cache, llm_timeout),
        judge=_open(judge, base_url, cache, no_cache, llm_timeout), length_penalty=length_penalty, single=single,
        max_tokens=max_tokens, concurrency=concurrency,
    )
    result = evaluation.run(chosen)
    output.mkdir(parents=True, exist_ok=True)
    (output / "evaluation.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    write_evaluation(result, output / "evaluation.html")
    summary = {k: v for k, v in result.items() if k != "rows"}
    if as_json:
        print(json.dumps(summary, indent=2))
        return
    p = result["pairwise"]
    err.print(f"{result['candidate']} vs {result['baseline']} (judge {result['judge']}), {p['n']} items judged, "
              f"{result['failures']['count']} not scored")
    for name in ("win", "tie", "loss"):
        low, high = p[f"{name}_ci"]
        err.print(f"  {name:<5} {100 * p[name]:5.1f}%  (95% CI {100 * low:.1f}–{100 * high:.1f}%)")
    err.print(f"  reward {p['reward']:+.1f}; {result['length_penalised']} slight wins tied by the length penalty")
    err.print(f"→ {output / 'evaluation.json'}, {output / 'evaluation.html'}")


agreement_app = typer.Typer(help="Agreement of a detector or a judge with people's labels.", no_args_is_help=True)
app.add_typer(agreement_app, name="agreement")


def _conversations(inputs: list[str], format: str | None):  # type: ignore[no-untyped-def]
    from wildfeedback.io.reader import read_conversations
    from wildfeedback.schema import Conversation

    try:
        return [c for c in read_conversations(inputs, format=format) if isinstance(c, Conversation)]
    except (InputError, UnknownFormatError) as error:
        raise fail(str(error), 2) from None


def _print_agreement(result: dict, as_json: bool) -> None:  # type: ignore[type-arg]
    if as_json:
        print(json.dumps(result, indent=2))
        return
    err.print(f"{result['n']} items: accuracy {100 * result['accuracy']:.1f}%, Cohen's kappa {result['kappa']:.3f}")
    for label, row in result["per_class"].items():
        err.print(f"  {label:<8} precision {row['precision']:.3f}  recall {row['recall']:.3f}  F1 {row['f1']:.3f}  "
                  f"(n={row['support']})")
    err.print("  confusion (rows: people, columns: predicted): " + ", ".join(
        f"{label} {row}" for label, row in zip(result["labels"], result["confusion"], strict=True)))


@agreement_app.command("signals")
def agreement_signals(
    inputs: Annotated[list[str], typer.Argument(help="Conversations with people's labels (USS, IFLLM, thumbs).")],
    signals: Annotated[Path, typer.Option(help="The detector's signals for these conversations.")] = ...,  # type: ignore[assignment]
    format: Annotated[Optional[str], typer.Option("--format", "-f")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """A detector's turn labels against people's (kappa, accuracy, per-class P/R/F1, confusion)."""
    from wildfeedback.evaluate.agreement import signal_agreement
    from wildfeedback.io.records import RecordFileError, read_records
    from wildfeedback.schema import Signal

    try:
        result = signal_agreement(_conversations(inputs, format), read_records(signals, Signal))
    except (RecordFileError, ValueError) as error:
        raise fail(str(error), 2) from None
    _print_agreement(result, as_json)


@agreement_app.command("judge")
def agreement_judge(
    inputs: Annotated[list[str], typer.Argument(help="Conversations with side-by-side choices (IFLLM, HH-RLHF).")],
    judge: Annotated[str, typer.Option(help="The judge: embedded, openai:MODEL, ...")] = "embedded",
    base_url: Annotated[Optional[str], typer.Option()] = None,
    limit: Annotated[Optional[int], typer.Option(help="Only the first N pairs.")] = None,
    format: Annotated[Optional[str], typer.Option("--format", "-f")] = None,
    concurrency: ConcurrencyOption = 8,
    cache: CacheOption = None,
    no_cache: NoCacheOption = False,
    llm_timeout: LLMTimeoutOption = DEFAULT_LLM_TIMEOUT,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """The checklist judge's choices against people's on side-by-side pairs."""
    from wildfeedback.evaluate.agreement import judge_agreement
    from wildfeedback.evaluate.judge import ChecklistJudge

    backend = _open(judge, base_url, cache, no_cache, llm_timeout)
    try:
        result = judge_agreement(_conversations(inputs, format), ChecklistJudge(backend, concurrency=concurrency),
                                 limit=limit)
    except ValueError as error:
        raise fail(str(error), 2) from None
    _print_agreement(result, as_json)
