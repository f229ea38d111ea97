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
import math
import os
import pickle
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import peft
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from llmsignal.finetune.bars import INPUTS, DataError, Split, check_ranges
from llmsignal.finetune.base import (
    MAX_CONFIG_SIZES,
    Base,
    BaseModelError,
    check_model_files,
    load_base,
    local_config,
    read_json_object,
    safetensors_header,
)
from llmsignal.finetune.codec import PriceCodec, TokenTable
from llmsignal.finetune.methods import (
    Method,
    MethodError,
    get_model,
    load_trainable_state,
    make_method,
    merge_for_serving,
    trainable_state,
)
from llmsignal.finetune.search import search
from llmsignal.finetune.train import TrainConfig
from llmsignal.models.registry import Entry, Registry, RegistryError, check_name

WEIGHTS = "weights.safetensors"  # the trained tensors of methods that are not a peft or whole-model folder
ADAPTER_CONFIG, ADAPTER_WEIGHTS = "adapter_config.json", "adapter_model.safetensors"  # what peft reads
# keys of adapter_config.json that say where it was saved, not what peft builds
PEFT_FREE_KEYS = {"base_model_name_or_path", "revision", "inference_mode", "peft_version"}
# keys peft fills in from the base model for prefix and prompt tuning: they size the virtual-token embedding
PEFT_BASE_KEYS = {"token_dim": "n_embd", "num_layers": "n_layer", "num_attention_heads": "n_head"}
# a whole-model entry: config, safetensors weights, tokenizer files (never pickles: *.bin, *.pt)
WHOLE_MODEL_SUFFIXES = (".json", ".safetensors", ".txt", ".jinja")
SET_KEYS = ("target_modules", "feedforward_modules", "modules_to_save", "exclude_modules")
ARCHITECTURE_KEYS = ("model_type", "n_layer", "n_embd", "n_head", "n_positions", "vocab_size", "n_inner")
ENTRY_FORMAT = 2  # 1: llmsignal 0.1, the adapters library's layout


def frame_fingerprint(bars: pd.DataFrame, inputs: str = "close") -> str:
    """A hash of the bars' times and of the prices ``inputs`` reads (closes; highs and lows too with ohlc)."""
    digest = hashlib.sha256(bars.index.asi8.tobytes() if hasattr(bars.index, "asi8") else b"")
    for column in ("close", "high", "low") if inputs == "ohlc" else ("close",):
        digest.update(np.ascontiguousarray(bars[column].to_numpy(dtype=np.float64)).tobytes())
    return digest.hexdigest()[:16]


def request_key(split: Split, base: Base, method: Method, config: TrainConfig, context: int,
                inputs: str = "close") -> str:
    request = {"data": frame_fingerprint(split.bars, inputs), "val_start": split.val_start,
               "test_start": split.test_start, "base": base.fingerprint, "method": method.name,
               "params": method.params, "lr": method.lr, "train": config.to_dict(), "context": context,
               **({"inputs": inputs} if inputs != "close" else {})}  # a close-only request keeps its old key
    return hashlib.sha256(json.dumps(request, sort_keys=True).encode()).hexdigest()[:16]


def entry_inputs(meta: dict) -> str:
    """What an entry's model reads of each bar: "close" (every entry saved before ohlc inputs) or "ohlc"."""
    codec = meta.get("codec")
    return str(codec.get("inputs", "close")) if isinstance(codec, dict) else "close"


def find_entry(registry: Registry, name: str, key: str) -> Entry | None:
    """The version of ``name`` made by this request; damaged versions are skipped (and never reused)."""
    for version in reversed(registry.versions(name)):
        try:
            entry = registry.get(f"{name}@{version}")
        except RegistryError:
            continue
        if entry.metadata.get("request_key") == key:
            return entry
    return None


def check_inputs(entry: Entry, inputs: str | None) -> None:
    """``RegistryError`` when ``inputs`` is given and is not what ``entry`` reads (``--inputs`` of predict, serve)."""
    if inputs is not None and inputs != entry_inputs(entry.metadata):
        raise RegistryError(f"entry {entry.ref} reads {entry_inputs(entry.metadata)} inputs, not {inputs}; "
                            f"drop --inputs or pick an entry tuned with --inputs {inputs}")


MAX_POSITIONS = 1024  # GPT-2's: they hold a prompt of 3 tokens a bar (5 with ohlc) plus 10 candidates
MAX_CONTEXT = (MAX_POSITIONS - 10) // 3


