"""Which part of a bottleneck adapter keeps it from a planted AR(1) signal that LoRA finds? Prints one table.

    .venv/bin/python benchmarks/adapter_ablation.py [--steps 300] [--variants adapter,lora-init,...] [--seeds 0]

Every variant trains from the same frozen embedded base on the same planted series (``synthetic.ar1_bars``:
phi = -0.6, 3,000 hourly bars; the best forecaster calls direction about 70% of the time) for the same number of
steps and learning-rate schedule as the race's "steps" budget; only the adapter changes, one knob at a time from
the shipped ``adapter`` (Pfeiffer, reduction 16, relu, down projection at std 0.01 and up at zero): its width,
placement, initialisation, non-linearity, own layer norm, the blocks it sits in and the learning rate. LoRA and
full fine-tuning are the references. Columns: trainable parameters, the validation loss at the end (nats per
token; the frozen base's is printed first), directional accuracy on the test bars (never seen in training) and
the seconds it took.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

if __package__ in (None, ""):  # run as a script: the repo root holds the benchmarks package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.synthetic import ar1_bars
from llmsignal.backtests.metrics import direction
from llmsignal.finetune.bars import Split, split_bars
from llmsignal.finetune.base import Base, load_base
from llmsignal.finetune.bottleneck import BottleneckConfig, add_bottlenecks
from llmsignal.finetune.codec import PriceCodec, TokenTable
from llmsignal.finetune.methods import get_model, make_method
from llmsignal.finetune.precision import cpu_name
from llmsignal.finetune.train import TrainConfig, evaluate, train
from llmsignal.models.predictor import Predictor

SHIPPED = {"placement": "pfeiffer", "reduction_factor": 16}
VARIANTS: dict[str, dict] = {  # each changes one knob of the shipped adapter; "lr" is the learning rate
    "adapter": {},
    "lora-init": {"init": "lora"},
    "reduction 4": {"reduction_factor": 4},
    "reduction 1": {"reduction_factor": 1},
    "after attention": {"placement": "attention"},
    "houlsby": {"placement": "houlsby"},
    "parallel": {"placement": "parallel", "reduction_factor": 4, "scaling": 4.0},
    "gelu": {"activation": "gelu"},
    "linear": {"activation": "identity"},
    "own layer norm": {"layer_norm": True},
    "last 2 blocks": {"last_blocks": 2},
    "lr 1e-2": {"lr": 1e-2},
    "lora-init + lr 1e-2": {"init": "lora", "lr": 1e-2},
}
REFERENCES = ("lora", "full")
ADAPTER_LR = 2e-3  # the shipped adapter's own rate (finetune/methods.py)


def build(base: Base, variant: str, seed: int):
    """The model to train for ``variant`` and its learning rate."""
    if variant in REFERENCES:
        method = make_method(variant)
        return get_model(base.model, method, seed=seed), method.lr
    knobs = dict(VARIANTS[variant])
    lr = knobs.pop("lr", ADAPTER_LR)
    model = get_model(base.model, make_method("zero-shot"), seed=seed)
    add_bottlenecks(model, BottleneckConfig(**{**SHIPPED, **knobs}))
    return model, lr


def score(base: Base, split: Split, codec: PriceCodec, variant: str, config: TrainConfig) -> dict:
    table = TokenTable(base.tokenizer)
    train_bins = [codec.to_bins(split.train["close"].to_numpy())]
    val_bins = [codec.to_bins(split.bars["close"].to_numpy()[split.val_start - 1:split.test_start])]
    model, lr = build(base, variant, config.seed)
    started = time.perf_counter()
    result = train(model, table, train_bins, val_bins, config, lr, desc=variant)
    seconds = time.perf_counter() - started
    frame = Predictor(model, base.tokenizer, codec, name=variant).predict(split.bars, split.test_start,
                                                                          progress=False)
    moved = np.diff(frame["close"].to_numpy())
    called = (frame["forecast"] - frame["close"]).to_numpy()[:-1]
    return {"variant": variant, "seed": config.seed, "lr": lr, "trainable": result.trainable_params,
            "val loss": evaluate(model, table, val_bins, config),
            "direction": direction(np.sign(called), np.sign(moved))["directional_accuracy"], "train s": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--variants", default=",".join([*VARIANTS, *REFERENCES]))
    parser.add_argument("--seeds", default="0", help="comma-separated training seeds")
    args = parser.parse_args()
    variants = args.variants.split(",")
    unknown = [v for v in variants if v not in VARIANTS and v not in REFERENCES]
    if unknown:
        parser.error(f"--variants: unknown {unknown[0]!r}; known: {', '.join([*VARIANTS, *REFERENCES])}")
    base = load_base("embedded")
    split = split_bars(ar1_bars())
    codec = PriceCodec.fit(split.train["close"].to_numpy())
    frozen = TrainConfig()
    val_bins = [codec.to_bins(split.bars["close"].to_numpy()[split.val_start - 1:split.test_start])]
    print(f"CPU: {cpu_name()}; {args.steps} steps, cosine schedule; frozen base's validation loss "
          f"{evaluate(base.model, TokenTable(base.tokenizer), val_bins, frozen):.4f}", flush=True)
    rows = []
    for seed in (int(s) for s in args.seeds.split(",")):
        for variant in variants:
            rows.append(score(base, split, codec, variant, TrainConfig(steps=args.steps, seed=seed)))
            print(pd.DataFrame(rows[-1:]).to_string(index=False, header=len(rows) == 1,
                                                    float_format=lambda v: f"{v:.4g}"), flush=True)
    table = pd.DataFrame(rows).groupby("variant", sort=False).agg(
        trainable=("trainable", "first"), lr=("lr", "first"), val_loss=("val loss", "mean"),
        direction=("direction", "mean"), direction_min=("direction", "min"), seeds=("seed", "count"))
    print(table.to_string(float_format=lambda v: f"{v:.4g}"))


if __name__ == "__main__":
    main()
