"""Drop repeated conversations: exact copies, then near copies. First occurrence wins.

Logs repeat themselves: the same share posted twice, the same prompt template
run by many users, a conversation re-exported with one word fixed. Repeats
over-weight whatever they contain in the training data, so only the first
occurrence is kept.

Exact duplicates are found by a hash of the conversation's (role, content)
sequence after normalising case and whitespace: cheap, and certain.

Near duplicates are found with MinHash LSH (`datasketch`): each conversation's
user turns and replies become a set of word 5-grams ("shingles"; words are
split at whitespace and lower-cased, punctuation stays on its word), MinHash
summarises the set in `num_perm` numbers whose agreement estimates the Jaccard
similarity of two sets, and LSH finds the earlier conversations likely to be
similar without comparing against every one of them. LSH only proposes
candidates; a candidate counts as a near duplicate when the estimated Jaccard
similarity of the two signatures reaches the threshold.

Speed: hashing millions of shingles one by one in Python is the slow part of
MinHash, so each distinct word is hashed once (crc32, cached) and the hashes of
the 5-grams are combined with numpy; datasketch then permutes them in one
vectorised `update_batch`.

State lives in the object for the whole run (across batches), so a
deduplicator must see every batch: in an executor that maps batches in
parallel processes each process only dedupes what it sees. Memory grows with
the number of unique conversations: it keeps hashes only, never text (a
16-byte digest, the 64 numbers of the signature and LSH's band keys: about
2.3 KB per unique conversation measured on ShareGPT, so ~2.3 GB for a million),
plus a cache of word hashes capped at half a million words.
"""

from __future__ import annotations

import hashlib
import zlib

import numpy as np
from datasketch import MinHash, MinHashLSH

from wildfeedback.engine.stage import Tally
from wildfeedback.schema import Conversation

_SEED = 1
_SCHEME = "affine32"
_CHUNK = 1 << 16  # shingles per update_batch: bounds the (shingles x num_perm) matrix
_MIX = np.uint64(0x9E3779B97F4A7C15)  # odd multiplier combining word hashes into a shingle hash
_MAX_CACHED_WORDS = 500_000


NEAR_ROLES = ("user", "assistant")  # near duplicates compare the user's turns and the replies


def fingerprint(conversation: Conversation) -> tuple[bytes, list[str]]:
    """The exact-duplicate digest of the (role, content) sequence, case and whitespace
    normalised, and the words near-duplicate detection compares (split once for both)."""
    digest = hashlib.blake2b(digest_size=16)
    near_words: list[str] = []
    for message in conversation.messages:
        words = message.content.lower().split()  # punctuation stays on its word
        digest.update(f"{message.role}\x00{' '.join(words)}\x01".encode())
        if message.role in NEAR_ROLES:
            near_words.extend(words)
    return digest.digest(), near_words


class _WordHashes(dict[str, int]):
    """word -> 32-bit crc32, computed once per distinct word (a missing key computes itself)."""

    def __missing__(self, word: str) -> int:
        if len(self) >= _MAX_CACHED_WORDS:
            self.clear()
        value = self[word] = zlib.crc32(word.encode())
        return value


class Deduplicator:
    """Drops exact and near duplicates of conversations it has already seen, across calls."""

    def __init__(
        self,
        threshold: float = 0.8,
        num_perm: int = 64,
        shingle_words: int = 5,
        stage: str = "filter",
    ):
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"near_duplicate_threshold must be in (0, 1], not {threshold}")
        if shingle_words < 1:
            raise ValueError(f"shingle_words must be >= 1, not {shingle_words}")
        self.threshold = threshold
        self.num_perm = num_perm
        self.shingle_words = shingle_words
        self.stage = stage
        self._seen: set[bytes] = set()
        self._lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
        # LSH key i -> signature of the i-th kept conversation: just the uint32 hash values,
        # which is all a LeanMinHash would keep too.
        self._signatures: list[np.ndarray] = []
        self._permutations = MinHash(num_perm=num_perm, seed=_SEED, scheme=_SCHEME).permutations
        self._words = _WordHashes()

    # -- near duplicates -------------------------------------------------------------

    def shingle_hashes(self, words: list[str]) -> np.ndarray:
        """32-bit hashes of the word n-grams of `words` (one shingle if there are fewer words).
        Repeated shingles are left in: MinHash ignores them, and removing them costs more."""
        if not words:
            return np.empty(0, dtype=np.uint32)
        hashes = np.array(list(map(self._words.__getitem__, words)), dtype=np.uint64)
        n = min(self.shingle_words, len(hashes))
        count = len(hashes) - n + 1
        combined = hashes[:count].copy()
        for offset in range(1, n):
            combined = combined * _MIX + hashes[offset : offset + count]  # wraps mod 2^64, as meant
        folded = (combined >> np.uint64(32)) ^ (combined & np.uint64(0xFFFFFFFF))
        return folded.astype(np.uint32)

    def signature(self, words: list[str]) -> MinHash | None:
        shingles = self.shingle_hashes(words)
        if not len(shingles):
            return None
        minhash = MinHash(
            num_perm=self.num_perm, seed=_SEED, hashfunc=int, permutations=self._permutations, scheme=_SCHEME
        )
        for start in range(0, len(shingles), _CHUNK):
            minhash.update_batch(shingles[start : start + _CHUNK].tolist())
        return minhash

    def _near_duplicate(self, minhash: MinHash) -> bool:
        for key in self._lsh.query(minhash):
            agreement = np.count_nonzero(self._signatures[key] == minhash.hashvalues) / self.num_perm
            if agreement >= self.threshold:
                return True
        return False

    # -- the filter ------------------------------------------------------------------

    def check(self, conversation: Conversation) -> str | None:
        """Why `conversation` repeats an earlier one ('exact duplicate', 'near duplicate'),
        or None, in which case it is remembered as seen."""
        return self.check_fingerprint(*fingerprint(conversation))

    def check_fingerprint(self, key: bytes, words: list[str]) -> str | None:
        """`check` for any record reduced to an exact-duplicate digest and the words
        near-duplicate detection compares (preference pairs use it too)."""
        if key in self._seen:
            return "exact duplicate"
        self._seen.add(key)
        minhash = self.signature(words)
        if minhash is None:
            return None  # no words to compare: only exact copies can be found
        if self._near_duplicate(minhash):
            return "near duplicate"
        self._lsh.insert(len(self._signatures), minhash, check_duplication=False)
        self._signatures.append(minhash.hashvalues)
        return None

    def __call__(self, batch: list[Conversation], tally: Tally) -> list[Conversation]:
        kept: list[Conversation] = []
        for conversation in batch:
            reason = self.check(conversation)
            if reason is None:
                kept.append(conversation)
            else:
                tally.add(self.stage, reason)
        return kept
