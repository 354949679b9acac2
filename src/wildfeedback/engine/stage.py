"""A stage: a function from a batch of records to a batch of records.

The same stage object runs in the local streaming executor and, unchanged,
inside a cluster executor's map over batches. A stage that drops or changes
records says so through the `Tally` it is handed, so the executor can report
every drop by stage and reason in one place.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol, TypeVar

Record = TypeVar("Record")


class Tally:
    """Counts of what stages did, keyed `stage: what` (e.g. `dedupe: near duplicate`),
    and the seconds spent on the expensive steps, so a run says where its time went."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.seconds: Counter[str] = Counter()

    @contextmanager
    def timed(self, what: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[what] += time.perf_counter() - started

    def add(self, stage: str, what: str, n: int = 1) -> None:
        if n:
            self.counts[f"{stage}: {what}"] += n

    def merge(self, other: Tally) -> None:
        self.counts.update(other.counts)
        self.seconds.update(other.seconds)


class Stage(Protocol[Record]):
    """A batch in, a batch out. A stage that must hold records back across batches
    (to group records that belong together) may also define `finish(tally)`, which
    the executor calls once at the end of the input to collect what it still holds."""

    name: str

    def __call__(self, batch: list[Record], tally: Tally) -> list[Record]: ...
