"""The preference stage: conversations (and their signals) in, preference data out.

One engine stage, so it streams in batches like `ingest` and `signals detect`:

    conversations ─ signals (a detector, or signals read from a file)
        ├─ Signal / SignalIssue records, passed through for the signals file
        ├─ unpaired labels (KTO) ── dedupe, decontaminate
        ├─ natural pairs ────────── dedupe, decontaminate
        └─ dissatisfied replies ─ decontaminate ─ cap (--max-pairs) ─ preferences + checklist
              ─ moderation ─ chosen reply (expert / on-policy + judge) ─ dedupe ─ pair

Everything set aside is a `Dropped` record with its stage and reason, counted in
the tally: nothing vanishes. The stage also fills the report's `ReportData`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wildfeedback.engine import Tally
from wildfeedback.evaluate.judge import ChecklistJudge
from wildfeedback.llm import Backend, Completion
from wildfeedback.preferences.candidates import (
    Candidate,
    RankedSiblings,
    corrected_pairs,
    dissatisfied_replies,
    labelled_pairs,
    signals_by_turn,
    stable_id,
    unpaired_examples,
)
from wildfeedback.preferences.generate import Mode, PreferenceExtractor, ReplyWriter
from wildfeedback.preferences.guards import Decontaminator, Moderator, PairDeduplicator, evaluation_prompts, last_user
from wildfeedback.report.data import ReportData
from wildfeedback.schema import Conversation, Dropped, PreferencePair, Signal, SignalIssue, UnpairedExample
from wildfeedback.signals.base import Outcome
from wildfeedback.signals.labels import candidate_turns

STAGE = "preferences"


@dataclass
class PreferenceConfig:
    mode: Mode = "expert"
    max_pairs: int | None = None  # generated pairs (each costs LLM calls); natural pairs are not capped
    natural: bool = True
    unpaired: bool = True
    dedupe: bool = True
    near_duplicate_threshold: float = 0.8
    llm_moderation: bool = False  # the keyword lexicon always runs
    eval_set: Path | None = None
    ngram: int = 8
    max_tokens: int = 512
    concurrency: int = 8

    def __post_init__(self) -> None:
        if self.mode not in ("expert", "on-policy"):
            raise ValueError(f"mode must be 'expert' or 'on-policy', not {self.mode!r}")
        if self.max_pairs is not None and self.max_pairs < 0:
            raise ValueError(f"max_pairs must be >= 0, not {self.max_pairs}")


Signals = Callable[[list[Conversation]], Outcome]


@dataclass
class PreferenceStage:
    """`signals(batch)` gives each batch's signals (run a detector, or look them up).
    `analyst` extracts preferences and checklists and moderates; `generator` writes
    chosen replies (expert: the stronger model; on-policy: the policy); `judge`
    (on-policy) compares the conditioned and the plain reply."""

    signals: Signals
    analyst: Backend
    generator: Backend
    config: PreferenceConfig = field(default_factory=PreferenceConfig)
    judge: Backend | None = None
    report: ReportData = field(default_factory=ReportData)
    name: str = STAGE

    def __post_init__(self) -> None:
        c = self.config
        self.extractor = PreferenceExtractor(self.analyst, concurrency=c.concurrency)
        self.writer = ReplyWriter(self.generator, concurrency=c.concurrency, max_tokens=c.max_tokens)
        self.moderator = Moderator(self.analyst, llm=c.llm_moderation, concurrency=c.concurrency)
        self.checklist_judge = ChecklistJudge(self.judge or self.analyst, concurrency=c.concurrency) \
            if c.mode == "on-policy" else None
        self.dedupe = PairDeduplicator(c.near_duplicate_threshold) if c.dedupe else None
        self.decontaminate = Decontaminator(evaluation_prompts(c.eval_set), c.ngram) if c.eval_set else None
        self.siblings = RankedSiblings()
        self.generated = 0
        self._unpaired_seen: set[str] = set()
        self.prompt_versions = {
            "preferences": self.extractor.prompt.id,
            "reply": self.writer.prompt.id,
            **({"judge": self.checklist_judge.prompt.id} if self.checklist_judge else {}),
        }

    # -- the stage --------------------------------------------------------------------------
    def __call__(self, batch: list[Conversation], tally: Tally) -> list[Any]:
        with tally.timed("signals"):
            outcome = self.signals(batch)
        by_conversation: dict[str, list[Signal]] = {}
        for signal in outcome.signals:
            by_conversation.setdefault(signal.conversation_id, []).append(signal)
        self._report_signals(batch, outcome.signals)
        out: list[Any] = [*outcome.signals, *outcome.issues]
        self._tally_signals(outcome, tally)

        pairs: list[PreferencePair] = []
        candidates: list[Candidate] = []
        for conversation in batch:
            signals = signals_by_turn(by_conversation.get(conversation.id, []))
            if self.config.unpaired:
                out += self._keep_unpaired(unpaired_examples(conversation, signals), tally)
            if self.config.natural:
                pairs += labelled_pairs(conversation) + corrected_pairs(conversation, signals)
                if conversation.source == "oasst":
                    pairs += self.siblings.add(conversation)
            found, drops = dissatisfied_replies(conversation, signals)
            candidates += found
            out += self._dropped(drops, tally)
        out += self._keep_pairs(pairs, tally)
        with tally.timed("preferences (LLM)"):
            out += self._generate(candidates, tally)
        return out

    def finish(self, tally: Tally) -> list[Any]:
        """The last OASST tree's ranked pairs."""
        return self._keep_pairs(self.siblings.finish(), tally) if self.config.natural else []

    # -- generated pairs ---------------------------------------------------------------
    def _generate(self, candidates: list[Candidate], tally: Tally) -> list[Any]:
        out: list[Any] = []
        todo = []
        for candidate in candidates:
            if self.decontaminate and (reason := self.decontaminate.check(candidate.prompt)):
                out.append(self._drop(candidate, "decontamination", reason, tally))
            elif self.config.max_pairs is not None and self.generated + len(todo) >= self.config.max_pairs:
                out.append(self._drop(candidate, "cap", "over --max-pairs", tally))
            else:
                todo.append(candidate)
        if not todo:
            return out
        extracted = self.extractor.extract(
            [(c.conversation.messages[: c.feedback_turns[-1] + 1], c.reply_index) for c in todo]
        )
        ready = []
        for candidate, result in zip(todo, extracted, strict=True):
            if result.value is None:
                out.append(self._drop(candidate, "preferences", f"extraction failed: {result.error}", tally))
            else:
                ready.append((candidate, result.value.preferences, result.value.checklist))
        verdicts = self.moderator.check([(last_user(c.prompt), p) for c, p, _ in ready])
        safe = []
        for (candidate, preferences, checklist), verdict in zip(ready, verdicts, strict=True):
            if verdict:
                out.append(self._drop(candidate, "moderation", verdict, tally))
            else:
                safe.append((candidate, preferences, checklist))
        if not safe:
            return out
        prompts = [c.prompt for c, _, _ in safe]
        conditioned = self.writer.write(prompts, [p for _, p, _ in safe])
        plain = self.writer.write(prompts, [None] * len(safe)) if self.checklist_judge else [None] * len(safe)
        comparisons: list[Any] = [None] * len(safe)
        if self.checklist_judge:
            both = [isinstance(w, Completion) and isinstance(p, Completion) for w, p in zip(conditioned, plain, strict=True)]
            items = [(c.prompt, w.text, p.text, checklist)
                     for ((c, _, checklist), w, p), ok in zip(zip(safe, conditioned, plain, strict=True), both, strict=True)
                     if ok]
            judged = iter(self.checklist_judge.compare_many(items))
            comparisons = [next(judged) if ok else None for ok in both]
        pairs = []
        for (candidate, preferences, checklist), reply, other, comparison in zip(
            safe, conditioned, plain, comparisons, strict=True
        ):
            if not isinstance(reply, Completion):
                out.append(self._drop(candidate, "generation", f"no chosen reply: {reply}", tally))
                continue
            metadata: dict[str, Any] = {"mode": self.config.mode}
            if self.checklist_judge:
                if not isinstance(other, Completion):
                    out.append(self._drop(candidate, "generation", f"no plain reply to compare: {other}", tally))
                    continue
                if not comparison.ok:
                    out.append(self._drop(candidate, "judge", f"judge failed: {comparison.errors}", tally))
                    continue
                if not (comparison.first > 0 and comparison.second > 0):
                    out.append(self._drop(candidate, "judge", "conditioned reply not preferred in both orders "
                                          f"(scores {comparison.first}, {comparison.second})", tally))
                    continue
                metadata.update(judge_scores=[comparison.first, comparison.second], plain_reply=other.text)
            self.generated += 1
            signal = candidate.signal
            pairs.append(
                PreferencePair(
                    id=stable_id("generated", candidate.conversation.id, candidate.reply_index),
                    kind="generated",
                    prompt=candidate.prompt,
                    chosen=reply.text,
                    rejected=candidate.rejected,
                    source=candidate.conversation.source,
                    conversation_id=candidate.conversation.id,
                    turn_index=candidate.reply_index,
                    feedback_turn=candidate.feedback_turns[0],
                    categories=list(signal.categories),
                    evidence=signal.evidence,
                    preferences=preferences,
                    checklist=list(checklist),
                    confidence=signal.confidence,
                    detector=signal.detector,
                    generator=reply.model,
                    prompt_versions={**self.prompt_versions, **({"signals": signal.prompt_version}
                                                                if signal.prompt_version else {})},
                    metadata=metadata,
                )
            )
        feedback = {(c.conversation.id, c.reply_index): c.feedback[0] for c, _, _ in safe}
        return out + self._keep_pairs(pairs, tally, feedback)

    # -- guards shared by every pair -------------------------------------------------------
    def _keep_pairs(self, pairs: Iterable[PreferencePair], tally: Tally,
                    feedback: dict[tuple[str, int], str] | None = None) -> list[Any]:
        out: list[Any] = []
        for pair in pairs:
            reason = self.decontaminate.check(pair.prompt) if self.decontaminate else None
            stage = "decontamination"
            if reason is None and self.dedupe is not None:
                reason, stage = self.dedupe.check(pair), "dedupe"
            if reason is not None:
                out.append(Dropped(conversation_id=pair.conversation_id, turn_index=pair.turn_index, kind="pair",
                                   stage=stage, reason=reason, detail=pair.kind))
                tally.add(self.name, f"pair dropped ({stage}: {reason})")
                continue
            tally.add(self.name, f"{pair.kind} pairs")
            self.report.add_pair(pair, (feedback or {}).get((pair.conversation_id, pair.turn_index)))
            out.append(pair)
        return out

    def _keep_unpaired(self, examples: list[UnpairedExample], tally: Tally) -> list[Any]:
        out: list[Any] = []
        for example in examples:
            reason = self.decontaminate.check(example.prompt) if self.decontaminate else None
            if reason is None and example.id in self._unpaired_seen:
                reason = "exact duplicate"
            if reason is not None:
                out.append(Dropped(conversation_id=example.conversation_id, turn_index=example.turn_index,
                                   kind="unpaired", stage="guards", reason=reason))
                tally.add(self.name, f"unpaired dropped ({reason})")
                continue
            self._unpaired_seen.add(example.id)
            tally.add(self.name, "unpaired " + ("desirable" if example.label else "undesirable"))
            out.append(example)
        return out

    def _drop(self, candidate: Candidate, stage: str, reason: str, tally: Tally) -> Dropped:
        tally.add(self.name, f"candidate dropped ({stage}: {_generic(reason)})")
        return Dropped(conversation_id=candidate.conversation.id, turn_index=candidate.reply_index,
                       kind="candidate", stage=stage, reason=reason)

    def _dropped(self, drops: list[Dropped], tally: Tally) -> list[Dropped]:
        for drop in drops:
            tally.add(self.name, f"candidate dropped ({drop.stage}: {drop.reason})")
        return drops

    # -- accounting ------------------------------------------------------------------------
    def _tally_signals(self, outcome: Outcome, tally: Tally) -> None:
        for signal in outcome.signals:
            tally.add("signals", f"{signal.label} turns")
        for issue in outcome.issues:
            tally.add("signals", f"issue {issue.kind}")

    def _report_signals(self, batch: list[Conversation], signals: list[Signal]) -> None:
        positions = {}
        for conversation in batch:
            for turn, _, _, position in candidate_turns(conversation):
                positions[(conversation.id, turn.index)] = position
        self.report.add_signals(signals, positions)


