"""Replace personal data in every message with placeholders.

Conversation logs are written by real people, who paste their résumés, e-mail
signatures, server logs and, now and then, their card number. None of that may
reach a training set, so each message's content (and each alternative reply's)
has its personal data replaced by a placeholder naming the kind: `[EMAIL]`,
`[PHONE]`, `[IP]`, `[CARD]`, `[NAME]`. The rest of the text is left exactly as
it was, so the conversation still reads naturally.

Each detector is tuned against false positives, because logs are full of
numbers that are not personal (years, prices, version strings, ids in code):

* e-mail: a regular expression for `local@domain.tld`;
* IP: IPv4/IPv6 shapes, kept only if `ipaddress` accepts them (so `10.0.0.1`
  is one, the version `10.0.0` and `Chrome/58.0.3029.110` are not);
* card: 13-19 digits, bare or in the printed groupings (4-4-4-4, 4-6-5, ...),
  with an issuer's prefix and length (Visa 4..., Amex 34/37 and 15 digits,
  ...) and passing the Luhn check (which one long number in ten passes);
* phone: `phonenumbers`' own matcher (US numbers, and any number written in
  international `+` form) at the strict-grouping leniency: plain `VALID` also
  accepts date ranges (`2014 - 01/2018`), timestamps and version strings,
  which the grouping check rejects; a decimal number (`718.8041667`) is not
  one, and a bare run of digits (no `+`, no separators) counts only after a
  word such as "phone" or "call", because code and JSON are full of
  ten-digit ids;
* person names: only with a real named-entity recogniser, Microsoft Presidio
  over a spaCy pipeline installed locally (`FilterConfig(ner_model=...)`, a
  package name or a directory). Nothing is ever downloaded at run time; when
  no engine is installed, names are left as they are and the stage says so.

All detectors read the original text; where their findings overlap, the one
earlier in that list wins. The counts per kind go into the conversation's
`metadata["pii_redacted"]` and into the tally.
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import phonenumbers

from wildfeedback.engine.stage import Tally
from wildfeedback.errors import NerUnavailableError
from wildfeedback.schema import Alternative, Conversation, Message

PLACEHOLDERS = {"email": "[EMAIL]", "ip": "[IP]", "card": "[CARD]", "phone": "[PHONE]", "name": "[NAME]"}
# spaCy pipelines tried, best first, when names are wanted and no model is named.
DEFAULT_NER_MODELS = ("en_core_web_lg", "en_core_web_trf", "en_core_web_md", "en_core_web_sm")
NO_NER_NOTE = "pii: names not redacted (no NER engine installed: {missing})"

Span = tuple[int, int, str]  # start, end, kind


# -- e-mail --------------------------------------------------------------------------

_EMAIL = re.compile(
    r"(?<![\w.%+-])[A-Za-z0-9][A-Za-z0-9._%+-]*@"
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+[A-Za-z]{2,}(?![\w-])"
)


def find_emails(text: str) -> Iterator[Span]:
    if "@" not in text:
        return
    for match in _EMAIL.finditer(text):
        yield match.start(), match.end(), "email"


# -- IP addresses --------------------------------------------------------------------

# The search starts at a dot (a literal: the regex engine skips to it fast, where a
# pattern starting with a digit class is tried at every position); the first octet is
# then read backwards by hand.
_IPV4_TAIL = re.compile(r"\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}(?!\w|\.[0-9])")
# Likewise an IPv6 address is looked for only where two colons are at most 4 hex digits apart.
_IPV6_HINT = re.compile(r":[0-9A-Fa-f]{0,4}:")
_HEX_OR_COLON = frozenset("0123456789abcdefABCDEF:")
_IPV6 = re.compile(
    r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:(?:[0-9]{1,3}\.){3}[0-9]{1,3}|[0-9A-Fa-f]{0,4})(?![\w:]|\.\w)"
)


def _is_word_char(char: str) -> bool:
    return char.isalnum() or char == "_"


def _is_ipv6(candidate: str) -> bool:
    # `::`, `::1` and code like `a::b` are valid addresses but not personal ones:
    # ask for a digit and at least two groups.
    groups = [group for group in re.split(r"[:.]", candidate) if group]
    if len(groups) < 2 or not any(c.isdigit() for c in candidate):
        return False
    try:
        ipaddress.IPv6Address(candidate)
    except ValueError:
        return False
    return True


def find_ips(text: str) -> Iterator[Span]:
    # IPv6 first: `::ffff:192.0.2.1` is one address, not an IPv4 one with a prefix.
    position = 0
    while hint := _IPV6_HINT.search(text, position):
        start = hint.start()
        while start > 0 and hint.start() - start < 5 and text[start - 1] in _HEX_OR_COLON:
            start -= 1
        match = _IPV6.match(text, start)
        if match and _is_ipv6(match.group()):
            yield match.start(), match.end(), "ip"
            position = match.end()
        else:
            position = hint.start() + 1
    for match in _IPV4_TAIL.finditer(text):
        start = end = match.start()
        while start > 0 and end - start < 3 and "0" <= text[start - 1] <= "9":
            start -= 1
        if start == end or (start > 0 and (text[start - 1] == "." or _is_word_char(text[start - 1]))):
            continue  # no first octet, or part of a longer number, word or version string
        try:
            ipaddress.IPv4Address(text[start : match.end()])  # octets <= 255, no leading zeros
        except ValueError:
            continue
        yield start, match.end(), "ip"


# -- where long numbers are ----------------------------------------------------------

# Cards and phone numbers have at least 7 digits, close together. Finding the lines
# that hold such a cluster is one fast scan; the costly detectors then read those
# lines only, instead of every number in a page of code.
_SEVEN_DIGITS = re.compile(r"[0-9](?:[\s().+\-/]{0,3}[0-9]){6}")


def numeric_lines(text: str) -> Iterator[tuple[int, int]]:
    """(start, end) of the runs of lines that hold 7 or more digits close together."""
    position = 0
    while match := _SEVEN_DIGITS.search(text, position):
        start = text.rfind("\n", 0, match.start()) + 1
        end = text.find("\n", match.end())
        end = len(text) if end < 0 else end
        yield start, end
        position = end


# -- payment cards -------------------------------------------------------------------

_CARD = re.compile(
    # Not inside a longer number, word or decimal; not one group of a longer row of
    # numbers ("2010 2011 2012 2013 2014" is a table header, not a card).
    r"(?<![\w.])(?<![0-9][ -])[0-9]{4}(?:"
    r"[0-9]{9,15}"  # bare, 13-19 digits
    r"|(?P<s1>[ -])[0-9]{4}(?P=s1)[0-9]{4}(?P=s1)[0-9]{1,4}(?:(?P=s1)[0-9]{1,3})?"  # 4-4-4-4(-3)
    r"|(?P<s2>[ -])[0-9]{6}(?P=s2)[0-9]{4,5}"  # 4-6-5 (Amex), 4-6-4 (Diners)
    r")(?!\w|[.,][0-9]|[ -][0-9])"
)


def luhn_ok(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if position % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


# Issuer prefixes (IIN ranges) and the lengths their numbers have: a long number that
# passes Luhn (one in ten does) but starts like no card is an id or a result, not a card.
_ISSUERS: tuple[tuple[int, int, frozenset[int]], ...] = (
    # (lowest prefix, highest prefix, lengths); prefixes compared on as many digits as they have
    (4, 4, frozenset({13, 16, 19})),  # Visa
    (51, 55, frozenset({16})),  # Mastercard
    (2221, 2720, frozenset({16})),  # Mastercard 2-series
    (34, 34, frozenset({15})),  # American Express
    (37, 37, frozenset({15})),
    (300, 305, frozenset({14, 16, 17, 18, 19})),  # Diners Club
    (36, 36, frozenset({14, 16, 17, 18, 19})),
    (38, 39, frozenset({16, 17, 18, 19})),
    (3528, 3589, frozenset({16, 17, 18, 19})),  # JCB
    (6011, 6011, frozenset({16, 17, 18, 19})),  # Discover
    (644, 649, frozenset({16, 17, 18, 19})),
    (65, 65, frozenset({16, 17, 18, 19})),
    (62, 62, frozenset({16, 17, 18, 19})),  # UnionPay
    (50, 50, frozenset(range(13, 20))),  # Maestro
    (56, 69, frozenset(range(13, 20))),
)


def issued(digits: str) -> bool:
    """Whether `digits` starts like a card of some issuer and has one of its lengths."""
    for low, high, lengths in _ISSUERS:
        if len(digits) in lengths and low <= int(digits[: len(str(low))]) <= high:
            return True
    return False


def find_cards(text: str, start: int = 0, end: int | None = None) -> Iterator[Span]:
    for match in _CARD.finditer(text, start, len(text) if end is None else end):
        digits = match.group().replace(" ", "").replace("-", "")
        if issued(digits) and len(set(digits)) > 1 and luhn_ok(digits):
            yield match.start(), match.end(), "card"


# -- phone numbers -------------------------------------------------------------------

_BARE_DIGITS = re.compile(r"[(\[]?[0-9]+[)\]]?")  # no + and no separators
_DECIMAL = re.compile(r"[0-9]+[.,][0-9]+")  # 718.8041667 is a result, not (718) 804-1667
_PHONE_CONTEXT = re.compile(
    r"(?i)(?:phone|tel|telephone|mobile|cell|call|fax|sms|text|whats\s?app|contact|number|no\.|nr\.|#|☎|📞)"
    r"[^\n\d]{0,20}$"
)


def find_phones(text: str, region: str = "US", start: int = 0, end: int | None = None) -> Iterator[Span]:
    """Phone numbers in `text[start:end]` (a whole line or more: the matcher looks one
    character past each number)."""
    window = text[start:end]
    leniency = phonenumbers.Leniency.STRICT_GROUPING
    for match in phonenumbers.PhoneNumberMatcher(window, region, leniency=leniency):
        found_at = start + match.start
        if _DECIMAL.fullmatch(match.raw_string):
            continue
        if _BARE_DIGITS.fullmatch(match.raw_string.strip()):
            # A bare run of digits is an id or a constant unless the text says it is a number to call.
            if not _PHONE_CONTEXT.search(text, max(0, found_at - 40), found_at):
                continue
        yield found_at, start + match.end, "phone"


# -- person names (optional NER engine) ----------------------------------------------


class NameFinder:
    """Person names found by Presidio over a local spaCy pipeline (never downloaded)."""

    def __init__(self, model: str):
        try:
            import spacy
            from presidio_analyzer import AnalyzerEngine
            from presidio_analyzer.nlp_engine import SpacyNlpEngine
        except ImportError as error:
            raise NerUnavailableError(
                f"redacting names needs Microsoft Presidio and spaCy ({error.name} is not installed): "
                "pip install 'wildfeedback[pii]'"
            ) from error
        if not (spacy.util.is_package(model) or Path(model).exists()):
            raise NerUnavailableError(
                f"spaCy pipeline {model!r} is not installed (neither a package nor a directory); "
                "install one (e.g. python -m spacy download en_core_web_lg) or pass ner_model=PATH"
            )
        nlp = spacy.load(model)
        if not {"ner", "entity_ruler", "span_ruler"} & set(nlp.pipe_names):
            raise NerUnavailableError(f"spaCy pipeline {model!r} has no entity recogniser (pipes: {nlp.pipe_names})")
        self.model = model
        self.language = nlp.lang
        self.max_chars = min(nlp.max_length, 100_000)
        engine = SpacyNlpEngine(models=[{"lang_code": nlp.lang, "model_name": model}])
        engine.nlp = {nlp.lang: nlp}  # loaded here, so Presidio's loader (which may download) never runs
        self._analyzer = AnalyzerEngine(nlp_engine=engine, supported_languages=[nlp.lang])

    def __call__(self, text: str) -> Iterator[Span]:
        for offset, chunk in _chunks(text, self.max_chars):
            for result in self._analyzer.analyze(text=chunk, language=self.language, entities=["PERSON"]):
                yield offset + result.start, offset + result.end, "name"


def _chunks(text: str, size: int) -> Iterator[tuple[int, str]]:
    """`text` in pieces of at most `size` characters, cut at a line break or space where possible."""
    start = 0
    while len(text) - start > size:
        end = start + size
        cut = max(text.rfind("\n", start, end), text.rfind(" ", start, end))
        end = cut + 1 if cut > start else end
        yield start, text[start:end]
        start = end
    if start < len(text):
        yield start, text[start:]


def find_default_ner_model() -> tuple[str | None, str]:
    """The best English spaCy pipeline installed as a package, or None and what is missing."""
    try:
        import presidio_analyzer  # noqa: F401
        import spacy
    except ImportError as error:
        return None, f"{error.name} is missing"
    for name in DEFAULT_NER_MODELS:
        if spacy.util.is_package(name):
            return name, ""
    return None, "no spaCy English pipeline"


# -- redaction -----------------------------------------------------------------------


def _resolve(found: list[list[Span]]) -> list[Span]:
    """Non-overlapping spans, sorted; detectors earlier in `found` win overlaps."""
    chosen: list[Span] = []
    for spans in found:
        for span in spans:
            if all(span[1] <= other[0] or span[0] >= other[1] for other in chosen):
                chosen.append(span)
    return sorted(chosen)


class PiiRedactor:
    """Replaces e-mails, IPs, card numbers, phone numbers (and names, with an NER engine)."""

    def __init__(
        self,
        names: bool | None = None,
        ner_model: str | None = None,
        phone_region: str = "US",
        stage: str = "filter",
    ):
        self.stage = stage
        self.phone_region = phone_region
        self.name_finder: NameFinder | None = None
        self.note: str | None = None
        if names is not False:
            model, missing = (ner_model, "") if ner_model else find_default_ner_model()
            if model is None:
                if names:
                    raise NerUnavailableError(
                        f"pii_names=True but no NER engine is installed ({missing}): "
                        "pip install 'wildfeedback[pii]', then install a spaCy English pipeline "
                        "(python -m spacy download en_core_web_lg) or pass ner_model=PATH to a pipeline directory"
                    )
                self.note = NO_NER_NOTE.format(missing=missing)
            else:
                # A model asked for by name (or names asked for outright) must load: errors propagate.
                self.name_finder = NameFinder(model)

    def find(self, text: str, names: bool = True) -> list[Span]:
        """Every piece of personal data in `text`, non-overlapping, in order."""
        found = [list(find_emails(text)), list(find_ips(text)), [], []]
        for start, end in numeric_lines(text):
            found[2].extend(find_cards(text, start, end))
            found[3].extend(find_phones(text, self.phone_region, start, end))
        if names and self.name_finder is not None:
            found.append(list(self.name_finder(text)))
        return _resolve(found)

    def redact(self, text: str, counts: Counter[str], names: bool = True) -> str:
        """`text` with its personal data replaced; adds what it replaced to `counts`."""
        spans = self.find(text, names) if text else []
        if not spans:
            return text
        pieces: list[str] = []
        position = 0
        for start, end, kind in spans:
            pieces.append(text[position:start])
            pieces.append(PLACEHOLDERS[kind])
            counts[kind] += 1
            position = end
        pieces.append(text[position:])
        return "".join(pieces)

    def _wants_names(self, conversation: Conversation) -> bool:
        # The NER pipeline knows one language; on text in another it finds nonsense.
        finder = self.name_finder
        return finder is not None and (
            conversation.language is None or conversation.language.split("-")[0].lower() == finder.language
        )

    def redact_conversation(self, conversation: Conversation) -> tuple[Conversation, Counter[str]]:
        counts: Counter[str] = Counter()
        names = self._wants_names(conversation)
        messages: list[Message] = []
        changed = False
        for message in conversation.messages:
            update: dict[str, Any] = {}
            content = self.redact(message.content, counts, names)
            if content != message.content:
                update["content"] = content
            alternatives: list[Alternative] = []
            for alternative in message.alternatives:
                text = self.redact(alternative.content, counts, names)
                alternatives.append(
                    alternative if text == alternative.content else alternative.model_copy(update={"content": text})
                )
            if any(new is not old for new, old in zip(alternatives, message.alternatives, strict=True)):
                update["alternatives"] = alternatives
            if update:
                changed = True
                message = message.model_copy(update=update)
            messages.append(message)
        if not changed:
            return conversation, counts
        metadata = {**conversation.metadata, "pii_redacted": dict(sorted(counts.items()))}
        return conversation.model_copy(update={"messages": messages, "metadata": metadata}), counts

    def __call__(self, batch: list[Conversation], tally: Tally) -> list[Conversation]:
        if self.note is not None:
            tally.add(self.stage, self.note)  # once per run, on the first batch
            self.note = None
        out: list[Conversation] = []
        for conversation in batch:
            conversation, counts = self.redact_conversation(conversation)
            for kind, n in sorted(counts.items()):
                tally.add(self.stage, f"pii: {kind}", n)
            if counts:
                tally.add(self.stage, "pii: conversations redacted")
            out.append(conversation)
        return out
