"""Ingest filters, as one stage: what a run keeps, and what it must not keep verbatim.

`filter_stage(FilterConfig(...))` composes the filters that are switched on,
cheapest drops first, so the costly work only meets what survives:

1. `turns`: fewer user turns than asked for (a count);
2. `language`: not in the wanted languages (detected where the source gave none);
3. `dedupe`: exact, then near, repeats of an earlier conversation (state kept for the run);
4. `pii`: personal data replaced by placeholders in what is kept.

Every drop and every redaction is counted in the tally under the stage name
`filter`, with its reason ("fewer than 2 user turns", "language fr not in en",
"exact duplicate", "near duplicate", "pii: email", ...).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from wildfeedback.engine.stage import Tally
from wildfeedback.errors import NerUnavailableError
from wildfeedback.filters.language import DEFAULT_SAMPLE_CHARS, LanguageFilter
from wildfeedback.filters.turns import MinUserTurns
from wildfeedback.schema import Conversation

__all__ = ["FilterConfig", "FilterStage", "NerUnavailableError", "filter_stage"]

STAGE_NAME = "filter"


@dataclass
class FilterConfig:
    languages: list[str] | None = None  # ISO codes to keep; None keeps every language
    min_user_turns: int = 0
    dedupe: bool = False
    near_duplicate_threshold: float = 0.8  # estimated Jaccard similarity of word 5-gram sets
    redact_pii: bool = False
    # Person names: None = if an NER engine is installed, True = required, False = never.
    pii_names: bool | None = None
    # spaCy pipeline for names (package name or directory); None = the best installed en_core_web_*.
    ner_model: str | None = None
    phone_region: str = "US"  # how numbers without a + country code are read
    num_perm: int = 64  # MinHash size: more is more exact and slower
    shingle_words: int = 5
    language_sample_chars: int = DEFAULT_SAMPLE_CHARS

    def __post_init__(self) -> None:
        if self.min_user_turns < 0:
            raise ValueError(f"min_user_turns must be >= 0, not {self.min_user_turns}")
        if not 0.0 < self.near_duplicate_threshold <= 1.0:
            raise ValueError(f"near_duplicate_threshold must be in (0, 1], not {self.near_duplicate_threshold}")

    @property
    def active(self) -> bool:
        return bool(self.languages or self.min_user_turns or self.dedupe or self.redact_pii)


Step = Callable[[list[Conversation], Tally], list[Conversation]]


class FilterStage:
    """The configured filters run in order over each batch; dedupe state spans the whole run."""

    name = STAGE_NAME

    def __init__(self, config: FilterConfig):
        self.config = config
        self.steps: list[Step] = []
        if config.min_user_turns:
            self.steps.append(MinUserTurns(config.min_user_turns, stage=self.name))
        if config.languages:
            self.steps.append(
                LanguageFilter(config.languages, stage=self.name, sample_chars=config.language_sample_chars)
            )
        # Dedupe (datasketch, scipy) and PII (phonenumbers) load only when switched on.
        if config.dedupe:
            from wildfeedback.filters.dedupe import Deduplicator

            self.steps.append(
                Deduplicator(
                    threshold=config.near_duplicate_threshold,
                    num_perm=config.num_perm,
                    shingle_words=config.shingle_words,
                    stage=self.name,
                )
            )
        if config.redact_pii:
            from wildfeedback.filters.pii import PiiRedactor

            self.steps.append(
                PiiRedactor(
                    names=config.pii_names,
                    ner_model=config.ner_model,
                    phone_region=config.phone_region,
                    stage=self.name,
                )
            )

    def __call__(self, batch: list[Conversation], tally: Tally) -> list[Conversation]:
        for step in self.steps:
            batch = step(batch, tally)
        return batch


def filter_stage(config: FilterConfig) -> FilterStage:
    """The filter stage for `config` (raises `NerUnavailableError` if names must be redacted and cannot be)."""
    return FilterStage(config)
