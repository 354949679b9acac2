"""Start the scripted server as a real subprocess and talk to its control endpoints."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

SERVER = Path(__file__).with_name("server.py")
JOB = Path(__file__).with_name("job.py")


class ScriptedServer:
    def __init__(self, startup_timeout: float = 20.0):
        self.process = subprocess.Popen(
            [sys.executable, str(SERVER), "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        deadline = time.monotonic() + startup_timeout
        line = ""
        assert self.process.stdout is not None
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if line.startswith("PORT ") or not line:
                break
        if not line.startswith("PORT "):
            self.stop()
            raise RuntimeError(f"the scripted server did not start (got {line!r})")
        self.port = int(line.split()[1])
        self.root = f"http://127.0.0.1:{self.port}"
        self.base_url = f"{self.root}/v1"

    def _post(self, path: str, payload: dict[str, Any]) -> Any:
        request = urllib.request.Request(
            self.root + path, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def backend(self, model: str = "scripted", **options: Any) -> Any:
        """An OpenAI-compatible backend talking to this server: no retries, a 5 s timeout."""
        from wildfeedback.llm import OpenAICompatBackend

        options.setdefault("timeout", 5)
        options.setdefault("max_retries", 0)
        return OpenAICompatBackend(model, base_url=self.base_url, api_key="k", **options)

    def reset(self) -> None:
        self._post("/reset", {})

    def script(self, key: str, *steps: dict[str, Any]) -> None:
        self._post("/control", {"key": key, "script": list(steps)})

    def default(self, step: dict[str, Any]) -> None:
        self._post("/control", {"default": step})

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(self.root + "/stats", timeout=10) as response:
            return json.loads(response.read())

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