def check_entry_metadata(meta: dict) -> tuple[Method, PriceCodec]:
    """The method and codec of an entry this version can serve; ``RegistryError`` for any other ``meta``.

    The registry trusts its own files (their hashes are checked on load) but not an imported or hand-edited
    metadata.json: method, hyper-parameters, codec and files must make sense before anything is loaded.
    """
    if meta.get("format") != ENTRY_FORMAT:
        raise RegistryError(f"saved by llmsignal 0.1 (the adapters library's layout), which this version cannot "
                            f"load; retrain it: llmsignal train --method {meta.get('method')} --force")
    missing = [key for key in ("method", "codec", "files", "base", "train_config") if key not in meta]
    if missing:
        raise RegistryError(f"metadata cannot be served: no {', '.join(missing)}")
    try:
        method = make_method(str(meta.get("method")), **_dict(meta, "method_params"))
        codec = PriceCodec(**_dict(meta, "codec"))
    except (MethodError, TypeError, ValueError) as err:
        raise RegistryError(f"metadata cannot be served: {err}") from None
    if not (isinstance(codec.step, int | float) and math.isfinite(codec.step) and codec.step > 0):
        raise RegistryError(f"metadata cannot be served: codec step {codec.step!r} is not a positive number")
    if codec.inputs not in INPUTS:
        raise RegistryError(f"metadata cannot be served: codec inputs {codec.inputs!r} is not one of "
                            f"{', '.join(INPUTS)}")
    if codec.inputs == "ohlc" and not (isinstance(codec.range_step, int | float) and math.isfinite(codec.range_step)
                                       and codec.range_step > 0):
        raise RegistryError(f"metadata cannot be served: codec range_step {codec.range_step!r} is not a positive "
                            "number")
    most = (MAX_POSITIONS - 10) // (2 * codec.fields + 1)
    if not (isinstance(codec.context, int) and 1 <= codec.context <= most):
        raise RegistryError(f"metadata cannot be served: codec context {codec.context!r} is not 1 to {most}")
    if method.trainable and not _dict(meta, "files"):
        raise RegistryError(f"metadata cannot be served: a {method.name} entry with no files")
    if not isinstance(meta.get("base"), str) or not isinstance(_dict(meta, "train_config").get("seed"), int):
        raise RegistryError("metadata cannot be served: no base or training seed")
    return method, codec


def _dict(meta: dict, key: str) -> dict:
    value = meta.get(key, {})
    if not isinstance(value, dict):
        raise RegistryError(f"metadata cannot be served: {key} is not an object")
    return value


def check_entry_files(meta: dict, folder: Path, base_config: dict | None = None) -> None:
    """Raise ``RegistryError`` unless every file the loader reads in ``folder`` agrees with ``meta`` and the base.

    peft builds the model from adapter_config.json, not from metadata.json: its every key that shapes the model
    must be what the metadata's method and hyper-parameters give (r, target modules, rank patterns, virtual
    tokens ...), and the saved tensors must have those sizes, so that loading allocates no more than the bytes in
    the entry. Safetensors headers are checked against the files' lengths, whole-model configs against GPT-2's
    sizes and the base's architecture (``base_config``: the base's config.json, when it is on this machine).
    """
    method, _ = check_entry_metadata(meta)
    files = _dict(meta, "files")
    try:
        headers = {name: safetensors_header(folder / name) for name in files if name.endswith(".safetensors")}
        if method.peft_config is not None:
            _expect_files(method, files, {ADAPTER_CONFIG, ADAPTER_WEIGHTS})
            _check_adapter(method, read_json_object(folder / ADAPTER_CONFIG), headers[ADAPTER_WEIGHTS],
                           folder / ADAPTER_CONFIG, base_config)
        elif method.saves_whole_model:
            strange = sorted(name for name in files if not name.endswith(WHOLE_MODEL_SUFFIXES))
            if strange or not {"config.json", "model.safetensors"} <= set(files):
                raise RegistryError(f"a {method.name} entry is a Hugging Face model folder (config.json, "
                                    f"model.safetensors, tokenizer files), not {', '.join(sorted(files))}")
            for name in files:
                if name.endswith(".json"):
                    read_json_object(folder / name)
            check_model_files(str(folder))  # no custom code; GPT-2 sizes
            config = read_json_object(folder / "config.json")
            if base_config is not None:
                for key in ARCHITECTURE_KEYS:
                    if config.get(key) != base_config.get(key):
                        raise RegistryError(f"{folder / 'config.json'}: {key} {config.get(key)!r} is not the base's "
                                            f"{base_config.get(key)!r} ({meta.get('base')})")
        elif method.trainable:
            _expect_files(method, files, {WEIGHTS})
    except BaseModelError as err:
        raise RegistryError(str(err)) from None


