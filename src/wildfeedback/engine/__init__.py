"""How stages run: `LocalExecutor` streams batches on one machine."""

from wildfeedback.engine.local import LocalExecutor, OnError, RunReport
from wildfeedback.engine.stage import Stage, Tally

__all__ = ["LocalExecutor", "OnError", "RunReport", "Stage", "Tally"]
