"""OpenAssistant message trees: one conversation per root-to-leaf path.

Each tree is `{"message_tree_id", "prompt": message}` where a message has
`message_id`, `role` (prompter/assistant), `text`, `rank` among its siblings,
`emojis` and `labels`, and nested `replies`. Ranks and labels are kept on the
messages of every path through them, so sibling preferences stay recoverable.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from wildfeedback.errors import Location, RecordError
from wildfeedback.io.formats.base import (
    RecordFormat,
    build,
    jsonable,
    language_code,
    register,
    require,
    role_of,
    text_of,
)
from wildfeedback.schema import Conversation

_LABEL_KEYS = ("emojis", "labels", "review_count", "review_result", "deleted", "synthetic")
_OWN_KEYS = ("message_id", "parent_id", "text", "role", "rank", "replies", "model_name", "created_date", "lang")


@register
class OASST(RecordFormat):
    name = "oasst"
    description = "OpenAssistant message trees (message_tree_id, prompt with nested replies)"

    def sniff(self, record: dict[str, Any]) -> bool:
        return isinstance(record.get("prompt"), dict) and "replies" in record["prompt"]

    def convert(self, record: dict[str, Any], location: Location) -> Iterable[Conversation]:
        root = require(record, "prompt", dict)
        tree_id = str(record.get("message_tree_id") or root.get("message_id") or "")
        if not tree_id:
            raise RecordError("tree has neither 'message_tree_id' nor a root 'message_id'")
        tree_metadata = jsonable({k: v for k, v in record.items() if k not in ("prompt", "message_tree_id")})
        tree_metadata["message_tree_id"] = tree_id
        for path in _paths(root, []):
            messages = [_message(node, index) for index, node in enumerate(path)]
            leaf = path[-1]
            yield build(
                {
                    "id": str(leaf.get("message_id") or f"{tree_id}/{len(messages)}"),
                    "source": "oasst",
                    "language": language_code(root.get("lang")),
                    "created_at": root.get("created_date"),
                    "messages": messages,
                    "metadata": tree_metadata,
                }
            )


def _paths(node: dict[str, Any], above: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    path = [*above, node]
    replies = node.get("replies") or []
    if not isinstance(replies, list):
        raise RecordError(f"message {node.get('message_id')}: 'replies' must be a list")
    if not replies:
        yield path
    for reply in replies:
        if not isinstance(reply, dict):
            raise RecordError(f"message {node.get('message_id')}: a reply is not an object")
        yield from _paths(reply, path)


def _message(node: dict[str, Any], index: int) -> dict[str, Any]:
    message: dict[str, Any] = {
        "role": role_of(node.get("role"), index),
        "content": text_of(node.get("text"), index, field="text"),
        "index": index,
        "id": node.get("message_id"),
        "parent_id": node.get("parent_id"),
        "model": node.get("model_name"),
        "timestamp": node.get("created_date"),
        "rank": node.get("rank"),
    }
    labels = {k: node[k] for k in _LABEL_KEYS if node.get(k) is not None}
    if labels:
        message["labels"] = jsonable(labels)
    extra = {k: v for k, v in node.items() if k not in _OWN_KEYS and k not in _LABEL_KEYS}
    if node.get("lang") is not None:
        extra["lang"] = node["lang"]
    if extra:
        message["metadata"] = jsonable(extra)
    return message
