"""Keep conversations in the wanted languages, detecting a language where none is given.

Many logs (ShareGPT among them) carry no language at all, and a preference set
meant for one language is spoiled by conversations in another. Where the
source named the language we trust it; where it did not, we detect it from the
user's own words (what the user wrote decides the language of the exchange),
reading only the first couple of thousand characters: plenty for a classifier
and cheap on very long conversations. A prompt of a few words ('hello',
'continue') is too short to classify, so then the replies are read as well. The detected code is written back into the
record, marked in `metadata["language_detected"]`, so later stages need not
detect it again and readers can tell a guess from a label.
"""

from __future__ import annotations

from collections.abc import Iterable

from wildfeedback import languages as language_codes
from wildfeedback.engine.stage import Tally
from wildfeedback.schema import Conversation

DEFAULT_SAMPLE_CHARS = 2000
SHORT_SAMPLE = 200  # characters of user text below which the replies are read too


def base_code(code: str) -> str:
    """'pt-BR' -> 'pt', 'EN' -> 'en': records and configs compare on the base ISO code."""
    return code.strip().replace("_", "-").split("-")[0].lower()


def wanted_codes(languages: Iterable[str]) -> tuple[str, ...]:
    """The config's languages as ISO codes ('English' is accepted for 'en'); unknown names are an error."""
    codes: list[str] = []
    for name in languages:
        code = language_codes.to_code(name)
        if not code:
            raise ValueError(f"unknown language {name!r}: give an ISO 639-1 code such as 'en'")
        if code not in codes:
            codes.append(code)
    return tuple(codes)


def _joined(conversation: Conversation, roles: tuple[str, ...], limit: int) -> str:
    parts: list[str] = []
    size = 0
    for message in conversation.messages:
        if size >= limit:
            break
        if message.role in roles and message.content.strip():
            parts.append(message.content[: limit - size])
            size += len(parts[-1]) + 1
    return "\n".join(parts).strip()


def sample_text(conversation: Conversation, limit: int = DEFAULT_SAMPLE_CHARS) -> str:
    """What detection reads: the first `limit` characters of the user's turns.

    A short sample ('hello', 'continue', 'add pdf') is detected as anything at
    all (Breton, Welsh, Afrikaans...), so below `SHORT_SAMPLE` characters the
    replies are read too: they are nearly always in the user's language.
    """
    text = _joined(conversation, ("user",), limit)
    if len(text) < SHORT_SAMPLE:
        more = _joined(conversation, ("assistant", "system", "tool"), limit - len(text))
        text = f"{text}\n{more}".strip()
    return text


class LanguageFilter:
    """Keep conversations whose language (given or detected) is one of `languages`."""

    def __init__(self, languages: Iterable[str], stage: str = "filter", sample_chars: int = DEFAULT_SAMPLE_CHARS):
        self.codes = wanted_codes(languages)
        if not self.codes:
            raise ValueError("the language filter needs at least one language")
        self.stage = stage
        self.sample_chars = sample_chars
        self._wanted = ", ".join(self.codes)

    def with_language(self, conversation: Conversation) -> Conversation:
        """The conversation with `language` set: as given, or detected (a copy, marked as detected)."""
        if conversation.language:
            return conversation
        text = sample_text(conversation, self.sample_chars)
        if not text:
            return conversation  # nothing to detect from: stays unknown
        return conversation.model_copy(
            update={
                "language": language_codes.detect(text),
                "metadata": {**conversation.metadata, "language_detected": True},
            }
        )

    def __call__(self, batch: list[Conversation], tally: Tally) -> list[Conversation]:
        kept: list[Conversation] = []
        for conversation in batch:
            had_language = bool(conversation.language)
            conversation = self.with_language(conversation)
            if not had_language and conversation.language:
                tally.add(self.stage, "language detected")
            code = base_code(conversation.language) if conversation.language else None
            if code in self.codes:
                kept.append(conversation)
            else:
                tally.add(self.stage, f"language {code or 'unknown'} not in {self._wanted}")
        return kept
