"""Prompt templates as files, versioned, one per task.

A template lives in this folder as `NAME.vN.txt` and uses `$placeholders`
(`string.Template`), so braces in JSON examples need no escaping. The version is
part of every response-cache key: edit a prompt, bump N, and no stale answer is
replayed. `load_prompt("feedback_detection")` takes the highest version shipped.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from functools import cache
from importlib import resources

_NAME = re.compile(r"^(?P<name>[a-z0-9_]+)\.v(?P<version>\d+)\.txt$")


class PromptError(LookupError):
    pass


@dataclass(frozen=True)
class Prompt:
    name: str
    version: int
    text: str

    @property
    def id(self) -> str:
        """`name.vN`: the prompt version recorded on every output and in cache keys."""
        return f"{self.name}.v{self.version}"

    def render(self, **values: object) -> str:
        """The text with every `$placeholder` filled; a missing one is an error, not a blank."""
        try:
            return string.Template(self.text).substitute({k: str(v) for k, v in values.items()})
        except KeyError as missing:
            raise PromptError(f"prompt {self.id}: no value for ${missing.args[0]}") from None


def shipped() -> dict[str, list[int]]:
    versions: dict[str, list[int]] = {}
    for entry in resources.files(__name__).iterdir():
        match = _NAME.match(entry.name)
        if match:
            versions.setdefault(match["name"], []).append(int(match["version"]))
    return {name: sorted(v) for name, v in sorted(versions.items())}


@cache
def load_prompt(name: str, version: int | None = None) -> Prompt:
    versions = shipped().get(name)
    if not versions:
        raise PromptError(f"no prompt named {name!r}; shipped: {', '.join(shipped())}")
    chosen = versions[-1] if version is None else version
    if chosen not in versions:
        raise PromptError(f"prompt {name!r} has versions {versions}, not {chosen}")
    text = resources.files(__name__).joinpath(f"{name}.v{chosen}.txt").read_text(encoding="utf-8")
    return Prompt(name, chosen, text)
