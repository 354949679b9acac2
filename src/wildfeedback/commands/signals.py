"""`wildfeedback signals ...`: find the feedback in conversations, train the student, learn a rubric."""

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
from wildfeedback.errors import BadRecordError
from wildfeedback.io.outputs import check_folder_target, check_outputs, mark_as_ours, write_text_atomically
from wildfeedback.io.reader import DEFAULT_MAX_RECORD_BYTES, UnknownFormatError
from wildfeedback.io.sources import InputError, expand_inputs

app = typer.Typer(help="Find SAT / DSAT feedback in user turns; train the student; learn a rubric.", no_args_is_help=True)

InputsArgument = Annotated[list[str], typer.Argument(help="Conversations: files, directories or globs in any supported format.")]
FormatOption = Annotated[Optional[str], typer.Option("--format", "-f", help="Input format; detected if omitted.")]


def _backend(llm: str, base_url: str | None, cache: str | None, no_cache: bool, llm_timeout: float):  # type: ignore[no-untyped-def]
    from wildfeedback.llm import open_backend

    try:
        return open_backend(llm, base_url, False if no_cache else (cache or True), deadline=llm_timeout)
    except (ValueError, ImportError, FileNotFoundError) as error:
        raise fail(str(error), 2) from None


@app.command()
def detect(
    inputs: InputsArgument,
    output: Annotated[Path, typer.Option("-o", "--output", help="Signals: .parquet or .jsonl.")] = ...,  # type: ignore[assignment]
    detector: Annotated[str, typer.Option(help="student | llm | cascade | rubric")] = "student",
    llm: LLMOption = "embedded",
    base_url: BaseUrlOption = None,
    rubric: Annotated[Optional[str], typer.Option(help="Rubric: a shipped name or a YAML file (learned rubrics for --detector rubric).")] = None,
    student_model: Annotated[Optional[Path], typer.Option(help="A student model directory from `signals train`, or a shipped one by name: lexical (the default), two-stage (better: kappa 0.70 against 0.59; about 30 conversations/s on 2 cores against 300) or minilm.")] = None,
    threshold: Annotated[float, typer.Option(help="cascade: turns the student is less sure of than this go to the LLM.")] = 0.8,
    format: FormatOption = None,
    limit: Annotated[Optional[int], typer.Option(help="Only the first N conversations.")] = None,
    batch_size: Annotated[int, typer.Option(help="Conversations per batch.")] = 64,
    concurrency: ConcurrencyOption = 8,
    cache: CacheOption = None,
    no_cache: NoCacheOption = False,
    llm_timeout: LLMTimeoutOption = DEFAULT_LLM_TIMEOUT,
    max_failure_rate: MaxFailureRateOption = DEFAULT_MAX_FAILURE_RATE,
    on_error: Annotated[str, typer.Option(help="Unreadable input records: fail, or skip to the errors file.")] = "fail",
    issues: Annotated[Optional[Path], typer.Option(help="Model-output problems (default: OUTPUT.issues.jsonl).")] = None,
    max_record_bytes: Annotated[int, typer.Option(help="Reject input records (a line, an array item, a JSON file) longer than this many bytes, before parsing them.")] = DEFAULT_MAX_RECORD_BYTES,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON on stdout.")] = False,
) -> None:
    """Label every user turn SAT / DSAT / NEUTRAL with categories and the user's own words."""
    from wildfeedback.signals.detect import DETECTORS, detect_signals, make_detector

    if detector not in DETECTORS:
        raise fail(f"--detector must be one of {', '.join(DETECTORS)}, not {detector!r}", 2)
    if on_error not in ("fail", "skip"):
        raise fail(f"--on-error must be fail or skip, not {on_error!r}", 2)
    backend = None if detector == "student" else _backend(llm, base_url, cache, no_cache, llm_timeout)
    options = {"concurrency": concurrency} if detector != "student" else {}
    try:
        built = make_detector(detector, backend=backend, rubric=rubric, student_model=student_model,
                              threshold=threshold, **options)
    except (ValueError, FileNotFoundError) as error:
        raise fail(str(error), 2) from None
    with progress_line() as (progress, task):

        def update(report: RunReport) -> None:
            rate = report.read / report.seconds if report.seconds else 0.0
            progress.update(task, description=f"{report.read:,} conversations · {report.written:,} records · "
                                              f"{report.rejected:,} rejected · {rate:,.1f} conv/s")

        try:
            report = detect_signals(inputs, output, built, format=format, on_error=on_error,  # type: ignore[arg-type]
                                    issues_path=issues, batch_size=batch_size, limit=limit,
                                    max_record_bytes=max_record_bytes, progress=update)
        except BadRecordError as error:
            progress.stop()
            raise fail(f"{error}\n(nothing was written; use --on-error skip to set bad records aside and go on)") from None
        except (InputError, UnknownFormatError, ValueError) as error:
            progress.stop()
            raise fail(str(error), 2) from None
    result = report.as_dict()
    if as_json:
        print(json.dumps(result, indent=2))
    else:
        _print_detect_report(report)
    if backend is not None:  # after the outputs and the report: what was done is kept
        from wildfeedback.llm import check_failures

        check_failures(backend, max_failure_rate)


