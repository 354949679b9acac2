"""Text features of a side-by-side pair: what a text-only reward model sees.

Two kinds, both as left-minus-right differences (so a column means "how much
more the left reply has of it"):

* the student encoder's view: all-MiniLM-L6-v2 embeddings of each reply (its
  head and tail, `REPLY_CHARS`, as the student detector reads replies) and their
  cosine with the query;
* the reply's form, cheap to count and known to sway readers: length (log
  characters), lines, bullet items, numbered items, bold spans, headings.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import numpy as np

from wildfeedback.prompts.conversation import shorten
from wildfeedback.signals.encoder import Encoder, shared_encoder
from wildfeedback.signals.student import REPLY_CHARS

FORM = ("log_chars", "lines", "bullets", "numbered", "bold", "headings")
_BULLET = re.compile(r"^\s*[-*•]\s", re.M)
_NUMBERED = re.compile(r"^\s*\d+[.)]\s", re.M)
_HEADING = re.compile(r"^\s*#{1,6}\s", re.M)


def form_features(text: str) -> list[float]:
    """log(1 + characters), non-empty lines, bullet items, numbered items, bold spans (`**...**`), headings."""
    return [
        math.log1p(len(text)),
        float(sum(1 for line in text.splitlines() if line.strip())),
        float(len(_BULLET.findall(text))),
        float(len(_NUMBERED.findall(text))),
        float(text.count("**") // 2),
        float(len(_HEADING.findall(text))),
    ]


def form_names() -> list[str]:
    return [f"text_{name}_diff" for name in FORM] + ["text_query_cosine_diff"]


def text_features(queries: Sequence[str], lefts: Sequence[str], rights: Sequence[str],
                  encoder: Encoder | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(form features with the query-cosine difference, embedding differences), one row per pair."""
    encoder = encoder or shared_encoder()
    q = encoder.encode(list(queries))
    a = encoder.encode([shorten(t, REPLY_CHARS) for t in lefts])
    b = encoder.encode([shorten(t, REPLY_CHARS) for t in rights])
    form = np.array([np.subtract(form_features(x), form_features(y)) for x, y in zip(lefts, rights, strict=True)],
                    dtype=np.float64).reshape(len(lefts), len(FORM))
    cosine = np.einsum("ij,ij->i", q, a) - np.einsum("ij,ij->i", q, b)
    return np.column_stack([form, cosine]), (a - b).astype(np.float64)