def _expect_files(method: Method, files: dict, expected: set[str]) -> None:
    if set(files) != expected:
        raise RegistryError(f"a {method.name} entry holds {', '.join(sorted(expected))}, not "
                            f"{', '.join(sorted(files)) or 'no files'}")


def _plain(value: object) -> object:
    """A config value as JSON has it: sets as sorted lists, enums as their strings."""
    if isinstance(value, set | frozenset):
        return sorted((_plain(v) for v in value), key=repr)
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if hasattr(value, "value") and isinstance(value, str):  # a str enum (PeftType, TaskType)
        return str(value.value)
    return value


def _check_adapter(method: Method, config: dict, tensors: dict[str, tuple[str, list[int]]], path: Path,
                   base_config: dict | None) -> None:
    """adapter_config.json builds what the metadata's method builds, and its tensors have the sizes it says."""
    expected = method.peft_config(**method.params)
    want, defaults = _plain(expected.to_dict()), _plain(type(expected)().to_dict())
    for key, value in sorted(want.items(), key=lambda item: item[0] != "peft_type"):  # it picks the class: first
        if key in PEFT_FREE_KEYS or key in PEFT_BASE_KEYS or key == "num_transformer_submodules":
            continue
        # peft's default when it is absent; but peft_type picks the config class, so it must be there
        got = _plain(config[key]) if key in config else None if key == "peft_type" else defaults.get(key)
        if isinstance(got, list) and isinstance(value, list) and key in SET_KEYS:  # sets in peft, lists in JSON
            got, value = sorted(got, key=repr), sorted(value, key=repr)
        if got != value:
            params = ", ".join(f"{k}={v}" for k, v in method.params.items()) or "its defaults"
            raise RegistryError(f"{path}: {key} is {_short(got)} where the metadata's {method.name} ({params}) "
                                f"gives {_short(value)}")
    if config.get("num_transformer_submodules") not in (None, 1):
        raise RegistryError(f"{path}: num_transformer_submodules {_short(config['num_transformer_submodules'])} "
                            "is not 1 (GPT-2 is one decoder)")
    for key, base_key in PEFT_BASE_KEYS.items():
        value = config.get(key)
        if value is None:
            continue
        limit = MAX_CONFIG_SIZES[base_key]
        if base_config is not None and value != base_config.get(base_key):
            raise RegistryError(f"{path}: {key} {_short(value)} is not the base's {base_key} "
                                f"{base_config.get(base_key)}")
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= limit:
            raise RegistryError(f"{path}: {key} {_short(value)} is not a whole number from 1 to {limit}")
    _check_adapter_tensors(method, {**defaults, **config}, tensors, path.with_name(ADAPTER_WEIGHTS))  # as peft reads


def _check_adapter_tensors(method: Method, config: dict, tensors: dict[str, tuple[str, list[int]]],
                           path: Path) -> None:
    """The sizes peft allocates from the config are the sizes of the saved tensors (bounded by the file)."""
    if not tensors:
        raise RegistryError(f"{path}: holds no tensors")
    if method.name == "lora":
        r = config.get("r")
        for name, (_, shape) in tensors.items():
            rank = shape[0] if ".lora_A." in name else shape[-1] if ".lora_B." in name else None
            if len(shape) != 2 or rank != r:
                raise RegistryError(f"{path}: tensor {name[:80]!r} of shape {shape} is not a rank-{r} LoRA matrix")
    elif method.name in ("prefix", "prompt"):
        virtual, width = config.get("num_virtual_tokens"), config.get("token_dim")
        if not isinstance(width, int) or isinstance(width, bool):
            raise RegistryError(f"{path.with_name(ADAPTER_CONFIG)}: no token_dim")
        if method.name == "prefix":
            width *= 2 * (config.get("num_layers") or 0)  # keys and values of every layer, as saved
        if set(tensors) != {"prompt_embeddings"} or tensors["prompt_embeddings"][1] != [virtual, width]:
            raise RegistryError(f"{path}: holds {_short({k: v[1] for k, v in tensors.items()})}, not the "
                                f"prompt_embeddings of shape {[virtual, width]} its config gives")


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:77]}..."


def _base_config(meta: dict) -> dict | None:
    """The entry's base's config.json when it is on this machine (read, not loaded); None otherwise."""
    try:
        return local_config(str(meta.get("base")))
    except BaseModelError:
        return None


def entry_registry(root: str | Path) -> Registry:
    """The registry at ``root``, refusing imports of entries that cannot be served and listing them as invalid."""
    return Registry(root, check=check_entry_metadata,
                    check_files=lambda meta, folder: check_entry_files(meta, folder, _base_config(meta)))


