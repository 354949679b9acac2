"""A scripted OpenAI-compatible HTTP server for the LLM layer's tests, and helpers to run it."""
