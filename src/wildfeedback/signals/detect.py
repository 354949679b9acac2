"""`detect_signals`: conversations in, signals and issues out, on the engine.

The detector runs as a stage (a batch of conversations becomes a batch of
`Signal` and `SignalIssue` records) in the local executor, which owns the
progress display and the bad-input policy, as for `ingest`. A writer routes
signals to the output file and issues to the issues file beside it.

`make_detector` builds any of the four detectors from the CLI's words.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wildfeedback.engine import LocalExecutor, OnError, RunReport, Tally
from wildfeedback.engine.local import ProgressCallback
from wildfeedback.io.outputs import check_outputs
from wildfeedback.io.reader import DEFAULT_MAX_RECORD_BYTES, read_conversations
from wildfeedback.io.records import RecordWriter
from wildfeedback.io.sources import expand_inputs
from wildfeedback.llm import Backend
from wildfeedback.llm.cache import CachedBackend
from wildfeedback.schema import Conversation, Signal, SignalIssue
from wildfeedback.signals.base import Detector, Student

DETECTORS = ("student", "llm", "cascade", "rubric")
def make_detector(
    kind: str,
    *,
    backend: Backend | None = None,
    rubric: str | os.PathLike[str] | None = None,
    student_model: str | os.PathLike[str] | None = None,
    threshold: float = 0.8,
    **options: Any,
) -> Detector:
    """A detector by name. `backend` is needed by llm, cascade and rubric; `rubric`
    (a shipped name or a YAML path) gives the llm detector its categories and the
    rubric detector its learned items; `options` go to the LLM-side detector."""
    from wildfeedback.signals.rubric import load_rubric

    if kind not in DETECTORS:
        raise ValueError(f"unknown detector {kind!r}; choose one of {', '.join(DETECTORS)}")
    if kind == "student":
        return load_student(student_model)
    if backend is None:
        raise ValueError(f"the {kind} detector needs an LLM backend (--llm)")
    if kind == "rubric":
        from wildfeedback.signals.learned_rubric import RubricScorer

        if rubric is None:
            raise ValueError("the rubric detector scores with a learned rubric: pass --rubric FILE "
                             "(made by `wildfeedback signals learn-rubric`)")
        return RubricScorer(backend, rubric=load_rubric(rubric), **options)
    from wildfeedback.signals.llm_detector import LLMDetector

    llm = LLMDetector(backend, rubric=load_rubric(rubric or "wildfeedback"), **options)
    if kind == "llm":
        return llm
    from wildfeedback.signals.cascade import CascadeDetector

    return CascadeDetector(load_student(student_model), llm, threshold=threshold)


def load_student(path: str | os.PathLike[str] | None = None) -> Student:
    """The student in `path` — a two-stage student (`two_stage.json`), a lexical one
    (`lexical.json`) or a MiniLM one (`student.json`, what `signals train --model minilm`
    writes) — or the shipped lexical student when no path is given. The shipped models
    also go by name: `lexical`, `two-stage` (kappa 0.70 against 0.59, at a third of the
    speed) and `minilm`."""
    from wildfeedback.signals.lexical import DEFAULT_DIR as LEXICAL_DIR
    from wildfeedback.signals.lexical import LexicalStudent
    from wildfeedback.signals.student import DEFAULT_DIR as MINILM_DIR
    from wildfeedback.signals.student import StudentDetector
    from wildfeedback.signals.two_stage import DEFAULT_DIR as TWO_STAGE_DIR
    from wildfeedback.signals.two_stage import META, TwoStageStudent

    shipped = {"lexical": LEXICAL_DIR, "two-stage": TWO_STAGE_DIR, "minilm": MINILM_DIR}
    if path is not None and str(path) in shipped and not Path(path).exists():
        path = shipped[str(path)]

    if path is not None and (Path(path) / META).is_file():
        return TwoStageStudent.load(path)
    if path is None or (Path(path) / "lexical.json").is_file():
        return LexicalStudent.load(path)
    if (Path(path) / "student.json").is_file():
        return StudentDetector.load(path)
    raise FileNotFoundError(f"{path}: no student model there (expected two_stage.json, lexical.json, or "
                            "student.json for a MiniLM student)")


class DetectorStage:
    """A detector as an engine stage: conversations -> signals + issues, tallied."""

    def __init__(self, detector: Detector):
        self.detector = detector
        self.name = detector.name
        self.calls = 0

    def __call__(self, batch: list[Conversation], tally: Tally) -> list[Signal | SignalIssue]:
        outcome = self.detector.detect(batch)
        self.calls += outcome.calls
        for label, n in Counter(s.label for s in outcome.signals).items():
            tally.add(self.name, f"{label} signals", n)
        for issue in outcome.issues:
            tally.add(self.name, f"issue {issue.kind}" + ("" if issue.dropped else " (label kept)"))
        return [*outcome.signals, *outcome.issues]


class SignalsWriter:
    """Signals to one file, issues to another: the engine's `Writer` for this stage."""

    def __init__(self, output: Path, issues: Path):
        self.path = output
        self.signals = RecordWriter(output, Signal)
        self.issues = RecordWriter(issues, SignalIssue)

    def write(self, batch: list[Any]) -> None:
        self.signals.write(r for r in batch if isinstance(r, Signal))
        self.issues.write(r for r in batch if isinstance(r, SignalIssue))

    def close(self) -> None:
        self.signals.close()
        self.issues.close()

    def abort(self) -> None:
        self.signals.abort()
        self.issues.abort()


