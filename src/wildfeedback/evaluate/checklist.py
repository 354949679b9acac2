"""`evaluate checklist`: a candidate model against a baseline, judged with the users' own checklists.

For every held-out item, both models reply to the prompt; the judge compares the
two replies in both orders against the item's checklist (`judge.ChecklistJudge`:
disagreement between the orders is a tie), WildBench's length penalty turns a
slight win by a much longer reply into a tie, and the win / tie / loss rates get
bootstrap 95% CIs. Optionally each reply is also scored alone (1-10 against the
checklist, WB-Score rescaled). Items the judge could not score are counted, with
the reason, never dropped silently.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from wildfeedback.evaluate.heldout import EvalItem
from wildfeedback.evaluate.judge import LABEL_OF_SCORE, ChecklistJudge
from wildfeedback.evaluate.stats import bootstrap_ci, penalise, rates_with_ci, wb_score
from wildfeedback.llm import Backend, Completion, Sampling, call_structured, gather_bounded, run_sync
from wildfeedback.preferences.generate import ReplyWriter
from wildfeedback.prompts import load_prompt
from wildfeedback.prompts.conversation import as_data, neutralise, render_messages
from wildfeedback.schema import Message


class SingleScore(BaseModel):
    reason: str = Field(default="", max_length=600)
    score: int = Field(ge=1, le=10)


@dataclass
class ChecklistEvaluation:
    candidate: Backend
    baseline: Backend
    judge: Backend
    length_penalty: int = 500  # characters; -1 switches the penalty off
    single: bool = False
    max_tokens: int = 512
    concurrency: int = 8
    resamples: int = 2000
    seed: int = 0

    def run(self, items: Sequence[EvalItem]) -> dict[str, Any]:
        prompts = [i.prompt for i in items]
        replies = {}
        for side, backend in (("candidate", self.candidate), ("baseline", self.baseline)):
            writer = ReplyWriter(backend, concurrency=self.concurrency, max_tokens=self.max_tokens)
            replies[side] = writer.write(prompts, [None] * len(items))
        judge = ChecklistJudge(self.judge, concurrency=self.concurrency)
        both = [isinstance(c, Completion) and isinstance(b, Completion)
                for c, b in zip(replies["candidate"], replies["baseline"], strict=True)]
        comparisons = iter(judge.compare_many([
            (item.prompt, c.text, b.text, item.checklist)
            for item, c, b, ok in zip(items, replies["candidate"], replies["baseline"], both, strict=True) if ok
        ]))
        rows, scores, failures = [], [], []
        for item, candidate, baseline, ok in zip(items, replies["candidate"], replies["baseline"], both, strict=True):
            row: dict[str, Any] = {"id": item.id, "cluster": item.cluster}
            if not ok:
                problem = candidate if not isinstance(candidate, Completion) else baseline
                row.update(score=None, error=f"no reply: {problem}")
                failures.append(row["error"])
                scores.append(None)
                rows.append(row)
                continue
            comparison = next(comparisons)
            raw = comparison.score
            score = None if raw is None else penalise(raw, len(candidate.text), len(baseline.text), self.length_penalty)
            row.update(candidate=candidate.text, baseline=baseline.text, first=comparison.first,
                       second=comparison.second, raw_score=raw, score=score,
                       verdict=None if score is None else LABEL_OF_SCORE[score],
                       length_penalised=raw is not None and score != raw, reasons=list(comparison.reasons))
            if score is None:
                row["error"] = "; ".join(e for e in comparison.errors if e)
                failures.append(row["error"])
            scores.append(score)
            rows.append(row)
        result: dict[str, Any] = {
            "candidate": self.candidate.model,
            "baseline": self.baseline.model,
            "judge": self.judge.model,
            "items": len(items),
            "length_penalty": self.length_penalty,
            "pairwise": rates_with_ci(scores, resamples=self.resamples, seed=self.seed),
            "length_penalised": sum(1 for r in rows if r.get("length_penalised")),
            "failures": {"count": len(failures), "reasons": _counted(failures)},
            "prompt_versions": {"judge": judge.prompt.id},
            "rows": rows,
        }
        if self.single:
            result["single"] = self._single(items, replies)
        return result

    def _single(self, items: Sequence[EvalItem], replies: dict[str, list[Any]]) -> dict[str, Any]:
        prompt = load_prompt("checklist_score")
        backend = self.judge.versioned(prompt.id)
        sampling = Sampling(temperature=0.0, max_tokens=256)
        out: dict[str, Any] = {"prompt_version": prompt.id, "rescale": "(score - 5) * 2"}
        for side in ("candidate", "baseline"):
            jobs = [(item, reply) for item, reply in zip(items, replies[side], strict=True)
                    if isinstance(reply, Completion)]
            calls = [call_structured(backend, [{"role": "user", "content": _single_text(prompt, item, reply.text)}],
                                     SingleScore, sampling) for item, reply in jobs]
            results = run_sync(gather_bounded(calls, self.concurrency))
            values = [wb_score(r.value.score) for r in results if r.value is not None]
            out[side] = {
                "n": len(values),
                "unscored": len(items) - len(values),
                "wb_score": float(np.mean(values)) if values else None,
                "wb_score_ci": bootstrap_ci(values, resamples=self.resamples, seed=self.seed),
                "raw_mean": float(np.mean([v / 2 + 5 for v in values])) if values else None,
            }
        return out


def _single_text(prompt: Any, item: EvalItem, reply: str) -> str:
    messages = [Message(role=t.role, content=t.content, index=i) for i, t in enumerate(item.prompt)]
    return prompt.render(conversation=render_messages(messages, 3000), reply=as_data(reply, 3000),
                         checklist="\n".join(f"- {neutralise(c)}" for c in item.checklist))


def _counted(reasons: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for reason in reasons:
        key = reason.split(":")[0][:80]
        counts[key] = counts.get(key, 0) + 1
    return counts
