"""The persistent response cache: reruns make no calls, failures are retried, a killed job resumes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from llm_server.harness import JOB, ScriptedServer
from pydantic import BaseModel

from wildfeedback.llm import (
    CachedBackend,
    Completion,
    Failure,
    OpenAICompatBackend,
    Request,
    ResponseCache,
    Sampling,
    cache_key,
    call_structured_sync,
    make_backend,
)

SRC = Path(__file__).resolve().parents[1] / "src"


def cached(server: ScriptedServer, path: Path, version: str = "t/1") -> CachedBackend:
    inner = OpenAICompatBackend("scripted", base_url=server.base_url, api_key="k", timeout=5, max_retries=0)
    return CachedBackend(inner, path, version)


def requests(n: int, prefix: str = "r") -> list[Request]:
    return [Request([{"role": "user", "content": f"[[key={prefix}{i}]] row {i}"}]) for i in range(n)]


def test_rerun_makes_zero_calls(server: ScriptedServer, tmp_path: Path) -> None:
    db = tmp_path / "cache.sqlite"
    first = cached(server, db).complete_many_sync(requests(5), concurrency=3)
    assert all(isinstance(o, Completion) and not o.cached for o in first)
    assert server.stats()["total"] == 5

    again = cached(server, db)  # a fresh connection, as a new process would open
    second = again.complete_many_sync(requests(5), concurrency=3)
    assert server.stats()["total"] == 5, "a finished job's rerun calls nothing"
    assert all(isinstance(o, Completion) and o.cached for o in second)
    assert [o.text for o in second] == [o.text for o in first]
    assert [o.prompt_tokens for o in second] == [o.prompt_tokens for o in first]
    assert (again.stats.hits, again.stats.misses, again.usage.calls) == (5, 0, 0)


def test_failures_are_not_cached(server: ScriptedServer, tmp_path: Path) -> None:
    server.script("r1", {"status": 400})
    db = tmp_path / "cache.sqlite"
    outcomes = cached(server, db).complete_many_sync(requests(3))
    assert isinstance(outcomes[1], Failure) and isinstance(outcomes[0], Completion)
    rerun = cached(server, db).complete_many_sync(requests(3))
    assert all(isinstance(o, Completion) for o in rerun)
    assert [o.cached for o in rerun] == [True, False, True]
    assert server.stats()["calls"] == {"r0": 1, "r1": 2, "r2": 1}


def test_key_covers_model_version_messages_sampling_schema(server: ScriptedServer, tmp_path: Path) -> None:
    messages = [{"role": "user", "content": "[[key=k]] hi"}]
    base = cache_key("m", "v1", messages, Sampling(), None)
    assert base == cache_key("m", "v1", [{"content": "[[key=k]] hi", "role": "user"}], Sampling(), None)
    variants = {
        cache_key("m2", "v1", messages, Sampling(), None),
        cache_key("m", "v2", messages, Sampling(), None),
        cache_key("m", "v1", [{"role": "user", "content": "hi"}], Sampling(), None),
        cache_key("m", "v1", messages, Sampling(temperature=0.5), None),
        cache_key("m", "v1", messages, Sampling(seed=1), None),
        cache_key("m", "v1", messages, Sampling(), {"type": "object"}),
    }
    assert base not in variants and len(variants) == 6

    backend = cached(server, tmp_path / "c.sqlite")
    backend.complete_sync(messages)
    backend.versioned("t/2").complete_sync(messages)
    backend.complete_sync(messages, sampling=Sampling(max_tokens=7))
    backend.complete_sync(messages)
    assert server.stats()["calls"]["k"] == 3
    assert (backend.stats.hits, backend.stats.misses) == (1, 3)


def test_structured_calls_are_cached_including_the_repair(server: ScriptedServer, tmp_path: Path) -> None:
    class Out(BaseModel):
        answer: int

    server.script("s", {"content": "the answer is forty-two"})
    db = tmp_path / "c.sqlite"
    messages = [{"role": "user", "content": "[[key=s]] answer"}]
    first = call_structured_sync(cached(server, db), messages, Out)
    assert first.ok and first.repaired
    second = call_structured_sync(cached(server, db), messages, Out)
    assert second.value == first.value and all(c.cached for c in second.completions)
    assert server.stats()["calls"]["s"] == 2


def test_concurrent_use_from_threads_and_tasks(server: ScriptedServer, tmp_path: Path) -> None:
    store = ResponseCache(tmp_path / "c.sqlite")
    inner = OpenAICompatBackend("scripted", base_url=server.base_url, api_key="k", timeout=5, max_retries=0)
    backend = CachedBackend(inner, store, "t/1")  # one store shared by three threads' event loops
    errors: list[BaseException] = []

    def worker(prefix: str) -> None:
        try:
            outcomes = backend.complete_many_sync(requests(20, prefix), concurrency=8)
            assert all(isinstance(o, Completion) for o in outcomes)
        except BaseException as error:  # surfaced below
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(p,)) for p in ("a", "b", "c")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert len(store) == 60 and server.stats()["total"] == 60


def test_make_backend_with_cache(server: ScriptedServer, tmp_path: Path) -> None:
    backend = make_backend("openai:scripted", server.base_url, api_key="k", cache=tmp_path / "c.sqlite")
    assert isinstance(backend, CachedBackend)
    backend.complete_sync([{"role": "user", "content": "[[key=mb]] x"}])
    backend.complete_sync([{"role": "user", "content": "[[key=mb]] x"}])
    assert server.stats()["calls"]["mb"] == 1 and backend.usage.calls == 1


def run_job(server: ScriptedServer, db: Path, n: int, concurrency: int, **popen) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")]))}
    return subprocess.Popen(
        [sys.executable, str(JOB), server.base_url, str(db), str(n), str(concurrency)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        **popen,
    )


def test_killed_job_resumes_without_repeating_finished_calls(server: ScriptedServer, tmp_path: Path) -> None:
    n, concurrency = 40, 4
    server.default({"sleep": 0.1})
    db = tmp_path / "job.sqlite"

    job = run_job(server, db, n, concurrency)
    deadline = time.monotonic() + 60
    while server.stats()["completed"] < 12:
        assert job.poll() is None, f"the job ended before it could be killed: {job.communicate()}"
        assert time.monotonic() < deadline, "the job made no progress"
        time.sleep(0.02)
    time.sleep(0.05)  # into the next wave, so calls are in flight when it dies
    job.send_signal(signal.SIGKILL)
    job.wait(timeout=10)
    assert job.returncode == -signal.SIGKILL
    at_kill = server.stats()
    assert at_kill["total"] < n, "the job was killed mid-way"
    time.sleep(0.3)  # let the server finish the requests the dead client left behind

    rerun = run_job(server, db, n, concurrency)
    out, err = rerun.communicate(timeout=60)
    assert rerun.returncode == 0, err
    assert f"DONE ok={n} failed=0" in out
    hits = int(out.split("hits=")[1])
    after = server.stats()
    # Finished calls were committed and are not repeated: only the ones in flight
    # at the kill (at most `concurrency`) may be asked twice.
    assert n <= after["total"] <= n + concurrency
    assert sorted(after["calls"]) == sorted(f"job-{i}" for i in range(n))
    repeated = [key for key, count in after["calls"].items() if count > 1]
    assert len(repeated) <= concurrency and all(after["calls"][k] == 2 for k in repeated)
    assert hits >= at_kill["completed"] - concurrency and hits + (after["total"] - at_kill["total"]) == n
    print(
        f"killed after {at_kill['total']} calls ({at_kill['completed']} answered); rerun: {hits} hits, "
        f"{after['total'] - at_kill['total']} calls; repeated: {len(repeated)}"
    )

    final = run_job(server, db, n, concurrency)
    out, err = final.communicate(timeout=60)
    assert f"DONE ok={n} failed=0 hits={n}" in out, err
    assert server.stats()["total"] == after["total"], "a finished job's rerun calls nothing"
