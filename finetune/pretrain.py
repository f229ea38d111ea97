"""Pretrain the embedded base: a small GPT-2 learns the digit language of returns from scratch.

    >>> pretrain(Path("finetune/embedded_base"), PretrainConfig(steps=1500))  # doctest: +SKIP

The folder it writes loads like any Hugging Face model (``from_pretrained``) and
carries ``llmsignal_base.json``: the corpus series with their date ranges and
fingerprints, and the held-out loss; ``corpus_windows.npz`` holds the window
fingerprints that let a run detect evaluation bars the base has already seen.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from transformers import GPT2LMHeadModel

from llmsignal.finetune.base import BASE_INFO_FILE, CORPUS_WINDOWS_FILE, embedded_config, embedded_tokenizer
from llmsignal.finetune.codec import TOKENS_PER_VALUE, PriceCodec, TokenTable
from llmsignal.finetune.corpus import Series, bundled_series, synthetic_series, window_fingerprints
from llmsignal.finetune.train import TrainConfig, train


@dataclass(frozen=True)
class PretrainConfig:
    steps: int = 1500
    batch_size: int = 16
    window: int = 64
    lr: float = 1e-3
    seed: int = 0
    holdout: float = 0.1
    n_embd: int = 192
    n_layer: int = 4


def pretrain(out: Path, config: PretrainConfig = PretrainConfig()) -> dict:
    """Train the embedded base on the offline corpus and write it to ``out`` atomically."""
    corpus = synthetic_series(config.seed) + bundled_series()
    train_bins, val_bins = [], []
    for series in corpus:
        closes = series.closes.to_numpy()
        cut = int(len(closes) * (1 - config.holdout))
        codec = PriceCodec.fit(closes[:cut])
        train_bins.append(codec.to_bins(closes[:cut]))
        val_bins.append(codec.to_bins(closes[cut:]))
    tokenizer = embedded_tokenizer()
    torch.manual_seed(config.seed)
    model = GPT2LMHeadModel(embedded_config(len(tokenizer), n_embd=config.n_embd, n_layer=config.n_layer,
                                            n_positions=TOKENS_PER_VALUE * config.window + 64))
    result = train(model, TokenTable(tokenizer), train_bins, val_bins,
                   TrainConfig(steps=config.steps, batch_size=config.batch_size, window=config.window,
                               seed=config.seed, warmup=50, dropout=None), lr=config.lr, desc="pretrain")
    info = {"kind": "llmsignal embedded GPT-2", "config": asdict(config),
            "parameters": sum(p.numel() for p in model.parameters()),
            "heldout_loss": result.val_loss, "train_loss": result.final_loss,
            "train_seconds": result.train_seconds, "corpus": [s.describe() for s in corpus]}
    _save(out, model.cpu(), tokenizer, info, corpus)
    return info


def _save(out: Path, model: GPT2LMHeadModel, tokenizer, info: dict, corpus: list[Series]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".pretrain-", dir=out.parent))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        (staging / BASE_INFO_FILE).write_text(json.dumps(info, indent=2))
        np.savez_compressed(staging / CORPUS_WINDOWS_FILE,
                            **{s.name: window_fingerprints(s.closes.to_numpy()) for s in corpus})
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
