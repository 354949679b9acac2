"""Preference data: candidates, natural pairs, guards, generation modes, on real data and
over HTTP against the scripted server (LLM answers chosen per conversation)."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys

import pytest
from llm_server.harness import ScriptedServer

from tests.conftest import shared, split
from wildfeedback.engine import Tally
from wildfeedback.io.reader import read_conversations
from wildfeedback.preferences.candidates import (
    RankedSiblings,
    corrected_pairs,
    dissatisfied_replies,
    labelled_pairs,
    signals_by_turn,
    unpaired_examples,
)
from wildfeedback.preferences.guards import Decontaminator, Moderator, PairDeduplicator, keyword_harm
from wildfeedback.preferences.pipeline import PreferenceConfig, PreferenceStage
from wildfeedback.schema import ChatTurn, Conversation, Dropped, PreferencePair, Signal, UnpairedExample
from wildfeedback.signals.base import Outcome


def chat(cid: str, *turns: str, source: str = "test") -> Conversation:
    return Conversation(id=cid, source=source, messages=[
        {"role": "user" if i % 2 == 0 else "assistant", "content": t, "index": i} for i, t in enumerate(turns)])


def signal(cid: str, turn: int, label: str, **extra) -> Signal:
    return Signal(conversation_id=cid, turn_index=turn, label=label, detector="test", **extra)


TRIP = chat("trip", "Plan a day in Rome.", "Day in Paris: Louvre, Eiffel Tower.",
            "No, I said Rome, not Paris!", "Day in Rome: Colosseum, Forum, Pantheon.",
            "Perfect, thank you!", "Enjoy!")
TRIP_SIGNALS = signals_by_turn([
    signal("trip", 2, "DSAT", categories=["Ignored"], evidence="I said Rome, not Paris", confidence=0.9),
    signal("trip", 4, "SAT", categories=["Gratitude"], evidence="thank you", confidence=0.8),
])


# -- candidates and natural pairs, by hand --------------------------------------------


def test_dissatisfied_reply_becomes_a_candidate_with_its_prompt_and_feedback():
    (candidate,), drops = dissatisfied_replies(TRIP, TRIP_SIGNALS)
    assert drops == []
    assert candidate.reply_index == 1 and candidate.feedback_turns == [2]
    assert candidate.prompt == [ChatTurn(role="user", content="Plan a day in Rome.")]
    assert candidate.rejected == "Day in Paris: Louvre, Eiffel Tower."
    assert candidate.feedback == ["No, I said Rome, not Paris!"]


def test_still_dissatisfied_next_turn_joins_the_feedback_and_bad_prompts_are_dropped():
    c = chat("x", "q", "a1", "wrong", "a2", "still wrong")
    sigs = signals_by_turn([signal("x", 2, "DSAT"), signal("x", 4, "DSAT")])
    candidates, _ = dissatisfied_replies(c, sigs)
    assert [(k.reply_index, k.feedback_turns) for k in candidates] == [(1, [2, 4]), (3, [4])]
    odd = Conversation(id="o", source="t", messages=[
        {"role": "assistant", "content": "Hi! How can I help?", "index": 0},
        {"role": "user", "content": "that is wrong", "index": 1}])
    candidates, drops = dissatisfied_replies(odd, {1: signal("o", 1, "DSAT")})
    assert candidates == [] and drops[0].reason == "prompt does not end with a user turn"


def test_unpaired_labels_and_the_corrected_pair():
    examples = unpaired_examples(TRIP, TRIP_SIGNALS)
    assert [(e.turn_index, e.label, e.completion[:10]) for e in examples] == [(1, False, "Day in Par"), (3, True, "Day in Rom")]
    (pair,) = corrected_pairs(TRIP, TRIP_SIGNALS)
    assert pair.kind == "corrected" and pair.rejected.startswith("Day in Paris") and pair.chosen.startswith("Day in Rome")
    assert [t.content for t in pair.prompt] == ["Plan a day in Rome."]
    assert [t.content for t in pair.chosen_prompt] == ["Plan a day in Rome.", "Day in Paris: Louvre, Eiffel Tower.",
                                                       "No, I said Rome, not Paris!"]  # stated honestly
    assert pair.confidence == pytest.approx(0.72)


def test_pairs_from_alternatives_and_regenerations():
    c = Conversation(id="r", source="t", messages=[
        {"role": "user", "content": "joke?", "index": 0},
        {"role": "assistant", "content": "kept joke", "index": 1, "alternatives": [{"content": "first joke"}]},
    ], events=[{"kind": "regenerate", "message_index": 1}])
    (pair,) = labelled_pairs(c)
    assert (pair.kind, pair.chosen, pair.rejected) == ("regenerated", "kept joke", "first joke")
    side = Conversation(id="s", source="t", messages=[
        {"role": "user", "content": "q", "index": 0},
        {"role": "assistant", "content": "left", "index": 1, "alternatives": [{"content": "right"}], "preferred": 1},
    ])
    (pair,) = labelled_pairs(side)
    assert (pair.kind, pair.chosen, pair.rejected) == ("pairwise", "right", "left")


def test_real_oasst_ranked_siblings():
    conversations, _ = split(read_conversations(shared("oasst", "en_100_tree.jsonl")))
    siblings = RankedSiblings()
    pairs = [p for c in conversations for p in siblings.add(c)] + siblings.finish()
    assert pairs and all(p.kind == "ranked" for p in pairs)
    assert all(p.metadata["chosen_rank"] < p.metadata["rejected_rank"] for p in pairs)
    assert len({p.id for p in pairs}) == len(pairs)  # each sibling pair once, though on many paths
    assert all(p.prompt[-1].role == "user" for p in pairs)
    again = RankedSiblings()
    assert len([p for c in conversations for p in again.add(c)] + again.finish()) == len(pairs)


def test_real_ifllm_and_hh_rlhf_side_by_side_pairs():
    ifllm, _ = split(read_conversations(shared("ifllm", "query_logs_table.csv")))
    pairs = [p for c in ifllm for p in labelled_pairs(c)]
    assert pairs and {p.kind for p in pairs} == {"pairwise"}
    hh, _ = split(read_conversations(shared("hh-rlhf", "harmless-base-test.jsonl.gz")))
    hh_pairs = [p for c in hh for p in labelled_pairs(c)]
    assert 2200 <= len(hh_pairs) <= 2312 and all(p.chosen != p.rejected for p in hh_pairs)


# -- guards ---------------------------------------------------------------------------


def test_keyword_moderation_catches_harm_and_leaves_ordinary_requests():
    assert keyword_harm("how do I make a pipe bomb at home") == "weapons"
    assert keyword_harm("write ransomware that encrypts the disk") == "malware"
    assert keyword_harm("make it shorter please") is None
    assert keyword_harm("the bomb scene in the movie was great") is None
    assert Moderator().check([("synthesize sarin", "step by step"), ("a haiku", "shorter")]) == [
        "harmful request (weapons, keyword lexicon)", None]


def pair(cid: str, prompt: str, chosen: str, rejected: str) -> PreferencePair:
    return PreferencePair(id=cid, kind="generated", prompt=[ChatTurn(role="user", content=prompt)], chosen=chosen,
                          rejected=rejected, conversation_id=cid, turn_index=1)


def test_exact_and_near_duplicate_pairs():
    dedupe = PairDeduplicator()
    long = " ".join(f"word{i}" for i in range(80))
    assert dedupe.check(pair("a", "Plan a trip " + long, "good " + long, "bad " + long)) is None
    assert dedupe.check(pair("b", "plan a  TRIP " + long, "good " + long, "bad " + long)) == "exact duplicate"
    assert dedupe.check(pair("c", "Plan a trip " + long, "good " + long, "bad! " + long)) == "near duplicate"
    assert dedupe.check(pair("d", "something else entirely", "x", "y")) is None


def test_decontamination_by_word_ngrams():
    guard = Decontaminator(["Write a poem about the sea and the moon at night, please"], n=8)
    leaked = [ChatTurn(role="user", content="Hey! write a poem about the sea and the moon at night")]
    assert guard.check(leaked) == "prompt overlaps the evaluation set (8-gram)"
    assert guard.check([ChatTurn(role="user", content="Write a poem about the mountains in spring")]) is None


def test_a_pickled_decontaminator_still_finds_overlap_in_another_process(tmp_path):
    """Another process salts Python's `hash` differently: the n-grams must not depend on it."""
    guard = Decontaminator(["Write a poem about the sea and the moon at night, please"], n=8)
    (tmp_path / "guard.pickle").write_bytes(pickle.dumps(guard))
    check = ("import pickle, sys; from wildfeedback.schema import ChatTurn; "
             "guard = pickle.loads(open(sys.argv[1], 'rb').read()); "
             "print(guard.check([ChatTurn(role='user', content='write a poem about the sea and the moon at night')]))")
    for seed in ("1", "2"):
        done = subprocess.run([sys.executable, "-c", check, str(tmp_path / "guard.pickle")], capture_output=True,
                              text=True, env={**os.environ, "PYTHONHASHSEED": seed}, timeout=120)
        assert done.stdout.strip() == "prompt overlaps the evaluation set (8-gram)", done.stderr


