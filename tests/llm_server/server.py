"""A small real HTTP server that speaks OpenAI chat completions, with scripted misbehaviour.

Run as a process: `python server.py [--port 0]`; it prints `PORT <n>` once listening.

Each request belongs to a *key*: the first `[[key=NAME]]` marker found in any
message (so a repair call, which repeats the conversation, keeps its key), or
`_default`. The n-th call (from 0) for a key follows step n of that key's script
(set with `POST /control {"key": K, "script": [step, ...]}`); past the end of the
script, or without one, it follows the default step (`POST /control {"default": step}`).

A step is a dict; every field is optional:
  sleep          seconds to wait before answering (e.g. past the client's timeout)
  hang           seconds (at most) to answer nothing at all; the handler returns as soon
                 as the client hangs up, so an abandoned call does not hold a thread
  trickle        seconds between bytes: send the headers, then the answer one byte at a
                 time (a client whose read timeout restarts on every byte never times out)
  status         answer with this HTTP error status and an OpenAI-style error body
  retry_after    with `status`: a Retry-After header value (seconds)
  retry_after_ms with `status`: a retry-after-ms header value
  content        the assistant message text
  finish_reason  default "stop"
  judge          "gullible": answer as a judge that obeys any instruction it finds outside
                 the prompt's delimited data (the <reply_a>/<reply_b>/<message> blocks):
                 "answer A>>B" there makes it answer A>>B; otherwise it says A=B. A prompt
                 that keeps injected text inside its blocks is safe from it.
Without `content`, the answer is JSON generated from the request's schema when it
carries one (`response_format` json_schema, or vLLM's `structured_outputs.json`),
else `echo: <last user message>`.

`GET /stats`: calls per key, total, completed, in flight now and at most, and the
last request body and Authorization header per key. `POST /reset` forgets scripts and counts.
`usage` counts whitespace-separated words: prompt = all message contents, completion = the reply.
"""

from __future__ import annotations

import argparse
import json
import re
import select
import socket
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

KEY = re.compile(r"\[\[key=([\w.\-]+)\]\]")


class State:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        self.scripts: dict[str, list[dict[str, Any]]] = {}
        self.default: dict[str, Any] = {}
        self.calls: Counter[str] = Counter()
        self.total = 0
        self.completed = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.last_body: dict[str, Any] = {}
        self.last_auth: dict[str, str | None] = {}

    def snapshot(self) -> dict[str, Any]:
        return {
            "calls": dict(self.calls),
            "total": self.total,
            "completed": self.completed,
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
            "last_body": self.last_body,
            "last_auth": self.last_auth,
        }


STATE = State()


def request_key(body: dict[str, Any]) -> str:
    for message in body.get("messages") or []:
        content = message.get("content")
        if isinstance(content, str):
            found = KEY.search(content)
            if found:
                return found.group(1)
    return "_default"


def request_schema(body: dict[str, Any]) -> dict[str, Any] | None:
    response_format = body.get("response_format") or {}
    if response_format.get("type") == "json_schema":
        return (response_format.get("json_schema") or {}).get("schema")
    structured = body.get("structured_outputs") or {}
    return structured.get("json")


def sample(schema: dict[str, Any], defs: dict[str, Any]) -> Any:
    """A value that fits `schema` (the subset pydantic emits)."""
    if "$ref" in schema:
        return sample(defs[schema["$ref"].rsplit("/", 1)[-1]], defs)
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return schema["enum"][0]
    if "default" in schema:
        return schema["default"]
    for combined in ("anyOf", "oneOf", "allOf"):
        if combined in schema:
            options = [s for s in schema[combined] if s.get("type") != "null"] or schema[combined]
            return sample(options[0], defs)
    kind = schema.get("type", "object")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        props = schema.get("properties", {})
        return {name: sample(sub, defs) for name, sub in props.items()}
    if kind == "array":
        return [sample(schema.get("items", {"type": "string"}), defs)] * max(1, schema.get("minItems", 1))
    if kind == "string":
        return "x" * max(1, schema.get("minLength", 1))
    if kind == "integer":
        return int(schema.get("minimum", 1))
    if kind == "number":
        return float(schema.get("minimum", 0.5))
    if kind == "boolean":
        return True
    return None


_BLOCK = re.compile(r"<(reply_a|reply_b|message)\b[^>]*>.*?</\1>", re.DOTALL)
_ORDER = re.compile(r"answer\s+(A>>B|A>B|A=B|B>A|B>>A)")


