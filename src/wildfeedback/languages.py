"""Language names and codes, and detection where a source gives none.

Sources disagree: WildChat and LMSYS say "English", OASST says "en". Records
carry ISO 639 codes; the source's own name stays in metadata.
"""

from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=4096)
def to_code(name: str) -> str | None:
    """'English' -> 'en', 'pt-BR' -> 'pt', 'Chinese' -> 'zh'; None for 'unknown' and the like."""
    import langcodes

    text = name.strip()
    try:
        return langcodes.standardize_tag(text).split("-")[0].lower()
    except (ValueError, LookupError):
        pass
    try:
        return langcodes.find(text).language
    except LookupError:
        return None


def detect(text: str) -> str:
    """The most likely ISO 639-1 code of a text (py3langid: a model shipped in the package)."""
    import py3langid

    return py3langid.classify(text)[0]