# -- the stage over HTTP: expert and on-policy ----------------------------------------


def stage_for(server: ScriptedServer, signals: list[Signal], **config) -> PreferenceStage:
    return PreferenceStage(signals=lambda batch: Outcome(signals=list(signals)), analyst=server.backend(),
                           generator=server.backend(), config=PreferenceConfig(**config))


def keyed(cid: str) -> Conversation:
    return chat(cid, f"[[key={cid}]] Plan a day in Rome.", "Day in Paris: Louvre.", "No, I said Rome!")


PREFS = {"content": json.dumps({"preferences": "A plan for Rome, not Paris.",
                                "checklist": ["Is it about Rome?", "Does it avoid Paris?", "Is it a day plan?"]})}


def test_expert_mode_keeps_every_generated_pair_with_provenance(server: ScriptedServer):
    conversation = keyed("e1")
    server.script("e1", PREFS, {"content": "Rome: Colosseum in the morning, Forum after lunch."})
    stage = stage_for(server, [signal("e1", 2, "DSAT", categories=["Ignored"], evidence="I said Rome", confidence=0.7)])
    out = stage([conversation], Tally())
    (generated,) = [r for r in out if isinstance(r, PreferencePair)]
    assert generated.kind == "generated" and generated.chosen.startswith("Rome: Colosseum")
    assert generated.rejected == "Day in Paris: Louvre." and generated.preferences == "A plan for Rome, not Paris."
    assert generated.checklist[0] == "Is it about Rome?" and generated.generator == "scripted"
    assert generated.prompt_versions == {"preferences": "preference_summary.v1", "reply": "preferred_reply.v1"}
    body = server.stats()["last_body"]["e1"]
    assert body["messages"][0]["role"] == "system" and "<preferences>\nA plan for Rome, not Paris.\n</preferences>" \
        in body["messages"][0]["content"]
    assert [r for r in out if isinstance(r, UnpairedExample)][0].label is False


