"""wildfeedback: align LLMs with what their real users say and do.

Every step is callable from Python; the `wildfeedback` command is a thin layer
over these names (imported on first use, so `import wildfeedback` stays light):

    import wildfeedback as wf

    wf.ingest(["logs/"], "clean.parquet", on_error="skip")
    detector = wf.make_detector("student")                   # the shipped student
    wf.detect_signals(["clean.parquet"], "signals.parquet", detector)
    summary = wf.run_pipeline(wf.RunConfig(output=Path("out/run")))   # the main job

Errors the user can fix are `wf.WildfeedbackError`; anything else is a bug.
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    __version__ = version("wildfeedback")
except PackageNotFoundError:  # a source tree that is not installed
    __version__ = "0+unknown"

# name -> the module that defines it
_EXPORTS = {
    # records
    "Conversation": "wildfeedback.schema",
    "Message": "wildfeedback.schema",
    "Event": "wildfeedback.schema",
    "Signal": "wildfeedback.schema",
    "SignalIssue": "wildfeedback.schema",
    "PreferencePair": "wildfeedback.schema",
    "UnpairedExample": "wildfeedback.schema",
    "Dropped": "wildfeedback.schema",
    "Rejected": "wildfeedback.errors",
    "WildfeedbackError": "wildfeedback.errors",
    # reading and ingesting logs
    "read_conversations": "wildfeedback.io.reader",
    "open_writer": "wildfeedback.io.writers",
    "ingest": "wildfeedback.io.ingest",
    "FilterConfig": "wildfeedback.filters",
    # finding the feedback
    "make_detector": "wildfeedback.signals.detect",
    "load_student": "wildfeedback.signals.detect",
    "detect_signals": "wildfeedback.signals.detect",
    "train_lexical": "wildfeedback.signals.lexical",
    "train_two_stage": "wildfeedback.signals.two_stage",
    # LLM backends
    "make_backend": "wildfeedback.llm",
    "open_backend": "wildfeedback.llm",
    # the main job
    "run_pipeline": "wildfeedback.run",
    "RunConfig": "wildfeedback.run",
    # training
    "train": "wildfeedback.training.trainer",
    "load_recipe": "wildfeedback.training.recipe",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'wildfeedback' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
