"""Learned rubrics (SPUR, Lin et al. 2024): a team's own labelled conversations
teach the LLM what satisfaction and dissatisfaction look like in *their* product.

1. **Extract**: for each conversation with a known label (thumbs, ratings; see
   `labels.conversation_label`), the LLM names up to 3 reasons, visible in the
   conversation, why the user was satisfied (SAT) or dissatisfied (DSAT).
2. **Summarise**: the reasons of each polarity, in batches, become at most 10
   rubric items (name + description); when there are several batches, their
   items are summarised again until one list of at most 10 is left.
3. **Score**: for a conversation, the LLM says per item whether it applies and
   how strongly (1-10); overall = sum of applying SAT weights - sum of applying
   DSAT weights. Two thresholds fitted on the training conversations turn the
   score into SAT / DSAT / NEUTRAL.

The result is an ordinary rubric YAML file (with its thresholds), so the same
file also gives the LLM detector its categories.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel

from wildfeedback.llm import Backend, Sampling, call_structured, gather_bounded, run_sync, strict_schema
from wildfeedback.llm.structured import StructuredResult
from wildfeedback.prompts import load_prompt
from wildfeedback.prompts.conversation import render_messages
from wildfeedback.schema import Conversation, Signal, SignalIssue
from wildfeedback.signals.base import Outcome
from wildfeedback.signals.labels import LABELS, candidate_turns
from wildfeedback.signals.llm_detector import locate_evidence
from wildfeedback.signals.rubric import Category, Rubric, RubricError, Thresholds

DETECTOR = "rubric"
MAX_REASONS = 3
Polarity = Literal["SAT", "DSAT"]
WORDS = {"SAT": "satisfied", "DSAT": "dissatisfied"}


class Reasons(BaseModel):
    reasons: list[str]


class Item(BaseModel):
    name: str
    description: str


class Items(BaseModel):
    items: list[Item]


class ItemScore(BaseModel):
    id: str
    applies: bool
    score: float = 0
    evidence: str = ""


class Scores(BaseModel):
    items: list[ItemScore]


@dataclass
class _Calls:
    """The shared plumbing: a backend keyed per prompt version, bounded concurrency."""

    backend: Backend
    concurrency: int = 8
    max_message_chars: int = 1500
    max_messages: int = 24

    def versioned(self, prompt_id: str) -> Backend:
        return self.backend.versioned(prompt_id)

    def run(self, prompt_id: str, prompts: Sequence[str], model: type[BaseModel], max_tokens: int,
            limits: dict[str, dict[str, Any]] | None = None) -> list[StructuredResult]:
        """Structured calls, one per prompt. `limits` adds JSON-schema bounds per
        property path ("items", "items.name", ...): servers that decode under the
        schema stop where it says, while replies from lenient servers that go
        beyond are still accepted (and trimmed by the caller)."""
        backend = self.versioned(prompt_id)
        sampling = Sampling(temperature=0.0, max_tokens=max_tokens)
        schema = _bounded(strict_schema(model), limits or {})
        calls = [call_structured(backend, [{"role": "user", "content": p}], model, sampling, json_schema=schema)
                 for p in prompts]
        return run_sync(gather_bounded(calls, self.concurrency))

    def conversation(self, conversation: Conversation) -> str:
        messages = conversation.messages[-self.max_messages :]
        text = render_messages(messages, self.max_message_chars)
        hidden = len(conversation.messages) - len(messages)
        return f"[{hidden} earlier messages not shown]\n{text}" if hidden else text


def _bounded(schema: dict, limits: dict[str, dict[str, Any]]) -> dict:
    """`schema` with `limits` merged in at dotted property paths (through arrays and $refs)."""
    defs = schema.get("$defs", {})
    for path, bounds in limits.items():
        node = schema
        for name in path.split("."):
            node = node["properties"][name]
            if "items" in node and name != path.split(".")[-1]:
                node = node["items"]
            if "$ref" in node:
                node = defs[node["$ref"].rsplit("/", 1)[-1]]
        node.update(bounds)
    return schema


def _issue(conversation_id: str, kind: str, message: str, result: StructuredResult | None, prompt_id: str,
           model: str, turn: int | None = None, dropped: bool = True) -> SignalIssue:
    reply = result.text if result is not None else None
    return SignalIssue(
        conversation_id=conversation_id,
        turn_index=turn,
        detector=DETECTOR,
        kind=kind,
        message=message,
        dropped=dropped,
        reply=reply[:2000] if reply else None,
        model=model,
        prompt_version=prompt_id,
    )


# -- learning -------------------------------------------------------------------


@dataclass
class LearnReport:
    rubric: Rubric
    reasons: dict[str, list[str]]
    issues: list[SignalIssue] = field(default_factory=list)
    conversations: dict[str, int] = field(default_factory=dict)
    calls: int = 0


@dataclass
class RubricLearner(_Calls):
    max_items: int = 10
    batch_size: int = 40  # reasons per summarise call
    max_rounds: int = 4
    seed: int = 0

    def extract(self, labelled: Sequence[tuple[Conversation, Polarity]]) -> tuple[dict[str, list[str]], list[SignalIssue], int]:
        """Up to 3 reasons per conversation, pooled by polarity."""
        prompt = load_prompt("rubric_reasons")
        texts = [prompt.render(polarity_words=WORDS[p], conversation=self.conversation(c)) for c, p in labelled]
        results = self.run(prompt.id, texts, Reasons, max_tokens=200,
                           limits={"reasons": {"maxItems": MAX_REASONS}})
        pooled: dict[str, list[str]] = {"SAT": [], "DSAT": []}
        issues = []
        for (conversation, polarity), result in zip(labelled, results, strict=True):
            if result.value is None:
                issues.append(_issue(conversation.id, _kind(result), f"extract: {result.error}", result, prompt.id,
                                     self.backend.model))
                continue
            reasons = [r.strip() for r in result.value.reasons if r.strip()][:MAX_REASONS]
            if not reasons:
                issues.append(_issue(conversation.id, "empty", "extract: no reasons given", result, prompt.id,
                                     self.backend.model))
            pooled[polarity].extend(reasons)
        return pooled, issues, len(texts)

    def summarise(self, reasons: Sequence[str], polarity: Polarity) -> tuple[list[Item], list[SignalIssue], int]:
        """Reasons -> at most `max_items` items, in batches, merged round by round."""
        prompt = load_prompt("rubric_summarize")
        unique = list(dict.fromkeys(r for r in reasons if r))
        random.Random(self.seed).shuffle(unique)
        issues: list[SignalIssue] = []
        calls = 0
        lines = unique
        items: list[Item] = []
        for round_no in range(self.max_rounds):
            batches = [lines[i : i + self.batch_size] for i in range(0, len(lines), self.batch_size)]
            texts = [
                prompt.render(polarity_words=WORDS[polarity], max_items=self.max_items,
                              reasons="\n".join(f"- {r}" for r in batch))
                for batch in batches
            ]
            results = self.run(prompt.id, texts, Items, max_tokens=80 + 80 * self.max_items,
                               limits={"items": {"minItems": 1, "maxItems": self.max_items},
                                       "items.name": {"maxLength": 40}, "items.description": {"maxLength": 200}})
            calls += len(texts)
            items = []
            for number, result in enumerate(results):
                if result.value is None:
                    issues.append(_issue(f"summarise/{polarity}/round{round_no}/batch{number}", _kind(result),
                                         f"summarise: {result.error}", result, prompt.id, self.backend.model))
                    continue
                items.extend(i for i in result.value.items if i.name.strip() and i.description.strip())
            items = _unique_items(items)
            if len(batches) <= 1 or len(items) <= self.max_items:
                break
            lines = [f"{i.name}: {i.description}" for i in items]
        return items[: self.max_items], issues, calls

    def learn(self, labelled: Sequence[tuple[Conversation, Polarity]], name: str = "learned") -> LearnReport:
        reasons, issues, calls = self.extract(labelled)
        summaries: dict[str, list[Item]] = {}
        for polarity in ("SAT", "DSAT"):
            items, more, n = self.summarise(reasons[polarity], polarity)  # type: ignore[arg-type]
            issues += more
            calls += n
            if not items:
                raise RubricError(
                    f"no {polarity} rubric items: {len(reasons[polarity])} reasons extracted from "
                    f"{sum(p == polarity for _, p in labelled)} {polarity} conversations, "
                    f"{sum(1 for i in more)} summarise calls failed"
                )
            summaries[polarity] = items
        sat = [Category(name=i.name.strip(), description=i.description.strip()) for i in summaries["SAT"]]
        taken = {c.name.lower() for c in sat}
        dsat = []
        for item in summaries["DSAT"]:
            label = item.name.strip()
            if label.lower() in taken:
                label = f"{label} (DSAT)"
            taken.add(label.lower())
            dsat.append(Category(name=label, description=item.description.strip()))
        rubric = Rubric(name=name, version=1, source=f"learned by wildfeedback from {len(labelled)} labelled "
                        f"conversations with {self.backend.model}", SAT=tuple(sat), DSAT=tuple(dsat))
        counts = {p: sum(q == p for _, q in labelled) for p in ("SAT", "DSAT")}
        return LearnReport(rubric, reasons, issues, counts, calls)


def _unique_items(items: Sequence[Item]) -> list[Item]:
    seen: set[str] = set()
    out = []
    for item in items:
        key = item.name.strip().lower()
        if key not in seen:
            seen.add(key)
            out.append(item)
    return out


def _kind(result: StructuredResult) -> str:
    return result.error.kind if result.error is not None else "error"


# -- scoring --------------------------------------------------------------------


@dataclass
class ConversationScore:
    conversation_id: str
    overall: float
    applied: dict[str, float]  # item name -> weight, for the items that apply
    evidence: dict[str, tuple[int, str]]  # item name -> (turn index, the user's words)


@dataclass
class RubricScorer(_Calls):
    rubric: Rubric | None = None
    name: str = DETECTOR

    def __post_init__(self) -> None:
        if self.rubric is None:
            raise ValueError("RubricScorer needs a rubric (learn one with `wildfeedback signals learn-rubric`)")
        self.prompt = load_prompt("rubric_score")
        self.ids = {f"S{k + 1}": ("SAT", c.name) for k, c in enumerate(self.rubric.sat)}
        self.ids.update({f"D{k + 1}": ("DSAT", c.name) for k, c in enumerate(self.rubric.dsat)})

    def _text(self, conversation: Conversation) -> str:
        assert self.rubric is not None
        return self.prompt.render(
            sat_items="\n".join(f"S{k + 1}. {c.name}: {c.description}" for k, c in enumerate(self.rubric.sat)),
            dsat_items="\n".join(f"D{k + 1}. {c.name}: {c.description}" for k, c in enumerate(self.rubric.dsat)),
            conversation=self.conversation(conversation),
        )

    def score(self, conversations: Sequence[Conversation]) -> tuple[list[ConversationScore | None], list[SignalIssue], int]:
        n = len(self.ids)
        results = self.run(self.prompt.id, [self._text(c) for c in conversations], Scores,
                           max_tokens=48 + 48 * n,
                           limits={"items": {"minItems": n, "maxItems": n}, "items.id": {"enum": list(self.ids)},
                                   "items.evidence": {"maxLength": 200},
                                   "items.score": {"minimum": 0, "maximum": 10}})
        scores: list[ConversationScore | None] = []
        issues: list[SignalIssue] = []
        for conversation, result in zip(conversations, results, strict=True):
            scores.append(self._read(conversation, result, issues))
        return scores, issues, len(conversations)

    def _read(self, conversation: Conversation, result: StructuredResult, issues: list[SignalIssue]) -> ConversationScore | None:
        def issue(kind: str, message: str, dropped: bool = False, turn: int | None = None) -> None:
            issues.append(_issue(conversation.id, kind, message, result, self.prompt.id, self.backend.model, turn,
                                 dropped))

        if result.value is None:
            issue(_kind(result), f"score: {result.error}", dropped=True)
            return None
        users = [m for m in conversation.messages if m.role == "user"]
        applied: dict[str, float] = {}
        evidence: dict[str, tuple[int, str]] = {}
        seen = set()
        overall = 0.0
        for entry in result.value.items:
            key = entry.id.strip().upper()
            if key not in self.ids:
                issue("unknown_item", f"item {entry.id[:20]!r} is not in the rubric")
                continue
            if key in seen:
                issue("repeated_item", f"item {key} scored more than once; the first is kept")
                continue
            seen.add(key)
            if not entry.applies:
                continue
            polarity, name = self.ids[key]
            weight = float(min(10.0, max(1.0, entry.score)))
            applied[name] = weight
            overall += weight if polarity == "SAT" else -weight
            if entry.evidence.strip():
                found = next(((m.index, q) for m in users if (q := locate_evidence(entry.evidence, m.content))), None)
                if found is None:
                    issue("evidence_not_found", f"item {key} evidence {entry.evidence[:120]!r} is in no user turn")
                else:
                    evidence[name] = found
        missing = sorted(set(self.ids) - seen, key=lambda k: (k[0] != "S", int(k[1:])))
        if missing:
            issue("missing_item", f"items {', '.join(missing)} not scored; taken as not applying")
        return ConversationScore(conversation.id, overall, applied, evidence)

    def detect(self, conversations: Sequence[Conversation]) -> Outcome:
        """One conversation-level Signal each, on the user turn that shows it best."""
        assert self.rubric is not None
        conversations = [c for c in conversations if any(True for _ in candidate_turns(c))]
        scores, issues, calls = self.score(conversations)
        outcome = Outcome(issues=issues, calls=calls)
        polarity_of = {name: p for p, name in self.ids.values()}
        for conversation, score in zip(conversations, scores, strict=True):
            if score is None:
                continue
            label = self.rubric.thresholds.label(score.overall)
            ranked = sorted(
                ((w, n) for n, w in score.applied.items() if polarity_of[n] == label), reverse=True
            )
            quoted = next((score.evidence[n] for _, n in ranked if n in score.evidence), None)
            last_turn = [t.index for t, *_ in candidate_turns(conversation)][-1]
            outcome.signals.append(
                Signal(
                    conversation_id=conversation.id,
                    turn_index=quoted[0] if quoted else last_turn,
                    label=label,  # type: ignore[arg-type]
                    categories=[n for _, n in ranked],
                    evidence=quoted[1] if quoted else None,
                    detector=self.name,
                    model=self.backend.model,
                    prompt_version=self.prompt.id,
                    source=conversation.source,
                    metadata={"level": "conversation", "score": score.overall, "items": score.applied,
                              "rubric": self.rubric.id},
                )
            )
        return outcome


def fit_thresholds(scores: Sequence[float], gold: Sequence[str],
                   metric: Callable[[Sequence[str], Sequence[str]], float] | None = None) -> Thresholds:
    """The (dsat_below, sat_above) pair with the best weighted F1 on these conversations.

    Candidates are the midpoints between distinct scores (and beyond both ends);
    ties go to the pair closest to zero, the unfitted rule.
    """
    if metric is None:
        from sklearn.metrics import f1_score

        def metric(g: Sequence[str], p: Sequence[str]) -> float:
            return float(f1_score(g, p, labels=list(LABELS), average="weighted", zero_division=0))

    values = np.unique(np.asarray(scores, dtype=float))
    if len(values) == 0:
        return Thresholds()
    cuts = np.concatenate([[values[0] - 1], (values[:-1] + values[1:]) / 2, [values[-1] + 1]])
    best, best_key = Thresholds(), (-1.0, 0.0)
    for low in cuts:
        for high in cuts[cuts >= low]:
            rule = Thresholds(sat_above=float(high), dsat_below=float(low))
            f1 = metric(gold, [rule.label(s) for s in scores])
            key = (round(f1, 9), -abs(low) - abs(high))
            if key > best_key:
                best, best_key = rule, key
    return best


# -- the whole job ------------------------------------------------------------------


@dataclass
class LearnedRubric:
    rubric: Rubric
    learning: LearnReport
    training_scores: list[float]
    training_gold: list[str]
    issues: list[SignalIssue]
    calls: int

    def summary(self) -> dict[str, object]:
        from sklearn.metrics import f1_score

        predicted = [self.rubric.thresholds.label(s) for s in self.training_scores]
        return {
            "rubric": self.rubric.model_dump(by_alias=True),
            "conversations": len(self.training_gold),
            "labels": {label: self.training_gold.count(label) for label in LABELS},
            "reasons": {p: len(r) for p, r in self.learning.reasons.items()},
            "llm_calls": self.calls,
            "issues": len(self.issues),
            "issues_by_kind": {k: sum(i.kind == k for i in self.issues) for k in sorted({i.kind for i in self.issues})},
            "training_f1": 100 * float(f1_score(self.training_gold, predicted, labels=list(LABELS),
                                                average="weighted", zero_division=0)) if predicted else 0.0,
        }


def learn_rubric(
    inputs: Sequence[str],
    backend: Backend,
    *,
    name: str = "learned",
    max_conversations: int = 200,
    max_items: int = 10,
    seed: int = 0,
    format: str | None = None,
    concurrency: int = 8,
) -> LearnedRubric:
    """Learn a rubric from the labelled conversations in `inputs`, and fit its thresholds on them.

    Conversations with a label (`labels.conversation_label`) are sampled (seeded,
    at most `max_conversations`); SAT and DSAT ones teach the items, all of them
    (NEUTRAL too) fit the score thresholds.
    """
    from wildfeedback.io.reader import read_conversations
    from wildfeedback.signals.labels import conversation_label

    labelled = []
    for item in read_conversations(list(inputs), format=format):
        if isinstance(item, Conversation):
            label = conversation_label(item)
            if label is not None:
                labelled.append((item, label))
    if not labelled:
        raise ValueError("no conversation carries a label (thumbs, ratings): nothing to learn a rubric from")
    random.Random(seed).shuffle(labelled)
    labelled = labelled[:max_conversations]
    teaching = [(c, label) for c, label in labelled if label != "NEUTRAL"]
    learner = RubricLearner(backend, concurrency=concurrency, max_items=max_items, seed=seed)
    learning = learner.learn(teaching, name=name)  # type: ignore[arg-type]
    scorer = RubricScorer(backend, concurrency=concurrency, rubric=learning.rubric)
    scores, issues, calls = scorer.score([c for c, _ in labelled])
    scored = [(s.overall, label) for s, (_, label) in zip(scores, labelled, strict=True) if s is not None]
    thresholds = fit_thresholds([s for s, _ in scored], [g for _, g in scored])
    rubric = learning.rubric.model_copy(update={"thresholds": thresholds})
    return LearnedRubric(rubric, learning, [s for s, _ in scored], [g for _, g in scored],
                         learning.issues + issues, learning.calls + calls)
