"""Errors of the filter stage, importable without loading the filters themselves."""

from wildfeedback.errors import WildfeedbackError


class NerUnavailableError(WildfeedbackError, RuntimeError):
    """Names must be redacted (pii_names=True or a named ner_model) but no engine can be loaded."""
