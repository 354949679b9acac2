"""Readers and writers for conversation logs."""

from wildfeedback.io.formats import REGISTRY as FORMATS
from wildfeedback.io.reader import read_conversations
from wildfeedback.io.writers import open_writer

__all__ = ["FORMATS", "open_writer", "read_conversations"]