def _generic(reason: str) -> str:
    """A drop reason without its per-row detail, for the counts."""
    return reason.split(":")[0].split(" (")[0]


class PreferenceWriter:
    """The engine's writer for this stage: each record kind to its file, pairs to the exports."""

    def __init__(self, directory: Path, exporter: Any):
        from wildfeedback.io.records import RecordWriter

        self.path = directory
        self.exporter = exporter
        self.signals = RecordWriter(directory / "signals.parquet", Signal)
        self.issues = RecordWriter(directory / "signals.issues.jsonl", SignalIssue)
        self.pairs = RecordWriter(directory / "pairs.jsonl", PreferencePair)
        self.unpaired = RecordWriter(directory / "unpaired.jsonl", UnpairedExample)
        self.dropped = RecordWriter(directory / "dropped.jsonl", Dropped)
        self._routes = {Signal: self.signals, SignalIssue: self.issues, PreferencePair: self.pairs,
                        UnpairedExample: self.unpaired, Dropped: self.dropped}
        self.card: dict[str, Any] = {}

    def write(self, batch: list[Any]) -> None:
        for kind, writer in self._routes.items():
            rows = [r for r in batch if type(r) is kind]
            writer.write(rows)
            for row in rows:
                if kind is PreferencePair:
                    self.exporter.add_pair(row)
                elif kind is UnpairedExample:
                    self.exporter.add_unpaired(row)

    def close(self) -> None:
        for writer in self._routes.values():
            writer.close()
        self.exporter.close(self.card)

    def abort(self) -> None:
        for writer in self._routes.values():
            writer.abort()
        self.exporter.abort()