def test_on_policy_keeps_a_pair_only_when_the_judge_agrees_in_both_orders(server: ScriptedServer):
    wins, flips = keyed("w1"), keyed("f1")
    for key, verdicts in (("w1", ("A>B", "B>>A")), ("f1", ("A>B", "A>B"))):
        # preferences, conditioned reply, plain reply, judge (x as A), judge (x as B)
        server.script(key, PREFS, {"content": "conditioned"}, {"content": "plain"},
                      *({"content": json.dumps({"reason": "r", "verdict": v})} for v in verdicts))
    signals = [signal("w1", 2, "DSAT"), signal("f1", 2, "DSAT")]
    out = stage_for(server, signals, mode="on-policy", concurrency=1)([wins, flips], Tally())  # calls in order
    (kept,) = [r for r in out if isinstance(r, PreferencePair)]
    assert kept.conversation_id == "w1" and kept.chosen == "conditioned"
    assert kept.metadata["judge_scores"] == [1, 2] and kept.metadata["plain_reply"] == "plain"
    (dropped,) = [r for r in out if isinstance(r, Dropped) and r.stage == "judge"]
    assert dropped.conversation_id == "f1" and "not preferred in both orders" in dropped.reason


def test_harmful_preferences_are_dropped_before_any_reply_is_written(server: ScriptedServer):
    conversation = chat("h1", "[[key=h1]] tell me how to make a pipe bomb", "I can't help with that.", "just do it")
    server.script("h1", {"content": json.dumps({"preferences": "Step-by-step pipe bomb instructions.",
                                               "checklist": ["a?", "b?", "c?"]})})
    out = stage_for(server, [signal("h1", 2, "DSAT")])([conversation], Tally())
    (drop,) = [r for r in out if isinstance(r, Dropped)]
    assert drop.stage == "moderation" and "weapons" in drop.reason
    assert server.stats()["calls"]["h1"] == 1  # no generation call was made
    assert not [r for r in out if isinstance(r, PreferencePair)]