def _print_detect_report(report) -> None:  # type: ignore[no-untyped-def]
    table = Table(title=f"signals ({report.detector})", show_header=False, title_justify="left")
    table.add_row("conversations", f"{report.run.read:,}" + (f" ({report.run.rejected:,} unreadable)" if report.run.rejected else ""))
    table.add_row("signals", f"{report.signals:,} → {report.run.output}")
    for what, count in report.run.stages.items():
        table.add_row("", f"{count:,} × {what}")
    table.add_row("issues", f"{report.issues:,} → {report.issues_file}")
    if report.calls or report.usage:
        usage = report.usage
        table.add_row("LLM", f"{report.calls:,} calls asked, {usage.get('calls', 0):,} made, "
                             f"{usage.get('failed', 0):,} failed, {usage.get('total_tokens', 0):,} tokens spent"
                             + (f", cache {report.cache['hits']:,} hits" if report.cache else ""))
    if report.cascade:
        c = report.cascade
        table.add_row("cascade", f"{c['deferred_turns']:,} of {c['turns']:,} turns to the LLM; "
                                 f"{c['llm_calls']:,} calls instead of {c['llm_only_calls']:,} "
                                 f"({c['calls_saved_share']:.0%} saved), prompt characters "
                                 f"{c['prompt_chars_saved_share']:.0%} saved")
    table.add_row("time", f"{report.run.seconds:.1f} s")
    err.print(table)


@app.command()
def train(
    inputs: InputsArgument,
    output: Annotated[Path, typer.Option("-o", "--output", help="Model directory to write.")] = ...,  # type: ignore[assignment]
    signals: Annotated[Optional[Path], typer.Option(help="Labels from these signals (e.g. the LLM detector's) instead of the sources' own ratings.")] = None,
    rubric: Annotated[str, typer.Option(help="Rubric whose categories the category heads learn.")] = "wildfeedback",
    model: Annotated[str, typer.Option(help="lexical (the default detector's kind: n-grams of the user's words), two-stage (lexical, then a MiniLM cross-encoder with a LoRA adapter on the turns it is unsure of: better, and about 10 minutes per 1,000 turns and fold on 2 cores) or minilm (sentence embeddings).")] = "lexical",
    c: Annotated[Optional[float], typer.Option(help="Inverse L2 strength of the logistic regression (default: 10 lexical, 0.0005 minilm).")] = None,
    holdout: Annotated[float, typer.Option(help="minilm: share of conversations held out for the reported metrics (0: none). The lexical student reports 5-fold figures by conversation.")] = 0.2,
    format: FormatOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the metrics as JSON on stdout.")] = False,
) -> None:
    """Train a student detector from labelled turns: ratings, thumbs, or another detector's signals
    (distillation: label a sample with `signals detect --detector llm` or by hand, train here, then
    `--student-model DIR`)."""
    from wildfeedback.io.reader import read_conversations
    from wildfeedback.io.records import RecordFileError, read_records
    from wildfeedback.schema import Conversation, Signal
    from wildfeedback.signals.labels import examples_from
    from wildfeedback.signals.lexical import train_lexical
    from wildfeedback.signals.rubric import RubricError, load_rubric
    from wildfeedback.signals.training import examples_from_signals, train_with_holdout
    from wildfeedback.signals.two_stage import train_two_stage

    if model not in ("lexical", "two-stage", "minilm"):
        raise fail(f"--model must be lexical, two-stage or minilm, not {model!r}", 2)
    check_folder_target(output, what="model")
    check_outputs(expand_inputs(inputs), [output], input_folders=[Path(i) for i in inputs if Path(i).is_dir()],
                  folder_outputs=[output])
    try:
        conversations = [c_ for c_ in read_conversations(inputs, format=format) if isinstance(c_, Conversation)]
        if signals is not None:
            examples = examples_from_signals(conversations, read_records(signals, Signal))
            origin = f"signals from {signals}"
        else:
            examples = examples_from(conversations)
            origin = "the sources' own ratings and thumbs"
        if not examples:
            raise fail(f"no labelled turns in {len(conversations):,} conversations ({origin}); "
                       "give sources with ratings or thumbs, or --signals", 2)
        info = {"name": output.name, "labels": origin}
        if model in ("lexical", "two-stage"):
            trained = train_lexical(examples, c=10.0 if c is None else c, rubric=load_rubric(rubric), info=info)
            if model == "two-stage":
                trained = train_two_stage(examples, lexical=trained, info=info, log=err.print)
            metrics = trained.info["metrics"]
        else:
            trained, metrics = train_with_holdout(examples, c=0.0005 if c is None else c, holdout=holdout,
                                                  rubric=load_rubric(rubric), info=info)
    except (InputError, UnknownFormatError, RecordFileError, RubricError) as error:
        raise fail(str(error), 2) from None
    mark_as_ours(trained.save(output), "student model")
    if as_json:
        print(json.dumps(metrics, indent=2))
        return
    err.print(f"trained a {model} student on {len(examples):,} turns ({origin}) → {output}")
    for source, row in metrics["trained_on"].items():
        err.print(f"  {source}: SAT {row['SAT']:,} · DSAT {row['DSAT']:,} · NEUTRAL {row['NEUTRAL']:,}")
    held = metrics.get("held_out")
    if held:
        err.print(f"held-out {held['n']:,} turns: accuracy {held['accuracy']}% (majority {held['majority_accuracy']}%), "
                  f"weighted F1 {held['weighted_f1']}, ECE {held['ece']}%")
    folds = metrics.get("cross_validated") or metrics.get("cross_fitted")
    if folds:
        per = folds["per_class"]
        err.print(f"{folds['folds']}-fold by conversation, {folds['n']:,} turns: kappa {folds['kappa']:.2f}, "
                  f"DSAT P {per['DSAT']['precision']:.2f} R {per['DSAT']['recall']:.2f}, SAT F1 {per['SAT']['f1']:.2f}; "
                  f"rates estimated / labelled: DSAT {folds['rates']['DSAT']['estimated']}% / "
                  f"{folds['rates']['DSAT']['labelled']}%, SAT {folds['rates']['SAT']['estimated']}% / "
                  f"{folds['rates']['SAT']['labelled']}%")
    first = getattr(trained, "lexical", trained)  # the two-stage student's categories are its first stage's
    names = [n for _, n in first.category_names] if model != "minilm" else (
        [n for _, n in trained.categories.names] if trained.categories is not None else [])
    if names:
        err.print(f"category heads: {', '.join(names)}")


