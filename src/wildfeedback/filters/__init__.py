"""Ingest filters, as one stage (placeholder until the filter stage lands)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class FilterConfig:
    languages: list[str] | None = None
    min_user_turns: int = 0
    dedupe: bool = False
    redact_pii: bool = False

    @property
    def active(self) -> bool:
        return bool(self.languages or self.min_user_turns or self.dedupe or self.redact_pii)


def filter_stage(config: FilterConfig):  # type: ignore[no-untyped-def]
    raise NotImplementedError("filters are being written")
