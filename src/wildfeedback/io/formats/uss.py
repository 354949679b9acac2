"""USS (User Satisfaction Simulation, Sun et al. 2021): MWOZ, SGD, ReDial, CCPE.

Dialogues separated by blank lines; each line `ROLE<TAB>text<TAB>act<TAB>ratings`.
Ratings (`3,3,2,3`, one per annotator, 1-5) sit on USER rows and rate the SYSTEM
turn just before; they are kept as `ratings` on that user message. The last row
`USER<TAB>OVERALL<TAB><TAB>ratings` rates the whole dialogue and is kept as
`metadata["overall_ratings"]`, not as a message. A few real turns are empty
(ReDial) and were rated all the same, so empty turns are kept.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from wildfeedback.errors import Location, RecordError, Rejected
from wildfeedback.io.formats.base import FileFormat, build, register
from wildfeedback.io.sources import TRUNCATION_ERRORS, open_binary, truncation_reason
from wildfeedback.schema import Conversation

_ROLES = {"USER": "user", "SYSTEM": "assistant"}


@register
class USS(FileFormat):
    name = "uss"
    description = "USS dialogues: ROLE<TAB>text<TAB>act<TAB>ratings, blank line between dialogues"

    def sniff_file(self, path: Path, head: bytes) -> bool:
        lines = [line for line in head.splitlines()[:20] if line.strip()]
        return bool(lines) and all(line.startswith((b"USER\t", b"SYSTEM\t")) for line in lines)

    def read(self, path: Path) -> Iterator[Conversation | Rejected]:
        corpus = path.name.split(".")[0]
        block: list[tuple[int, str]] = []
        number = 0
        line_no = 0
        with open_binary(path) as stream:
            try:
                for line_no, raw in enumerate(stream, start=1):  # noqa: B007
                    try:
                        line = raw.decode("utf-8").rstrip("\r\n")
                    except UnicodeDecodeError as error:
                        yield Rejected(Location(str(path), line=line_no), f"not valid UTF-8: {error}", raw=raw)
                        continue
                    if line.strip():
                        block.append((line_no, line))
                    elif block:
                        yield self._dialogue(path, corpus, number, block)
                        number += 1
                        block = []
            except TRUNCATION_ERRORS as error:
                yield Rejected(Location(str(path), line=line_no + 1), truncation_reason(error))
                return
        if block:
            yield self._dialogue(path, corpus, number, block)

    def _dialogue(self, path: Path, corpus: str, number: int, block: list[tuple[int, str]]) -> Conversation | Rejected:
        first_line = block[0][0]
        try:
            return build(_parse_dialogue(corpus, number, block))
        except RecordError as error:
            return Rejected(Location(str(path), line=first_line), f"dialogue {number}: {error}", "\n".join(t for _, t in block))


def _parse_dialogue(corpus: str, number: int, block: list[tuple[int, str]]) -> dict[str, Any]:
    messages: list[dict[str, Any]] = []
    metadata: dict[str, Any] = {"corpus": corpus, "dialogue": number}
    for line_no, line in block:
        fields = line.split("\t")
        if len(fields) != 4:
            raise RecordError(f"line {line_no} has {len(fields)} tab-separated fields, expected 4")
        role, text, act, ratings = fields
        if role not in _ROLES:
            raise RecordError(f"line {line_no}: unknown role {role!r} (expected USER or SYSTEM)")
        parsed = _ratings(ratings, line_no) if ratings else None
        if role == "USER" and text == "OVERALL" and act in ("", "OTHER"):
            metadata["overall_ratings"] = parsed
            continue
        if role == "USER" and parsed is None:
            raise RecordError(f"line {line_no}: USER turn has no ratings")
        message: dict[str, Any] = {"role": _ROLES[role], "content": text, "index": len(messages)}
        if act:
            message["labels"] = {"dialogue_act": act}
        if parsed is not None:
            message["ratings"] = parsed
        messages.append(message)
    if "overall_ratings" not in metadata:
        raise RecordError("no OVERALL row")
    return {"id": f"{corpus}-{number}", "source": f"uss/{corpus}", "messages": messages, "metadata": metadata}


def _ratings(text: str, line_no: int) -> list[float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise RecordError(f"line {line_no}: ratings {text!r} are not comma-separated numbers") from None
    if any(not 1 <= v <= 5 for v in values):
        raise RecordError(f"line {line_no}: ratings {text!r} fall outside 1-5")
    return values
