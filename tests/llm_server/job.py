"""A cached batch job, run as its own process so a test can SIGKILL it mid-way.

    python job.py BASE_URL CACHE_PATH N CONCURRENCY

Request i carries the marker `[[key=job-i]]`, so the server counts calls per row.
Prints `DONE ok=<n> failed=<m> hits=<h>` when the whole batch has finished.
"""

from __future__ import annotations

import sys

from wildfeedback.llm import CachedBackend, OpenAICompatBackend, Request, Sampling
from wildfeedback.llm.base import Completion


def main() -> None:
    base_url, cache_path, n, concurrency = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    backend = CachedBackend(
        OpenAICompatBackend("scripted", base_url=base_url, api_key="test", timeout=10, max_retries=0),
        cache_path,
        template_version="job/1",
    )
    requests = [Request([{"role": "user", "content": f"[[key=job-{i}]] row {i}"}], Sampling()) for i in range(n)]
    outcomes = backend.complete_many_sync(requests, concurrency=concurrency)
    ok = sum(isinstance(o, Completion) for o in outcomes)
    print(f"DONE ok={ok} failed={len(outcomes) - ok} hits={backend.stats.hits}", flush=True)


if __name__ == "__main__":
    main()