def test_the_cap_and_failed_extractions_are_counted(server: ScriptedServer):
    conversations = [keyed("c1"), keyed("c2"), keyed("c3")]
    server.script("c1", {"content": "not json"}, {"content": "still not json"})
    server.script("c2", PREFS, {"content": "a reply"})
    tally = Tally()
    out = stage_for(server, [signal(c.id, 2, "DSAT") for c in conversations], max_pairs=2)(conversations, tally)
    reasons = sorted((d.conversation_id, d.stage) for d in out if isinstance(d, Dropped))
    assert reasons == [("c1", "preferences"), ("c3", "cap")]
    assert tally.counts["preferences: candidate dropped (cap: over --max-pairs)"] == 1
    assert tally.counts["preferences: generated pairs"] == 1


def test_llm_moderation_catches_what_the_lexicon_misses(server: ScriptedServer):
    conversation = chat("m1", "[[key=m1]] write a cruel poem about my coworker", "Here is a kind poem.", "No, cruel!")
    server.script("m1", {"content": json.dumps({"preferences": "A poem that humiliates a named coworker.",
                                                "checklist": ["a?", "b?", "c?"]})},
                  {"content": json.dumps({"harmful": True, "category": "harassment"})})
    out = stage_for(server, [signal("m1", 2, "DSAT")], llm_moderation=True)([conversation], Tally())
    (drop,) = [r for r in out if isinstance(r, Dropped)]
    assert (drop.stage, drop.reason) == ("moderation", "harmful request (harassment, scripted)")
    assert server.stats()["calls"]["m1"] == 2  # preferences, moderation; no reply written


def test_the_stage_decontaminates_candidates_pairs_and_unpaired_labels(server: ScriptedServer, tmp_path):
    evaluation = tmp_path / "eval.jsonl"
    evaluation.write_text(json.dumps({"prompt": [{"role": "user", "content": "Plan a day in Rome."}]}) + "\n")
    conversation = keyed("d1")
    side = Conversation(id="d2", source="t", messages=[
        {"role": "user", "content": "Plan a day in Rome.", "index": 0},
        {"role": "assistant", "content": "left", "index": 1, "alternatives": [{"content": "right"}], "preferred": 1}])
    stage = stage_for(server, [signal("d1", 2, "DSAT")], eval_set=evaluation, ngram=4)
    out = stage([conversation, side], Tally())
    drops = sorted((d.kind, d.stage) for d in out if isinstance(d, Dropped))
    assert drops == [("candidate", "decontamination"), ("pair", "decontamination"), ("unpaired", "guards")]
    assert not [r for r in out if isinstance(r, PreferencePair | UnpairedExample)]
    assert server.stats()["total"] == 0  # nothing was generated for a contaminated prompt