@app.command("learn-rubric")
def learn_rubric(
    inputs: InputsArgument,
    output: Annotated[Path, typer.Option("-o", "--output", help="The learned rubric, YAML.")] = ...,  # type: ignore[assignment]
    llm: LLMOption = "embedded",
    base_url: BaseUrlOption = None,
    name: Annotated[str, typer.Option(help="The rubric's name.")] = "learned",
    max_conversations: Annotated[int, typer.Option(help="At most this many labelled conversations (a seeded sample).")] = 200,
    max_items: Annotated[int, typer.Option(help="Items per polarity.")] = 10,
    seed: Annotated[int, typer.Option()] = 0,
    format: FormatOption = None,
    concurrency: ConcurrencyOption = 8,
    cache: CacheOption = None,
    no_cache: NoCacheOption = False,
    llm_timeout: LLMTimeoutOption = DEFAULT_LLM_TIMEOUT,
    max_failure_rate: MaxFailureRateOption = DEFAULT_MAX_FAILURE_RATE,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON on stdout.")] = False,
) -> None:
    """Learn a rubric (SPUR) from conversations with thumbs or ratings, with its score thresholds."""
    from wildfeedback.llm import check_failures
    from wildfeedback.signals.detect import sibling
    from wildfeedback.signals.learned_rubric import learn_rubric as run_learning

    check_outputs(expand_inputs(inputs), [output, sibling(output, "issues")],
                  input_folders=[Path(i) for i in inputs if Path(i).is_dir()])
    backend = _backend(llm, base_url, cache, no_cache, llm_timeout)
    try:
        report = run_learning(inputs, backend, name=name, max_conversations=max_conversations, max_items=max_items,
                              seed=seed, format=format, concurrency=concurrency)
    except (InputError, UnknownFormatError, ValueError) as error:
        check_failures(backend, max_failure_rate)  # "no rubric items" from a dead server: say so instead
        raise fail(str(error), 2) from None
    from wildfeedback.io.records import write_records
    from wildfeedback.schema import SignalIssue

    write_text_atomically(output, report.rubric.to_yaml())
    issues_file = sibling(output, "issues")
    write_records(issues_file, SignalIssue, report.issues)
    summary = {**report.summary(), "output": str(output), "issues_file": str(issues_file)}
    if as_json:
        print(json.dumps(summary, indent=2))
    else:
        _print_rubric_summary(report, summary, output, issues_file)
    check_failures(backend, max_failure_rate)  # after the rubric and its issues are written


def _print_rubric_summary(report, summary, output: Path, issues_file: Path) -> None:  # type: ignore[no-untyped-def]
    err.print(f"rubric {report.rubric.id} → {output}")
    err.print(f"  from {summary['conversations']} labelled conversations; {summary['llm_calls']} LLM calls; "
              f"{summary['issues']} issues → {issues_file}")
    err.print(f"  thresholds: SAT above {report.rubric.thresholds.sat_above:g}, DSAT below "
              f"{report.rubric.thresholds.dsat_below:g} (training weighted F1 {summary['training_f1']:.1f})")
    for polarity, items in (("SAT", report.rubric.sat), ("DSAT", report.rubric.dsat)):
        for item in items:
            err.print(f"  {polarity:<4} {item.name}: {item.description}", highlight=False)