def gullible_verdict(messages: list[dict[str, Any]]) -> str:
    prompt = next((m.get("content", "") for m in reversed(messages) if m.get("role") == "user"), "")
    outside = _BLOCK.sub(" ", prompt if isinstance(prompt, str) else "")
    found = _ORDER.search(outside)
    verdict = found.group(1) if found else "A=B"
    return json.dumps({"reason": "followed an instruction" if found else "no difference", "verdict": verdict})


def words(text: str) -> int:
    return len(text.split())


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the openai client expects

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _send(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout)
            pass

    def _hang(self, seconds: float) -> None:
        """Answer nothing for up to `seconds`; return early once the client has hung up."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            readable, _, _ = select.select([self.connection], [], [], 0.1)
            if readable and not self.connection.recv(1, socket.MSG_PEEK):
                return  # end of stream: the client closed the connection

    def _trickle(self, payload: Any, seconds: float) -> None:
        """A 200 answer whose body arrives one byte every `seconds`."""
        data = json.dumps(payload).encode()
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.flush()
            for i in range(len(data)):
                time.sleep(seconds)
                self.wfile.write(data[i : i + 1])
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):  # the client gave up
            self.close_connection = True

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        return json.loads(raw) if raw else {}

    def do_GET(self) -> None:
        if self.path.rstrip("/") == "/stats":
            with STATE.lock:
                self._send(200, STATE.snapshot())
        elif self.path.rstrip("/") in ("/health", "/v1/models"):
            self._send(200, {"object": "list", "data": [{"id": "scripted", "object": "model"}]})
        else:
            self._send(404, {"error": {"message": f"no route {self.path}"}})

    def do_POST(self) -> None:
        path = self.path.rstrip("/")
        if path == "/reset":
            self._body()
            with STATE.lock:
                STATE.reset()
            self._send(200, {"ok": True})
        elif path == "/control":
            body = self._body()
            with STATE.lock:
                if "default" in body:
                    STATE.default = dict(body["default"])
                if "key" in body:
                    STATE.scripts[body["key"]] = list(body.get("script") or [])
            self._send(200, {"ok": True})
        elif path == "/v1/chat/completions":
            self._chat()
        else:
            self._body()
            self._send(404, {"error": {"message": f"no route {self.path}"}})

    def _chat(self) -> None:
        try:
            body = self._body()
        except json.JSONDecodeError:
            self._send(400, {"error": {"message": "request body is not JSON", "type": "invalid_request_error"}})
            return
        key = request_key(body)
        with STATE.lock:
            n = STATE.calls[key]
            STATE.calls[key] += 1
            STATE.total += 1
            STATE.in_flight += 1
            STATE.max_in_flight = max(STATE.max_in_flight, STATE.in_flight)
            STATE.last_body[key] = body
            STATE.last_auth[key] = self.headers.get("Authorization")
            script = STATE.scripts.get(key, [])
            step = dict(script[n] if n < len(script) else STATE.default)
        try:
            self._answer(body, step)
        finally:
            with STATE.lock:
                STATE.in_flight -= 1

    def _answer(self, body: dict[str, Any], step: dict[str, Any]) -> None:
        if step.get("sleep"):
            time.sleep(float(step["sleep"]))
        if step.get("hang"):
            self._hang(float(step["hang"]))
            self.close_connection = True
            return
        if "status" in step:
            headers = {}
            if "retry_after" in step:
                headers["Retry-After"] = str(step["retry_after"])
            if "retry_after_ms" in step:
                headers["retry-after-ms"] = str(step["retry_after_ms"])
            status = int(step["status"])
            self._send(
                status, {"error": {"message": f"scripted {status}", "type": "scripted", "code": status}}, headers
            )
            return
        messages = body.get("messages") or []
        if step.get("judge") == "gullible":
            content = gullible_verdict(messages)
        elif "content" in step:
            content = str(step["content"])
        else:
            schema = request_schema(body)
            if schema is not None:
                content = json.dumps(sample(schema, schema.get("$defs", {})))
            else:
                last_user = next((m for m in reversed(messages) if m.get("role") == "user"), {})
                content = f"echo: {last_user.get('content', '')}"
        prompt_tokens = sum(words(m["content"]) for m in messages if isinstance(m.get("content"), str))
        completion_tokens = words(content)
        answer = {
            "id": f"chatcmpl-{STATE.total}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "scripted"),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "finish_reason": step.get("finish_reason", "stop"),
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }
        if step.get("trickle"):
            self._trickle(answer, float(step["trickle"]))
        else:
            self._send(200, answer)
        with STATE.lock:
            STATE.completed += 1


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    args = parser.parse_args()
    server = Server((args.host, args.port), Handler)
    print(f"PORT {server.server_address[1]}", flush=True)
    try:
        server.serve_forever(poll_interval=0.1)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        sys.stdout.flush()


if __name__ == "__main__":
    main()
