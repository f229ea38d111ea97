"""Small models and data so that the whole suite runs in minutes on two cores."""

from __future__ import annotations

import os

import pytest
import torch
from transformers import GPT2LMHeadModel

from benchmarks.synthetic import synthetic_bars
from llmsignal.finetune.base import embedded_config, embedded_tokenizer

# one thread: tiny models gain nothing from two, and it keeps tests steady on a busy machine
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def restore_environment():
    """``main(["-q", ...])`` in-process sets variables (as the CLI should) that must not reach later tests."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory) -> str:
    """A two-layer GPT-2 with the embedded tokenizer, saved like the shipped base."""
    path = tmp_path_factory.mktemp("tiny_base")
    tokenizer = embedded_tokenizer()
    torch.manual_seed(0)
    model = GPT2LMHeadModel(embedded_config(len(tokenizer), n_embd=32, n_layer=2, n_head=2, n_positions=192))
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


@pytest.fixture()
def bars_csv(tmp_path) -> str:
    path = tmp_path / "bars.csv"
    synthetic_bars().to_csv(path)
    return str(path)


TINY_CONTEXT = 16


def tiny_entries(folder, base_path: str, methods=("lora",), bars: int = 500, prefix: str = "t", inputs: str = "close"):
    """Train each method for three steps on synthetic bars saved in ``folder``; returns (entries, split, csv)."""
    from llmsignal.data import load_bars
    from llmsignal.finetune.bars import split_bars
    from llmsignal.finetune.base import load_base
    from llmsignal.finetune.methods import make_method
    from llmsignal.finetune.train import TrainConfig
    from llmsignal.models.entries import train_entry
    from llmsignal.models.registry import Registry

    path = folder / "bars.csv"
    synthetic_bars(bars).to_csv(path)
    split = split_bars(load_bars(path), context=TINY_CONTEXT)
    base, registry = load_base(base_path), Registry(folder / "reg")
    config = TrainConfig(steps=3, batch_size=4, window=TINY_CONTEXT + 1)
    entries = {m: train_entry(split, base, make_method(m), registry, f"{prefix}-{m}", config, str(path),
                              TINY_CONTEXT, inputs=inputs)[0] for m in methods}
    return entries, split, path