@dataclass
class DetectReport:
    run: RunReport
    detector: str
    signals: int
    issues: int
    issues_file: str
    calls: int
    usage: dict[str, int] = field(default_factory=dict)
    cache: dict[str, int] = field(default_factory=dict)
    cascade: dict[str, float] | None = None

    def as_dict(self) -> dict[str, Any]:
        out = {
            "detector": self.detector,
            "conversations": self.run.read,
            "rejected_inputs": self.run.rejected,
            "signals": self.signals,
            "issues": self.issues,
            "counts": self.run.stages,
            "llm_calls": self.calls,
            "tokens_spent": self.usage,
            "cache": self.cache,
            "output": self.run.output,
            "issues_file": self.issues_file,
            "errors_file": self.run.errors_file,
            "rejected_by_reason": self.run.rejected_by_reason,
            "seconds": round(self.run.seconds, 3),
        }
        if self.cascade is not None:
            out["cascade"] = self.cascade
        return out


def sibling(output: Path, what: str) -> Path:
    """`out/signals.parquet` -> `out/signals.{what}.jsonl`."""
    name = output.name
    for suffix in (".gz", ".zst", ".jsonl", ".ndjson", ".json", ".parquet", ".yaml", ".yml"):
        name = name.removesuffix(suffix)
    return output.with_name(f"{name}.{what}.jsonl")


def _limited(records: Iterable[Any], limit: int | None) -> Iterable[Any]:
    taken = 0
    for record in records:
        if limit is not None and taken >= limit and isinstance(record, Conversation):
            return
        if isinstance(record, Conversation):
            taken += 1
        yield record


def detect_signals(
    inputs: Iterable[str | os.PathLike[str]],
    output: str | os.PathLike[str],
    detector: Detector,
    *,
    format: str | None = None,
    on_error: OnError = "fail",
    errors_path: str | os.PathLike[str] | None = None,
    issues_path: str | os.PathLike[str] | None = None,
    batch_size: int = 64,
    limit: int | None = None,
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
    progress: ProgressCallback | None = None,
) -> DetectReport:
    """Run `detector` over every conversation in `inputs`; signals go to `output`
    (.parquet or .jsonl), model-output problems to `issues_path` (default
    `OUTPUT.issues.jsonl`), unreadable input records to `errors_path` under skip."""
    output = Path(output)
    issues_file = Path(issues_path) if issues_path else sibling(output, "issues")
    errors_file = Path(errors_path) if errors_path else sibling(output, "errors")
    sources = list(inputs)
    files = expand_inputs(sources)
    check_outputs(files, [output, issues_file, errors_file if on_error == "skip" else None],
                  input_folders=[Path(s) for s in sources if Path(s).is_dir()])
    stage = DetectorStage(detector)
    executor = LocalExecutor(
        [stage],
        batch_size=batch_size,
        on_error=on_error,
        errors_path=errors_file,
        progress=progress,
    )
    writer = SignalsWriter(output, issues_file)
    records = read_conversations(files, format=format, max_record_bytes=max_record_bytes)
    run = executor.run(_limited(records, limit), writer)
    backend = _backend_of(detector)
    report = DetectReport(
        run=run,
        detector=detector.name,
        signals=writer.signals.count,
        issues=writer.issues.count,
        issues_file=str(issues_file),
        calls=stage.calls,
    )
    if backend is not None:
        report.usage = backend.usage.as_dict()
        if isinstance(backend, CachedBackend):
            report.cache = {"hits": backend.stats.hits, "misses": backend.stats.misses, "path": str(backend.cache.path)}  # type: ignore[dict-item]
    stats = getattr(detector, "stats", None)
    if stats is not None:
        report.cascade = stats.as_dict()
    return report


def _backend_of(detector: Detector) -> Backend | None:
    for candidate in (detector, getattr(detector, "llm", None)):
        backend = getattr(candidate, "backend", None)
        if isinstance(backend, Backend):
            return backend
    return None
