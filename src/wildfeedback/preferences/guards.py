"""What keeps bad pairs out: harmful preferences, duplicates, evaluation prompts.

* **Harmful preferences.** A "preference" can be a request for harm ("just tell
  me how to make the explosive"). Training a model to prefer the reply that
  complies would teach it exactly that. Every candidate is checked with a
  keyword lexicon (always: cheap, and the only check the embedded 135M model can
  back), and, with `llm=True`, by the LLM backend's moderation call too.
* **Duplicates.** Exact (same prompt, chosen and rejected after normalising case
  and spaces) and near duplicates (MinHash over the words of the last user turn
  and both replies), with the same machinery as the conversation filter.
* **Decontamination.** A pair whose prompt shares a word n-gram (8 words by
  default) with any prompt of a given evaluation set is dropped, so the exports
  can be evaluated on that set honestly.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel

from wildfeedback.filters.dedupe import Deduplicator
from wildfeedback.llm import Backend, Sampling, call_structured, gather_bounded, run_sync
from wildfeedback.prompts import load_prompt
from wildfeedback.prompts.conversation import as_data
from wildfeedback.schema import ChatTurn, Conversation, PreferencePair

# Requests for serious harm, by category. Deliberately narrow: a false alarm costs
# one pair, a miss teaches a model to comply.
HARM_LEXICON: dict[str, re.Pattern[str]] = {
    "weapons": re.compile(
        r"\b(make|build|synthesi[sz]e|assemble|produce|cook)\w*\b.{0,60}\b(bomb|explosive|napalm|nerve agent|sarin|"
        r"ricin|anthrax|bioweapon|chemical weapon|pipe bomb|ghost gun)", re.IGNORECASE | re.DOTALL),
    "drugs": re.compile(r"\b(cook|make|synthesi[sz]e|produce)\w*\b.{0,40}\b(meth|methamphetamine|fentanyl|heroin|crack)\b",
                        re.IGNORECASE | re.DOTALL),
    "minors": re.compile(r"\b(child|children|minor|kid|underage|\d{1,2}[- ]year[- ]old)\b.{0,60}\b(sex|sexual|nude|naked|"
                         r"porn|erotic)", re.IGNORECASE | re.DOTALL),
    "self-harm": re.compile(r"\b(how|best way|easiest way|painless)\b.{0,40}\b(kill myself|suicide|end my life|"
                            r"self[- ]harm)\b", re.IGNORECASE | re.DOTALL),
    "malware": re.compile(r"\b(write|create|code|build)\w*\b.{0,40}\b(ransomware|keylogger|malware|botnet|"
                          r"credential stealer|rootkit)\b", re.IGNORECASE | re.DOTALL),
    "violence": re.compile(r"\bhow (do|can|could|would) (i|you|we)\b.{0,30}\b(kill|murder|poison|kidnap)\b.{0,30}\b"
                           r"(someone|person|people|my|him|her|them)\b", re.IGNORECASE | re.DOTALL),
}


def keyword_harm(*texts: str) -> str | None:
    """The first harm category whose pattern matches any of `texts`, or None."""
    for category, pattern in HARM_LEXICON.items():
        if any(pattern.search(t) for t in texts if t):
            return category
    return None


class Moderation(BaseModel):
    harmful: bool
    category: str = "none"


@dataclass
class Moderator:
    """`check(items)` -> a reason per (request, preferences), None when it is fine."""

    backend: Backend | None = None
    llm: bool = False
    concurrency: int = 8

    def __post_init__(self) -> None:
        self.prompt = load_prompt("moderation")
        if self.backend is not None:  # None: the keyword check alone
            self.backend = self.backend.versioned(self.prompt.id)

    def check(self, items: Sequence[tuple[str, str]]) -> list[str | None]:
        reasons: list[str | None] = []
        for request, preferences in items:
            category = keyword_harm(request, preferences)
            reasons.append(f"harmful request ({category}, keyword lexicon)" if category else None)
        if not (self.llm and self.backend is not None):
            return reasons
        todo = [k for k, r in enumerate(reasons) if r is None]
        sampling = Sampling(temperature=0.0, max_tokens=60)
        calls = [
            call_structured(self.backend, [{"role": "user", "content": self.prompt.render(
                request=as_data(items[k][0], 4000), preferences=as_data(items[k][1], 1500))}], Moderation, sampling)
            for k in todo
        ]
        for k, result in zip(todo, run_sync(gather_bounded(calls, self.concurrency)), strict=True):
            if result.value is None:
                reasons[k] = f"moderation check failed ({result.error}); dropped to be safe"
            elif result.value.harmful:
                reasons[k] = f"harmful request ({result.value.category[:40]}, {self.backend.model})"
        return reasons


# -- duplicates -----------------------------------------------------------------------


def _words(text: str) -> list[str]:
    return text.lower().split()


def last_user(prompt: Sequence[ChatTurn]) -> str:
    return next((t.content for t in reversed(prompt) if t.role == "user"), "")


@dataclass
class PairDeduplicator:
    threshold: float = 0.8
    _dedupe: Deduplicator = field(init=False)

    def __post_init__(self) -> None:
        self._dedupe = Deduplicator(threshold=self.threshold, stage="preferences")

    def check(self, pair: PreferencePair) -> str | None:
        digest = hashlib.blake2b(digest_size=16)
        for part in (*(f"{t.role}:{t.content}" for t in pair.prompt), pair.chosen, pair.rejected):
            digest.update(" ".join(_words(part)).encode() + b"\x01")
        words = _words(last_user(pair.prompt)) + _words(pair.rejected) + _words(pair.chosen)
        return self._dedupe.check_fingerprint(digest.digest(), words)


# -- decontamination -------------------------------------------------------------------

_TOKEN = re.compile(r"\w+")


def _stable_hash(words: Sequence[str]) -> int:
    """The same number in every process: Python's own `hash` of a string is salted per
    process, so a Decontaminator pickled to a worker would find no overlap at all."""
    return int.from_bytes(hashlib.blake2b("\x1f".join(words).encode(), digest_size=8).digest(), "little")


def ngrams(text: str, n: int) -> set[int]:
    words = _TOKEN.findall(text.lower())
    if len(words) < n:
        return {_stable_hash(words)} if words and len(words) >= max(3, n // 2) else set()
    return {_stable_hash(words[i : i + n]) for i in range(len(words) - n + 1)}


@dataclass
class Decontaminator:
    """Drops pairs whose prompt shares a word n-gram with the evaluation prompts."""

    texts: Iterable[str]
    n: int = 8
    _grams: set[int] = field(init=False, default_factory=set)

    def __post_init__(self) -> None:
        for text in self.texts:
            self._grams |= ngrams(text, self.n)

    def __len__(self) -> int:
        return len(self._grams)

    def check(self, prompt: Sequence[ChatTurn]) -> str | None:
        for turn in prompt:
            if turn.role == "user" and ngrams(turn.content, self.n) & self._grams:
                return f"prompt overlaps the evaluation set ({self.n}-gram)"
        return None


def evaluation_prompts(path: str | Path) -> list[str]:
    """The user messages of an evaluation set: wildfeedback / TRL exports (a `prompt`
    column of messages or text), or conversations in any format the readers know."""
    path = Path(path)
    texts: list[str] = []
    if path.suffix == ".jsonl":
        with open(path, encoding="utf-8") as stream:
            first = stream.readline()
        if first.strip().startswith("{") and "prompt" in json.loads(first):
            with open(path, encoding="utf-8") as stream:
                for line in stream:
                    if line.strip():
                        texts.extend(_prompt_texts(json.loads(line)["prompt"]))
            return texts
    from wildfeedback.io.reader import read_conversations

    for item in read_conversations([path]):
        if isinstance(item, Conversation):
            texts.extend(m.content for m in item.messages if m.role == "user")
    return texts


def _prompt_texts(prompt: object) -> list[str]:
    if isinstance(prompt, str):
        return [prompt]
    if isinstance(prompt, list):
        return [m["content"] for m in prompt if isinstance(m, dict) and m.get("role") == "user"]
    return []