def train_entry(split: Split, base: Base, method: Method, registry: Registry, name: str, config: TrainConfig,
                data_source: str, context: int = 48, force: bool = False, resume: bool = False,
                inputs: str = "close") -> tuple[Entry, bool]:
    """The registry entry for this request, trained now unless it exists; True when trained.

    ``inputs="ohlc"``: the model reads each bar's range beside its return (``PriceCodec``).
    """
    check_name(name)  # before any path is built from it
    check_window_fits(base, context, inputs)
    key = request_key(split, base, method, config, context, inputs)
    if not force and (existing := find_entry(registry, name, key)):
        return existing, False
    codec = fit_codec(split, inputs, context, data_source)
    table = TokenTable(base.tokenizer, codec.fields)
    checkpoints = registry.root / ".checkpoints"
    checkpoint_path = checkpoints / f"{name}-{key}.pt"
    state = _read_checkpoint(checkpoint_path) if resume and checkpoint_path.exists() else None

    def save_checkpoint(step: int, snapshot: dict) -> None:
        tmp = checkpoint_path.with_suffix(".tmp")
        try:
            checkpoints.mkdir(parents=True, exist_ok=True)
            torch.save(snapshot, tmp)
            os.replace(tmp, checkpoint_path)
        except (OSError, RuntimeError) as err:  # a full disk reaches torch's zip writer as a RuntimeError
            tmp.unlink(missing_ok=True)
            free = shutil.disk_usage(registry.root).free if registry.root.exists() else 0
            raise RegistryError(f"{checkpoint_path}: cannot write the checkpoint at step {step} "
                                f"({str(err).splitlines()[0][:100]}; {free:,} bytes free); the last checkpoint "
                                "is kept: free space, then --resume") from None

    found = search(lambda: get_model(base.model, method, seed=config.seed), table,
                   [_bins(codec, split.train)], [_bins(codec, split.bars.iloc[split.val_start - 1:split.test_start])],
                   config, [method.lr * f for f in config.lr_factors], desc=f"train {method.name}",
                   checkpoint=save_checkpoint, resume=state)
    model, result = found.model, found.result
    with tempfile.TemporaryDirectory() as tmp:
        files = _write_model(model, method, base, Path(tmp))
        metadata = {
            "format": ENTRY_FORMAT, "method": method.name, "method_params": method.params, "lr": found.lr,
            "base": base.spec, "base_fingerprint": base.fingerprint, "codec": codec.to_dict(),
            "inputs": codec.inputs,
            "data": data_source, "data_fingerprint": frame_fingerprint(split.bars, inputs), "split": split.dates(),
            "train_config": config.to_dict(), "request_key": key,
            "cost": {**{k: v for k, v in asdict(result).items() if k not in ("loss_history", "val_curve")},
                     "saved_mb": sum(f.stat().st_size for f in files.values()) / 2**20},
            "loss_history": result.loss_history,
            "search": [asdict(trial) for trial in found.trials],
        }
        entry = registry.save(name, files, metadata)
    checkpoint_path.unlink(missing_ok=True)
    return entry, True


def check_window_fits(base: Base, context: int, inputs: str) -> None:
    """``BaseModelError`` when a training window of ``context + 1`` bars of ``inputs`` text is longer than the base's
    positions (ohlc text is five tokens a bar, close text three)."""
    positions = getattr(base.model.config, "n_positions", None)
    tokens = (context + 1) * (5 if inputs == "ohlc" else 3)
    if isinstance(positions, int) and tokens > positions:
        raise BaseModelError(f"base {base.spec}: a window of {context + 1} bars of {inputs} text is {tokens} tokens, "
                             f"more than its {positions} positions; use --inputs close or a base with more positions")


def fit_codec(split: Split, inputs: str, context: int, data_source: str) -> PriceCodec:
    """The codec of an entry, fitted on the training split only; a ``DataError`` for bars it cannot read."""
    train = split.train
    if inputs == "ohlc":
        check_ranges(split.bars, data_source)
    ranges = {"high": train["high"].to_numpy(), "low": train["low"].to_numpy()} if inputs == "ohlc" else {}
    try:
        return PriceCodec.fit(train["close"].to_numpy(), context=context, **ranges)
    except ValueError as err:
        raise DataError(f"{data_source}: {err} in the training split") from None


def _bins(codec: PriceCodec, bars: pd.DataFrame) -> np.ndarray:
    ranges = {"high": bars["high"].to_numpy(), "low": bars["low"].to_numpy()} if codec.inputs == "ohlc" else {}
    return codec.bar_bins(bars["close"].to_numpy(), **ranges)


