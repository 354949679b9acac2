"""What every command shares: the consoles, errors, the live progress line, LLM options."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn

err = Console(stderr=True)
out = Console()


def fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}", highlight=False, markup=True, soft_wrap=True)
    return typer.Exit(code)


@contextmanager
def progress_line() -> Iterator[tuple[Progress, TaskID]]:
    progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=err, transient=True)
    with progress:
        yield progress, progress.add_task("starting", total=None)


# Options every LLM-using command takes, spelled once.
LLMOption = Annotated[str, typer.Option("--llm", help="embedded (SmolLM2 on CPU), openai:MODEL or vllm:MODEL (any OpenAI-compatible server).")]
BaseUrlOption = Annotated[Optional[str], typer.Option("--base-url", help="The server's URL, e.g. http://localhost:8000/v1 (key from $OPENAI_API_KEY or $WILDFEEDBACK_API_KEY).")]
CacheOption = Annotated[Optional[str], typer.Option("--cache", help="Response cache (SQLite); default $WILDFEEDBACK_CACHE or ~/.cache/wildfeedback/llm-cache.sqlite.")]
NoCacheOption = Annotated[bool, typer.Option("--no-cache", help="Call the LLM for everything, store nothing.")]
ConcurrencyOption = Annotated[int, typer.Option(help="LLM calls in flight at once.")]
# The library's llm.DEFAULT_DEADLINE and llm.DEFAULT_MAX_FAILURE_RATE, spelled again so that
# the command line starts without importing the LLM client (tests/test_safety_llm.py checks they agree).
DEFAULT_LLM_TIMEOUT = 120.0
DEFAULT_MAX_FAILURE_RATE = 0.5
LLMTimeoutOption = Annotated[float, typer.Option("--llm-timeout", metavar="SECONDS", help="Seconds one LLM call may take in all, retries included; then it is a timeout issue (served models; the embedded model is bounded by its max tokens).")]
MaxFailureRateOption = Annotated[float, typer.Option("--max-failure-rate", min=0.0, max=1.0, help="Exit 1 (after writing the outputs) when every LLM call failed, or more than this share of them (over at least 5 calls).")]
