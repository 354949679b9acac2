"""Bad input, named precisely, and the one exception base for the user's errors.

`WildfeedbackError` is the base of every error the user can fix (a bad path, a
bad record, a bad setting): the command line prints it as one line naming the
path or record and what to do. Any other exception is a bug in wildfeedback and
keeps its traceback.

Every record a reader cannot turn into a `Conversation` becomes a `Rejected`:
where it was (file and line, or record index), why, and the raw text, so that
nothing vanishes. Under `--on-error fail` the first one stops the run as a
`BadRecordError`; under `--on-error skip` each is written to an errors file.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import orjson


class WildfeedbackError(Exception):
    """An error that is the user's to fix; its message names the path or record and what to do."""

    exit_code = 2


@dataclass(frozen=True, slots=True)
class Location:
    path: str
    line: int | None = None  # 1-based line in a text file
    record: int | None = None  # 0-based record in a JSON array, Parquet file or block file

    def __str__(self) -> str:
        if self.line is not None:
            return f"{self.path}, line {self.line}"
        if self.record is not None:
            return f"{self.path}, record {self.record}"
        return self.path


class NerUnavailableError(WildfeedbackError, RuntimeError):
    """Names must be redacted (pii_names=True or a named ner_model) but no engine can be loaded."""


class RecordError(ValueError):
    """Raised by a format's converter for one record it cannot accept."""


@dataclass(frozen=True, slots=True)
class Rejected:
    location: Location
    reason: str
    raw: Any = None  # bytes, str or the parsed value, whatever the reader had

    def describe(self) -> str:
        return f"{self.location}: {self.reason}"

    def to_json(self) -> bytes:
        """A line of the errors file. Raw bytes that are not UTF-8 go in base64."""
        record: dict[str, Any] = {
            "path": self.location.path,
            "line": self.location.line,
            "record": self.location.record,
            "reason": self.reason,
        }
        raw = self.raw
        if isinstance(raw, (bytes, bytearray)):
            try:
                record["raw"] = bytes(raw).decode("utf-8")
            except UnicodeDecodeError:
                record["raw_base64"] = base64.b64encode(bytes(raw)).decode("ascii")
        elif raw is not None:
            record["raw"] = raw
        return orjson.dumps(record, default=str)


class BadRecordError(WildfeedbackError):
    """The run stopped at a bad record (`--on-error fail`)."""

    exit_code = 1

    def __init__(self, rejected: Rejected):
        self.rejected = rejected
        super().__init__(rejected.describe())


def describe_validation_error(error: Exception) -> str:
    """A pydantic ValidationError in one line: `messages.2.role: Input should be ...`."""
    errors = getattr(error, "errors", None)
    if errors is None:
        return str(error)
    parts = []
    for item in errors(include_url=False, include_input=False):
        where = ".".join(str(p) for p in item["loc"]) or "record"
        parts.append(f"{where}: {item['msg']}")
    return "; ".join(parts)
