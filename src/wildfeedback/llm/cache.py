"""A persistent response cache, so a rerun pays for nothing twice.

Every finished call is committed to SQLite the moment it returns (WAL mode, one
small transaction per row), so a job killed with SIGKILL halfway resumes
without repeating any finished call, and a rerun of a finished job makes none.

Failures are not stored, so a rerun retries them: neither a call that got no
answer (it raises, nothing is put), nor a reply its caller rejected. The cache
cannot judge a reply itself, so it stores every answer at once (resuming needs
that) and the caller takes back the ones it rejects with `Backend.discard`:
`structured.call_structured` discards every reply of a call whose JSON still did
not validate after the repair retry. Otherwise a rerun against a fixed server,
or with a fixed schema, would replay the old unusable reply for ever.

The key is the SHA-256 of canonical JSON over everything that decides the
answer: where the model is served (`Backend.endpoint`: a server's base URL; a
local model has none, its name carries a fingerprint of its weights), model,
prompt template version, messages, sampling and JSON schema. Two servers can
serve different weights under one model name, hence the endpoint. The template
version is there for changes the rendered text does not show (a new parser for
the same prompt); give each prompt template its own through
`CachedBackend.versioned`.

A `--cache` path that is not a response cache (not SQLite, or another
program's SQLite database) or cannot be opened is a `CacheError` naming the
path when the cache is opened, before any call is made.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from wildfeedback.errors import WildfeedbackError
from wildfeedback.llm.base import Backend, Completion, Messages, Sampling, Usage

_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    template_version TEXT NOT NULL,
    response TEXT NOT NULL,
    created_at REAL NOT NULL
)
"""


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def cache_key(
    model: str,
    template_version: str,
    messages: Messages,
    sampling: Sampling,
    json_schema: dict[str, Any] | None,
    endpoint: str | None = None,
) -> str:
    """`endpoint` None (a local model) leaves it out, so such keys are as before it existed."""
    payload = {
        **({"endpoint": endpoint} if endpoint is not None else {}),
        "model": model,
        "template_version": template_version,
        "messages": messages,
        "sampling": sampling.key(),
        "json_schema": json_schema,
    }
    return hashlib.sha256(canonical_json(payload).encode("utf-8")).hexdigest()


class CacheError(WildfeedbackError):
    """The response cache file cannot be used; the message names the path and what to do."""


class ResponseCache:
    """The SQLite store. One connection per instance, shared by threads under a lock.

    Several processes may share one file (WAL lets readers run beside the
    writer; writers wait up to `busy_timeout` seconds for each other).
    """

    def __init__(self, path: str | Path, busy_timeout: float = 60.0):
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: autocommit, so each put is its own committed transaction.
            self._db = sqlite3.connect(self.path, timeout=busy_timeout, isolation_level=None, check_same_thread=False)
            # sqlite3 reads the file only at the first statement: this one, so a bad
            # file is refused here, when the cache is opened, not on the first row.
            tables = {row[0] for row in self._db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if tables and "responses" not in tables:  # another program's database: never write into it
                self._db.close()
                raise CacheError(f"{self.path} is not a wildfeedback response cache (an SQLite database with "
                                 f"other tables): move it away or pass another --cache / --no-cache")
            self._db.execute("PRAGMA journal_mode=WAL")
            # In WAL mode NORMAL survives any process crash; only an OS crash or
            # power cut can lose the last commits (which are then simply redone).
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(_SCHEMA)
        except (sqlite3.Error, OSError) as error:
            raise CacheError(_describe_open_error(self.path, error)) from None

    def get(self, key: str) -> Completion | None:
        with self._lock:
            row = self._db.execute("SELECT response FROM responses WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        return Completion.from_dict({**json.loads(row[0]), "cached": True})

    def put(self, key: str, completion: Completion, *, model: str, template_version: str) -> None:
        record = completion.to_dict()
        record.pop("cached", None)
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO responses (key, model, template_version, response, created_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (key, model, template_version, canonical_json(record), time.time()),
            )

    def delete(self, key: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM responses WHERE key = ?", (key,))

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _describe_open_error(path: Path, error: sqlite3.Error | OSError) -> str:
    if getattr(error, "sqlite_errorname", "") in ("SQLITE_NOTADB", "SQLITE_CORRUPT"):
        return f"{path} is not a wildfeedback response cache (SQLite): move it away or pass another --cache / --no-cache"
    reason = (error.strerror or str(error)).lower() if isinstance(error, OSError) else str(error)
    return (f"{path}: cannot open the response cache ({reason}): check that its folder is writable and the path "
            f"is a file, or pass another --cache / --no-cache")


class CacheStats:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def count(self, hit: bool) -> None:
        with self._lock:
            if hit:
                self.hits += 1
            else:
                self.misses += 1

    def __repr__(self) -> str:
        return f"CacheStats(hits={self.hits}, misses={self.misses})"


class CachedBackend(Backend):
    """Wraps any backend: answers from the cache, else calls through and stores the answer.

    `usage` is the wrapped backend's, i.e. what was really spent; cache hits show
    in `stats` and as `Completion.cached`.
    """

    def __init__(
        self,
        backend: Backend,
        cache: ResponseCache | str | Path,
        template_version: str = "",
        *,
        stats: CacheStats | None = None,
    ):
        self.backend = backend
        self.cache = cache if isinstance(cache, ResponseCache) else ResponseCache(cache)
        self.template_version = template_version
        self.stats = stats or CacheStats()

    @property
    def model(self) -> str:  # type: ignore[override]
        return self.backend.model

    @property
    def usage(self) -> Usage:  # type: ignore[override]
        return self.backend.usage

    @property
    def endpoint(self) -> str | None:
        return self.backend.endpoint

    @property
    def cache_hits(self) -> int:
        return self.stats.hits

    def versioned(self, template_version: str) -> CachedBackend:
        """The same backend, store and stats, keyed under another prompt template version."""
        return CachedBackend(self.backend, self.cache, template_version, stats=self.stats)

    def key(self, messages: Messages, sampling: Sampling, json_schema: dict[str, Any] | None = None) -> str:
        return cache_key(self.model, self.template_version, messages, sampling, json_schema, self.endpoint)

    async def complete(
        self, messages: Messages, *, sampling: Sampling, json_schema: dict[str, Any] | None = None
    ) -> Completion:
        key = self.key(messages, sampling, json_schema)
        hit = self.cache.get(key)
        self.stats.count(hit is not None)
        if hit is not None:
            return hit
        completion = await self.backend.complete(messages, sampling=sampling, json_schema=json_schema)
        self.cache.put(key, completion, model=self.model, template_version=self.template_version)
        return completion

    def discard(self, messages: Messages, *, sampling: Sampling, json_schema: dict[str, Any] | None = None) -> None:
        """Take a stored answer back: its caller rejected it (see the module docstring)."""
        self.cache.delete(self.key(messages, sampling, json_schema))

    async def aclose(self) -> None:
        await self.backend.aclose()

    def __repr__(self) -> str:
        return f"CachedBackend({self.backend!r}, cache={str(self.cache.path)!r}, template_version={self.template_version!r})"
