"""The log formats wildfeedback reads, registered by name (see `base.REGISTRY`)."""

from wildfeedback.io.formats import (  # noqa: F401  (importing registers them)
    hh_rlhf,
    ifllm,
    lmsys,
    native,
    oasst,
    openai_chat,
    sharegpt,
    uss,
    wildchat,
)
from wildfeedback.io.formats.base import REGISTRY, FileFormat, RecordFormat

# Detection tries record formats in this order: the most specific keys first.
DETECTION_ORDER = ("wildfeedback", "wildchat", "lmsys", "sharegpt", "hh-rlhf", "oasst", "openai")

__all__ = ["DETECTION_ORDER", "REGISTRY", "FileFormat", "RecordFormat"]
