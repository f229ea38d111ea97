"""Write registry entries (train one method on one split) and read them back as models.

An entry is identified by what produced it (data, split, base, method and its
hyper-parameters, budget, seed): the same request finds the entry already in the
registry and is not trained again unless ``force`` is given. Checkpoints are
written every ``checkpoint_every`` steps so that ``resume`` continues an
interrupted training where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file, save_file

from llmsignal.finetune.bars import DataError, Split
from llmsignal.finetune.base import Base, load_base
from llmsignal.finetune.codec import PriceCodec, TokenTable
from llmsignal.finetune.methods import (
    Method,
    get_model,
    load_trainable_state,
    make_method,
    merge_for_serving,
    trainable_state,
)
from llmsignal.finetune.train import TrainConfig, train
from llmsignal.models.registry import Entry, Registry, RegistryError

WEIGHTS = "weights.safetensors"


def frame_fingerprint(bars: pd.DataFrame) -> str:
    digest = hashlib.sha256(bars.index.asi8.tobytes() if hasattr(bars.index, "asi8") else b"")
    digest.update(np.ascontiguousarray(bars["close"].to_numpy(dtype=np.float64)).tobytes())
    return digest.hexdigest()[:16]


def request_key(split: Split, base: Base, method: Method, config: TrainConfig, context: int) -> str:
    request = {"data": frame_fingerprint(split.bars), "val_start": split.val_start, "test_start": split.test_start,
               "base": base.fingerprint, "method": method.name, "params": method.params, "lr": method.lr,
               "train": config.to_dict(), "context": context}
    return hashlib.sha256(json.dumps(request, sort_keys=True).encode()).hexdigest()[:16]


def find_entry(registry: Registry, name: str, key: str) -> Entry | None:
    for version in reversed(registry.versions(name)):
        entry = registry.get(f"{name}@{version}")
        if entry.metadata.get("request_key") == key:
            return entry
    return None


def train_entry(split: Split, base: Base, method: Method, registry: Registry, name: str, config: TrainConfig,
                data_source: str, context: int = 48, force: bool = False, resume: bool = False) -> tuple[Entry, bool]:
    """The registry entry for this request, trained now unless it exists; True when trained."""
    key = request_key(split, base, method, config, context)
    if not force and (existing := find_entry(registry, name, key)):
        return existing, False
    try:
        codec = PriceCodec.fit(split.train["close"].to_numpy(), context=context)
    except ValueError as err:
        raise DataError(f"{data_source}: {err} in the training split") from None
    table = TokenTable(base.tokenizer)
    model = get_model(base.model, method, seed=config.seed)
    checkpoints = registry.root / ".checkpoints"
    checkpoint_path = checkpoints / f"{name}-{key}.pt"
    state = torch.load(checkpoint_path, weights_only=False) if resume and checkpoint_path.exists() else None

    def save_checkpoint(step: int, snapshot: dict) -> None:
        checkpoints.mkdir(parents=True, exist_ok=True)
        tmp = checkpoint_path.with_suffix(".tmp")
        torch.save(snapshot, tmp)
        os.replace(tmp, checkpoint_path)

    result = train(model, table, [codec.to_bins(split.train["close"].to_numpy())],
                   [codec.to_bins(split.bars["close"].to_numpy()[split.val_start - 1:split.test_start])],
                   config, lr=method.lr, desc=f"train {method.name}", checkpoint=save_checkpoint, resume=state)
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / WEIGHTS
        save_file({k: v.cpu() for k, v in trainable_state(model).items()}, weights)
        saved_mb = weights.stat().st_size / 2**20
        metadata = {
            "method": method.name, "method_params": method.params, "lr": method.lr, "base": base.spec,
            "base_fingerprint": base.fingerprint, "codec": codec.to_dict(),
            "data": data_source, "data_fingerprint": frame_fingerprint(split.bars), "split": split.dates(),
            "train_config": config.to_dict(), "request_key": key,
            "cost": {**asdict(result), "saved_mb": saved_mb},
        }
        entry = registry.save(name, {WEIGHTS: weights}, metadata)
    checkpoint_path.unlink(missing_ok=True)
    return entry, True



def load_entry_model(entry: Entry, merge: bool = False) -> tuple[torch.nn.Module, object, PriceCodec]:
    """An entry's model rebuilt on its base, with its tokenizer and codec; ``merge`` folds LoRA/IA3 in."""
    entry.verify()
    meta = entry.metadata
    base = load_base(meta["base"])
    if base.fingerprint != meta["base_fingerprint"]:
        raise RegistryError(f"entry {entry.ref} was tuned on a different {meta['base']!r} base "
                            f"(fingerprint {meta['base_fingerprint']}, found {base.fingerprint})")
    method = make_method(meta["method"], **meta["method_params"])
    model = get_model(base.model, method, seed=meta["train_config"]["seed"])
    if method.trainable:
        load_trainable_state(model, load_file(entry.file(WEIGHTS)))
    if merge:
        merge_for_serving(model, method)
    return model, base.tokenizer, PriceCodec(**meta["codec"])
