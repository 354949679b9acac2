"""The ingest filters: turns, language, dedupe and PII redaction, alone and as one stage."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import pytest

from wildfeedback.engine.stage import Tally
from wildfeedback.filters import FilterConfig, FilterStage, NerUnavailableError, filter_stage
from wildfeedback.filters import pii as pii_module
from wildfeedback.filters.dedupe import Deduplicator
from wildfeedback.filters.pii import PiiRedactor, luhn_ok
from wildfeedback.schema import Conversation

# -- helpers -------------------------------------------------------------------------


def conversation(cid: str, *turns: str, language: str | None = None, **extra: Any) -> Conversation:
    """A conversation alternating user / assistant, starting with the user."""
    messages = [
        {"role": "user" if i % 2 == 0 else "assistant", "content": text, "index": i} for i, text in enumerate(turns)
    ]
    return Conversation.model_validate(
        {"id": cid, "source": "test", "language": language, "messages": messages, **extra}
    )


def counts(tally: Tally) -> dict[str, int]:
    return dict(tally.counts)


VOCABULARY = (
    "the a model user reply answer question code python data train feedback good bad "
    "because when while after before never always often maybe explain write list table "
    "function value error fix test run file read line word number time day people city"
).split()


def prose(seed: int, words: int = 300) -> str:
    rng = random.Random(seed)
    return " ".join(rng.choice(VOCABULARY) for _ in range(words))


def redact(text: str) -> tuple[str, dict[str, int]]:
    found: Counter[str] = Counter()
    out = PiiRedactor(names=False).redact(text, found)
    return out, dict(found)


# -- config and composition ----------------------------------------------------------


def test_config_active_and_stage_name() -> None:
    assert not FilterConfig().active
    assert not FilterConfig(languages=[], pii_names=True).active
    assert FilterConfig(languages=["en"]).active
    assert FilterConfig(min_user_turns=2).active
    assert FilterConfig(dedupe=True).active
    assert FilterConfig(redact_pii=True, pii_names=False).active
    stage = filter_stage(
        FilterConfig(languages=["en"], min_user_turns=2, dedupe=True, redact_pii=True, pii_names=False)
    )
    assert isinstance(stage, FilterStage)
    assert stage.name == "filter"
    assert [type(step).__name__ for step in stage.steps] == [
        "MinUserTurns",
        "LanguageFilter",
        "Deduplicator",
        "PiiRedactor",
    ]


def test_config_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="min_user_turns"):
        FilterConfig(min_user_turns=-1)
    with pytest.raises(ValueError, match="near_duplicate_threshold"):
        FilterConfig(near_duplicate_threshold=1.5)
    with pytest.raises(ValueError, match="unknown language"):
        filter_stage(FilterConfig(languages=["no such language at all"]))


def test_empty_batch_passes_through() -> None:
    stage = filter_stage(
        FilterConfig(languages=["en"], min_user_turns=1, dedupe=True, redact_pii=True, pii_names=False)
    )
    assert stage([], Tally()) == []


# -- min user turns ------------------------------------------------------------------


def test_min_user_turns_drops_short_conversations() -> None:
    one = conversation("one", "hi", "hello")
    two = conversation("two", "hi", "hello", "how are you?", "fine")
    three = conversation("three", "a", "b", "c", "d", "e")
    tally = Tally()
    kept = filter_stage(FilterConfig(min_user_turns=2))([one, two, three], tally)
    assert [c.id for c in kept] == ["two", "three"]
    assert counts(tally) == {"filter: fewer than 2 user turns": 1}


# -- language ------------------------------------------------------------------------

FRENCH = conversation(
    "fr",
    "Bonjour, pouvez-vous m'expliquer comment fonctionne la photosynthèse chez les plantes ? "
    "Je voudrais comprendre le rôle de la lumière et de la chlorophylle.",
    "Bien sûr ! La photosynthèse est le processus par lequel les plantes transforment la lumière "
    "du soleil en énergie chimique, grâce à la chlorophylle contenue dans leurs feuilles.",
)
ENGLISH = conversation(
    "en",
    "Could you explain how photosynthesis works in plants? I would like to understand the role "
    "of light and of chlorophyll.",
    "Of course! Photosynthesis is the process by which plants turn sunlight into chemical energy, "
    "thanks to the chlorophyll in their leaves.",
)


def test_language_detected_and_filtered() -> None:
    tally = Tally()
    kept = filter_stage(FilterConfig(languages=["en"]))([FRENCH, ENGLISH], tally)
    assert [c.id for c in kept] == ["en"]
    assert kept[0].language == "en"
    assert kept[0].metadata == {"language_detected": True}
    assert ENGLISH.language is None  # the input is not changed: the stage returns a copy
    assert counts(tally) == {"filter: language fr not in en": 1, "filter: language detected": 2}


def test_language_given_by_the_source_is_trusted() -> None:
    labelled = ENGLISH.model_copy(update={"id": "labelled", "language": "de"})
    regional = FRENCH.model_copy(update={"id": "regional", "language": "fr-CA"})
    tally = Tally()
    kept = filter_stage(FilterConfig(languages=["French", "en"]))([labelled, regional], tally)
    assert kept == [regional]  # kept as it was: no copy, no "language_detected"
    assert counts(tally) == {"filter: language de not in fr, en": 1}


def test_short_prompt_is_detected_with_the_reply() -> None:
    # "hello" alone is not reliably English to a classifier; the reply settles it.
    short = conversation(
        "short", "hello", "Hello! How can I help you today? Ask me anything about your code or your writing."
    )
    kept = filter_stage(FilterConfig(languages=["en"]))([short], Tally())
    assert [c.language for c in kept] == ["en"]


def test_language_unknown_without_text() -> None:
    empty = conversation("empty", "   ", "")
    tally = Tally()
    assert filter_stage(FilterConfig(languages=["en"]))([empty], tally) == []
    assert counts(tally) == {"filter: language unknown not in en": 1}


# -- dedupe --------------------------------------------------------------------------


def test_exact_duplicates_ignore_case_and_whitespace() -> None:
    first = conversation("first", "What is  MinHash?", "A sketch\nfor Jaccard similarity.")
    copy = conversation("copy", "what is minhash?", "a   sketch for jaccard similarity. ")
    other_roles = Conversation.model_validate(
        {
            "id": "roles",
            "source": "test",
            "messages": [
                {"role": "system", "content": "What is MinHash?", "index": 0},
                {"role": "assistant", "content": "A sketch for Jaccard similarity.", "index": 1},
            ],
        }
    )
    tally = Tally()
    kept = filter_stage(FilterConfig(dedupe=True))([first, copy, other_roles], tally)
    assert [c.id for c in kept] == ["first", "roles"]
    assert counts(tally) == {"filter: exact duplicate": 1}


def test_near_duplicates_one_word_changed() -> None:
    question, answer = prose(1), prose(2)
    original = conversation("original", question, answer)
    words = answer.split()
    words[150] = "zebra"
    edited = conversation("edited", question, " ".join(words))
    different = conversation("different", prose(3), prose(4))
    same_question = conversation("same question", question, prose(5))  # half shared: Jaccard ~0.33
    tally = Tally()
    kept = filter_stage(FilterConfig(dedupe=True))([original, edited, different, same_question], tally)
    assert [c.id for c in kept] == ["original", "different", "same question"]
    assert counts(tally) == {"filter: near duplicate": 1}


def test_dedupe_state_spans_batches_and_first_wins() -> None:
    a, b, c = (conversation(name, prose(seed), prose(seed + 100)) for name, seed in (("a", 10), ("b", 20), ("c", 30)))
    a_again = a.model_copy(update={"id": "a again"})
    stage = filter_stage(FilterConfig(dedupe=True))
    tally = Tally()
    assert [x.id for x in stage([a, b], tally)] == ["a", "b"]
    assert [x.id for x in stage([a_again, c, b], tally)] == ["c"]
    assert counts(tally) == {"filter: exact duplicate": 2}
    # A fresh stage has a fresh memory.
    assert [x.id for x in filter_stage(FilterConfig(dedupe=True))([a_again], Tally())] == ["a again"]


def test_near_duplicate_threshold_is_configurable() -> None:
    question = prose(7, 100)
    words = question.split()
    for position in range(0, 100, 10):  # 10 words of 100 changed: Jaccard ~0.4
        words[position] = "zebra"
    pair = [conversation("x", question), conversation("y", " ".join(words))]
    assert len(filter_stage(FilterConfig(dedupe=True))(pair, Tally())) == 2
    loose = filter_stage(FilterConfig(dedupe=True, near_duplicate_threshold=0.2))(pair, Tally())
    assert [c.id for c in loose] == ["x"]


def test_short_and_wordless_conversations() -> None:
    dedupe = Deduplicator()
    # Fewer words than a shingle: one shingle of all the words.
    assert dedupe.check(conversation("s1", "hi there")) is None
    assert dedupe.check(conversation("s2", "hi there", "hello")) is None
    assert dedupe.check(conversation("s3", "HI  there")) == "exact duplicate"
    # No words at all: only exact copies can be found.
    assert dedupe.check(conversation("w1", "   ")) is None
    assert dedupe.check(conversation("w2", "", "  ")) is None


# -- PII: each kind, and its near misses ---------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected", "found"),
    [
        ("Write to jane.doe+logs@mail.example.co.uk today.", "Write to [EMAIL] today.", {"email": 1}),
        ("Call (415) 555-2671 after 5.", "Call [PHONE] after 5.", {"phone": 1}),
        ("Call 415-555-2671 or 415.555.2671", "Call [PHONE] or [PHONE]", {"phone": 2}),
        ("London office: +44 20 7946 0958.", "London office: [PHONE].", {"phone": 1}),
        ("my phone: 4155552671", "my phone: [PHONE]", {"phone": 1}),
        ("ssh root@10.0.0.1 -p 22", "ssh root@[IP] -p 22", {"ip": 1}),
        ("server at 192.168.1.20.", "server at [IP].", {"ip": 1}),
        ("host 2001:db8::ff00:42:8329 is up", "host [IP] is up", {"ip": 1}),
        ("mapped ::ffff:192.0.2.1 here", "mapped [IP] here", {"ip": 1}),
        ("Card: 4111 1111 1111 1111, exp 12/27", "Card: [CARD], exp 12/27", {"card": 1}),
        ("card 4111-1111-1111-1111", "card [CARD]", {"card": 1}),
        ('"number": "4242424242424242"', '"number": "[CARD]"', {"card": 1}),
        ("amex 3782 822463 10005 ok", "amex [CARD] ok", {"card": 1}),
        ("mastercard 5555555555554444", "mastercard [CARD]", {"card": 1}),
    ],
)
def test_pii_is_redacted(text: str, expected: str, found: dict[str, int]) -> None:
    assert redact(text) == (expected, found)


@pytest.mark.parametrize(
    "text",
    [
        "Card 4111 1111 1111 1112 fails the Luhn check.",
        "id 4111111111111112",
        "Upgrade to version 10.0.0 now.",
        "Chrome/58.0.3029.110 Safari/537.36",
        "Released in 2024, for $1,299.99 (or 1299 dollars).",
        "Population: 8,336,817 people.",
        "let hash = 2166136261;",  # a ten-digit constant is not a phone number
        "ids = [2147484671, 3]",
        "08/2014 - 01/2018 and 2023-03-17 11:52:00.205743-0400",
        "Year 2010 2011 2012 2013 2014 2015",
        "1.2.3.4.5 and 256.1.1.1 and 12:30:45 and std::vector and ::1",
        "timestamp 1700000000000 ms",
        "Result: 281474976710654",  # passes Luhn, but no issuer's numbers start with 28 and have 15 digits
        "bonus = 718.8041667 (rounded)",  # a decimal, not (718) 804-1667
        "user@localhost and @decorator",
    ],
)
def test_near_misses_are_left_alone(text: str) -> None:
    assert redact(text) == (text, {})


def test_luhn() -> None:
    assert luhn_ok("4111111111111111")
    assert luhn_ok("378282246310005")
    assert not luhn_ok("4111111111111112")


def test_overlapping_findings_are_replaced_once() -> None:
    # The phone-looking local part belongs to the e-mail address.
    assert redact("mail 4155552671@sms.example.com") == ("mail [EMAIL]", {"email": 1})


# -- PII: on conversations, with the tally -------------------------------------------


def test_pii_stage_redacts_messages_and_alternatives() -> None:
    source = Conversation.model_validate(
        {
            "id": "c1",
            "source": "test",
            "metadata": {"kept": 1},
            "messages": [
                {"role": "user", "content": "I am bob@example.com, call 415-555-2671.", "index": 0},
                {
                    "role": "assistant",
                    "content": "Noted, I will write to bob@example.com.",
                    "index": 1,
                    "alternatives": [
                        {"content": "Your card 4111 1111 1111 1111 is saved."},
                        {"content": "Nothing personal here."},
                    ],
                },
            ],
        }
    )
    clean = conversation("c2", "What is 2 + 2?", "4, in 2024 as ever.")
    tally = Tally()
    out = filter_stage(FilterConfig(redact_pii=True, pii_names=False))([source, clean], tally)
    redacted, untouched = out
    assert untouched is clean
    assert [m.content for m in redacted.messages] == [
        "I am [EMAIL], call [PHONE].",
        "Noted, I will write to [EMAIL].",
    ]
    assert [a.content for a in redacted.messages[1].alternatives] == [
        "Your card [CARD] is saved.",
        "Nothing personal here.",
    ]
    assert redacted.metadata == {"kept": 1, "pii_redacted": {"card": 1, "email": 2, "phone": 1}}
    assert source.messages[0].content == "I am bob@example.com, call 415-555-2671."  # input untouched
    assert counts(tally) == {
        "filter: pii: email": 2,
        "filter: pii: phone": 1,
        "filter: pii: card": 1,
        "filter: pii: conversations redacted": 1,
    }


def test_names_not_redacted_without_an_engine_is_noted_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pii_module, "find_default_ner_model", lambda: (None, "presidio_analyzer is missing"))
    stage = filter_stage(FilterConfig(redact_pii=True))
    tally = Tally()
    stage([conversation("a", "Ada Lovelace wrote this.")], tally)
    stage([conversation("b", "Grace Hopper wrote that.")], tally)
    assert counts(tally) == {
        "filter: pii: names not redacted (no NER engine installed: presidio_analyzer is missing)": 1
    }


def test_names_required_without_an_engine_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pii_module, "find_default_ner_model", lambda: (None, "presidio_analyzer is missing"))
    with pytest.raises(NerUnavailableError, match="pii_names=True"):
        filter_stage(FilterConfig(redact_pii=True, pii_names=True))
    # Never asked for: no error, no note.
    tally = Tally()
    filter_stage(FilterConfig(redact_pii=True, pii_names=False))([conversation("a", "hi")], tally)
    assert counts(tally) == {}


def test_a_named_ner_model_that_is_not_there_is_an_error(tmp_path: Any) -> None:
    pytest.importorskip("presidio_analyzer")
    with pytest.raises(NerUnavailableError, match="not installed"):
        filter_stage(FilterConfig(redact_pii=True, ner_model=str(tmp_path / "no-such-pipeline")))


# -- PII: person names through Presidio and a local spaCy pipeline -------------------


@pytest.fixture
def person_pipeline(tmp_path: Any) -> str:
    pytest.importorskip("presidio_analyzer")
    spacy = pytest.importorskip("spacy")
    nlp = spacy.blank("en")
    ruler = nlp.add_pipe("entity_ruler")
    ruler.add_patterns(
        [
            {"label": "PERSON", "pattern": [{"LOWER": "ada"}, {"LOWER": "lovelace"}]},
            {"label": "PERSON", "pattern": "Grace Hopper"},
        ]
    )
    path = tmp_path / "person-pipeline"
    nlp.to_disk(path)
    return str(path)


def test_names_redacted_with_presidio(person_pipeline: str) -> None:
    german = conversation("de", "Grace Hopper hat das geschrieben.", language="de")
    english = Conversation.model_validate(
        {
            "id": "en",
            "source": "test",
            "messages": [
                {"role": "user", "content": "Ask Ada Lovelace (ada@example.com) or Grace Hopper.", "index": 0},
                {
                    "role": "assistant",
                    "content": "Ada will answer.",
                    "index": 1,
                    "alternatives": [{"content": "ada lovelace will answer."}],
                },
            ],
        }
    )
    tally = Tally()
    stage = filter_stage(FilterConfig(redact_pii=True, pii_names=True, ner_model=person_pipeline))
    out_en, out_de = stage([english, german], tally)
    assert out_en.messages[0].content == "Ask [NAME] ([EMAIL]) or [NAME]."
    assert out_en.messages[1].content == "Ada will answer."  # a first name alone is not in the pipeline
    assert out_en.messages[1].alternatives[0].content == "[NAME] will answer."
    assert out_en.metadata["pii_redacted"] == {"email": 1, "name": 3}
    # The pipeline is English: a German conversation is not given to it.
    assert out_de is german
    assert counts(tally) == {"filter: pii: email": 1, "filter: pii: name": 3, "filter: pii: conversations redacted": 1}


# -- all filters as one stage --------------------------------------------------------


def test_all_filters_in_order() -> None:
    long_question = prose(40)
    french = [FRENCH.messages[0].content, FRENCH.messages[1].content, "Merci beaucoup !", "De rien."]
    batch = [
        conversation("short", "hello"),  # dropped first: one user turn
        conversation("french", *french),  # two user turns, then dropped for its language
        conversation("kept", "Please email me at eve@example.org, thanks.", "Sure.", long_question, "Done."),
        conversation("dupe", "please email me at eve@example.org, thanks.", "sure.", long_question, "done."),
    ]
    tally = Tally()
    stage = filter_stage(
        FilterConfig(languages=["en"], min_user_turns=2, dedupe=True, redact_pii=True, pii_names=False)
    )
    kept = stage(batch, tally)
    assert [c.id for c in kept] == ["kept"]
    assert kept[0].messages[0].content == "Please email me at [EMAIL], thanks."
    assert kept[0].language == "en"
    assert kept[0].metadata == {"language_detected": True, "pii_redacted": {"email": 1}}
    assert counts(tally) == {
        "filter: fewer than 2 user turns": 1,
        "filter: language detected": 3,
        "filter: language fr not in en": 1,
        "filter: exact duplicate": 1,
        "filter: pii: email": 1,
        "filter: pii: conversations redacted": 1,
    }