SNAPSHOT_KEYS = {"model", "optimizer", "rng", "torch_rng", "step", "losses"}  # what ``train`` resumes from
PROBE_KEYS = {"trial", "paused", "weights"}  # what ``search`` keeps of each finished probe


def _read_checkpoint(path: Path) -> dict:
    """A checkpoint holds tensors, numbers and strings only: it is read without unpickling any object, and its
    structure is checked before a training resumes from it."""
    try:
        state = torch.load(path, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as err:
        raise RegistryError(f"{path}: not a checkpoint that llmsignal wrote ({str(err).splitlines()[0][:120]}); "
                            "delete it to train from the start") from None
    probes = state.get("probes") if isinstance(state, dict) else None
    if not (isinstance(probes, list) and _snapshot(state.get("train"))
            and all(isinstance(p, dict) and set(p) >= PROBE_KEYS and _snapshot(p["paused"]) for p in probes)):
        raise RegistryError(f"{path}: not a checkpoint of a training (its contents have another structure); "
                            "delete it to train from the start")
    return state


def _snapshot(value: object) -> bool:
    return value is None or (isinstance(value, dict) and set(value) >= SNAPSHOT_KEYS
                             and isinstance(value["step"], int) and isinstance(value["model"], dict))


def _write_model(model: torch.nn.Module, method: Method, base: Base, folder: Path) -> dict[str, Path]:
    """The entry's files, in the layout plain tools read: a peft adapter folder, a whole Hugging Face model
    folder (full, scratch), or the trained tensors alone (bottleneck adapters, bitfit, zero-shot)."""
    if method.peft_config is not None:
        model.save_pretrained(folder, safe_serialization=True)
        (folder / "README.md").unlink(missing_ok=True)  # peft's blank model card for the Hub
    elif method.saves_whole_model:
        model.save_pretrained(folder, safe_serialization=True)
        base.tokenizer.save_pretrained(folder)
    else:
        save_file({k: v.cpu() for k, v in trainable_state(model).items()}, folder / WEIGHTS)
    return {f.name: f for f in sorted(folder.iterdir()) if f.is_file()}


def load_entry_model(entry: Entry, merge: bool = False) -> tuple[torch.nn.Module, object, PriceCodec]:
    """An entry's model, with its tokenizer and codec; ``merge`` folds LoRA/IA3 into the base weights.

    peft entries load with ``PeftModel.from_pretrained(base, entry.path)`` and whole models with
    ``AutoModelForCausalLM.from_pretrained(entry.path)``: what this function does too.
    """
    entry.verify()
    meta = entry.metadata
    try:
        method, codec = check_entry_metadata(meta)
    except RegistryError as err:
        raise RegistryError(f"entry {entry.ref}: {err}") from None
    try:
        check_entry_files(meta, entry.path, _base_config(meta))  # before anything is allocated
    except RegistryError as err:
        raise RegistryError(f"entry {entry.ref}: {err}") from None
    if method.saves_whole_model:
        whole = load_base(str(entry.path))
        return whole.model, whole.tokenizer, codec
    base = load_base(meta["base"])
    if base.fingerprint != meta["base_fingerprint"]:
        raise RegistryError(f"entry {entry.ref} was tuned on a different {meta['base']!r} base "
                            f"(fingerprint {meta['base_fingerprint']}, found {base.fingerprint})")
    try:
        if method.peft_config is not None:
            model = peft.PeftModel.from_pretrained(base.model, entry.path)
            return merge_for_serving(model, method) if merge else model, base.tokenizer, codec
        model = get_model(base.model, method, seed=meta["train_config"]["seed"])
        if method.trainable:
            shapes = {name: list(p.shape) for name, p in model.named_parameters() if p.requires_grad}
            saved = {name: shape for name, (_, shape) in safetensors_header(entry.file(WEIGHTS)).items()}
            if saved != shapes:
                wrong = sorted((set(saved) ^ set(shapes)) or {n for n in saved if saved[n] != shapes[n]})
                raise RegistryError(f"{entry.file(WEIGHTS)}: its tensors do not fit a {method.name} model of this "
                                    f"base (first: {wrong[0][:80]!r})")
            load_trainable_state(model, load_file(entry.file(WEIGHTS)))
        return model, base.tokenizer, codec
    except (RuntimeError, KeyError, ValueError, OSError, SafetensorError) as err:
        if isinstance(err, RegistryError | MethodError):
            raise
        raise RegistryError(f"entry {entry.ref} does not load on its base ({_first_line(err)})") from None


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:200] if text else type(err).__name__
