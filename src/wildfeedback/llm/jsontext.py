"""JSON in and out of model text.

Servers with constrained decoding return bare JSON, but small local models and
servers without schema support wrap it in code fences, lead with a sentence, or
trail a remark. `extract_json` finds the value anyway; `with_json_instruction`
is how a backend without constrained decoding asks for JSON in the prompt.
"""

from __future__ import annotations

import json
import re
from typing import Any

from wildfeedback.llm.base import Messages

_FENCE = re.compile(r"```[ \t]*(?:json|JSON)?[ \t]*\r?\n?(.*?)```", re.DOTALL)
_MAX_START_ATTEMPTS = 50  # bound the work on long prose with many braces
_TRAILING_COMMA = re.compile(r",(\s*[}\]])")


class NoJSONError(ValueError):
    """The text holds no parseable JSON value."""


def extract_json(text: str) -> Any:
    """The first JSON object or array in `text`: bare, fenced, or amid prose.

    Tries, in order: the whole text; each fenced block; every `{` or `[` from
    the left, decoding one value and ignoring what follows it.
    """
    stripped = text.strip()
    if not stripped:
        raise NoJSONError("the reply is empty")
    try:
        return json.loads(stripped)
    except json.JSONDecodeError:
        pass
    for block in _FENCE.findall(stripped):
        try:
            return json.loads(block.strip())
        except json.JSONDecodeError:
            continue
    decoder = json.JSONDecoder()
    # Small models often leave a trailing comma ({"a": 1,}); the lenient pass drops it.
    for candidate in (stripped, _TRAILING_COMMA.sub(r"\1", stripped)):
        starts = [m.start() for m in re.finditer(r"[{\[]", candidate)][:_MAX_START_ATTEMPTS]
        for start in starts:
            try:
                value, _ = decoder.raw_decode(candidate, start)
            except json.JSONDecodeError:
                continue
            if isinstance(value, dict | list):
                return value
    preview = stripped if len(stripped) <= 120 else stripped[:117] + "..."
    raise NoJSONError(f"no JSON object found in the reply: {preview!r}")


def schema_instruction(schema: dict[str, Any]) -> str:
    return (
        "Reply with only a JSON object that conforms to this JSON Schema, with no other text "
        "before or after it:\n" + json.dumps(schema, separators=(",", ":"), ensure_ascii=False)
    )


def describe_schema(schema: dict[str, Any]) -> str:
    """The shape `schema` asks for, in words: `"label" (one of "SAT", "DSAT"), "score" (a number)`."""
    defs = schema.get("$defs", {})

    def resolve(node: dict[str, Any]) -> dict[str, Any]:
        for _ in range(10):  # a $ref chain, not a cycle
            ref = node.get("$ref")
            if not isinstance(ref, str):
                break
            node = defs.get(ref.rsplit("/", 1)[-1], {})
        return node

    def kind(node: dict[str, Any], depth: int) -> str:
        node = resolve(node)
        if "const" in node:
            return json.dumps(node["const"])
        if "enum" in node:
            return "one of " + ", ".join(json.dumps(v) for v in node["enum"])
        for combined in ("anyOf", "oneOf"):
            if combined in node:
                return " or ".join(kind(option, depth) for option in node[combined])
        types = node.get("type")
        if isinstance(types, list):
            return " or ".join(kind({**node, "type": t}, depth) for t in types)
        if types == "object" or (types is None and "properties" in node):
            if node.get("properties") and depth < 3:
                return "an object with " + keys(node, depth + 1)
            return "an object"
        if types == "array":
            return f"a list (items: {kind(node['items'], depth)})" if node.get("items") else "a list"
        return {
            "string": "a string",
            "integer": "an integer",
            "number": "a number",
            "boolean": "true or false",
            "null": "null",
        }.get(str(types), "any JSON value")

    def keys(node: dict[str, Any], depth: int) -> str:
        required = set(node.get("required", []))
        parts = []
        for name, sub in node["properties"].items():
            note = kind(sub, depth)
            if name not in required:
                note += ", optional"
            description = resolve(sub).get("description")
            if description:
                note += f": {description}"
            parts.append(f"{json.dumps(name)} ({note})")
        return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]

    root = resolve(schema)
    if root.get("properties"):
        return "the keys " + keys(root, 1)
    return kind(root, 1)


def keys_instruction(schema: dict[str, Any]) -> str:
    return f"Answer in JSON with {describe_schema(schema)}. Reply with the JSON only."


def with_json_instruction(messages: Messages, schema: dict[str, Any], style: str = "schema") -> Messages:
    """A copy of `messages` whose last user turn also asks for JSON fitting `schema`.

    The last user turn, not the system prompt: small models follow the most
    recent instruction far more reliably. `style`: "schema" or "keys" (above).
    """
    if style not in ("schema", "keys"):
        raise ValueError(f"style must be 'schema' or 'keys', got {style!r}")
    instruction = schema_instruction(schema) if style == "schema" else keys_instruction(schema)
    out = [dict(m) for m in messages]
    for message in reversed(out):
        if message.get("role") == "user" and isinstance(message.get("content"), str):
            message["content"] = f"{message['content']}\n\n{instruction}"
            return out
    out.append({"role": "user", "content": instruction})
    return out
