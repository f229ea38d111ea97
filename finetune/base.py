"""The pretrained base: the project's embedded GPT-2, real GPT-2, or any local causal LM folder.

    >>> base = load_base("embedded")          # shipped with the package
    >>> base = load_base("gpt2")              # from the local Hugging Face cache, never downloaded  # doctest: +SKIP
    >>> base = load_base("/path/to/folder")   # saved with save_pretrained (model and tokenizer)  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, GPT2Config, PreTrainedTokenizerFast
from transformers.utils import cached_file
from transformers.utils import logging as hf_logging

from llmsignal.finetune.corpus import FINGERPRINT_WINDOW, window_fingerprints

EMBEDDED = "embedded"
EMBEDDED_DIR = Path(__file__).parent / "embedded_base"
BASE_INFO_FILE = "llmsignal_base.json"
CORPUS_WINDOWS_FILE = "corpus_windows.npz"
SYMBOLS = [str(d) for d in range(10)] + [",", "+", "-", "."]
# GPT-2's "gelu_new" is the tanh GELU built from five elementwise ops; torch's fused kernel computes the same
# function (to 3e-7) about 3.5x faster, which is a third of a small model's forward and backward time
FUSED_GELU = "gelu_pytorch_tanh"
TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "tokenizer.model")
SUPPORTED_MODEL_TYPES = ("gpt2",)  # the methods target GPT-2's modules (c_attn, mlp, ln_1, ...)


class BaseModelError(ValueError):
    """The requested base cannot be loaded."""


@dataclass
class Base:
    """A loaded base model with its tokenizer and what is known about it."""

    spec: str
    model: torch.nn.Module
    tokenizer: PreTrainedTokenizerFast
    fingerprint: str
    info: dict
    path: Path | None = None  # the folder it was loaded from (None for a hub id)


def embedded_tokenizer() -> PreTrainedTokenizerFast:
    """A character-level tokenizer over digits and separators (one token per spaced symbol)."""
    vocab = {tok: i for i, tok in enumerate(["<pad>", "<unk>", "<eos>", *SYMBOLS])}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token="<pad>", unk_token="<unk>", eos_token="<eos>"
    )


def embedded_config(vocab_size: int, **overrides) -> GPT2Config:
    """The embedded base's architecture: GPT-2, a few million parameters."""
    settings = dict(n_positions=256, n_embd=192, n_layer=4, n_head=4, vocab_size=vocab_size,
                    bos_token_id=2, eos_token_id=2, pad_token_id=0, activation_function=FUSED_GELU)
    settings.update(overrides)
    return GPT2Config(**settings)


def _resolve(spec: str) -> str:
    """The folder, or hub id of a model already in the local cache, to load."""
    if spec == EMBEDDED:
        if not (EMBEDDED_DIR / "config.json").exists():
            raise BaseModelError(
                f"the embedded base is missing from {EMBEDDED_DIR}; build it with `llmsignal pretrain`"
            )
        return str(EMBEDDED_DIR)
    path = Path(spec).expanduser()
    if path.exists():
        if not (path / "config.json").exists():
            raise BaseModelError(f"base folder {path} has no config.json: save it with save_pretrained")
        return str(path)
    if "/" in spec or spec.startswith((".", "~")):
        raise BaseModelError(f"base folder {spec} does not exist")
    return spec


def _local_file(source: str, name: str) -> Path | None:
    """``name`` of a folder, or of a hub id's copy in the local cache (never downloaded)."""
    if Path(source).is_dir():
        return Path(source) / name if (Path(source) / name).exists() else None
    try:
        found = cached_file(source, name, local_files_only=True, _raise_exceptions_for_missing_entries=False)
    except OSError:
        return None
    return Path(found) if found else None


def check_model_files(source: str) -> None:
    """Refuse a model whose config or tokenizer config asks for code of its own, or that is not a supported LM.

    Loading never runs code from a model folder (no ``trust_remote_code``), and only safetensors weights load;
    this check says so in one line, naming the file, before anything is read.
    """
    for name in ("config.json", "tokenizer_config.json"):
        path = _local_file(source, name)
        if path is None:
            continue
        try:
            config = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise BaseModelError(f"{path}: not valid JSON ({_first_line(err)})") from None
        if not isinstance(config, dict):
            raise BaseModelError(f"{path}: not a JSON object")
        if "auto_map" in config:
            raise BaseModelError(f"{path}: asks for custom code (auto_map); llmsignal never runs code from a model "
                                 "folder")
        if name == "config.json" and config.get("model_type") not in SUPPORTED_MODEL_TYPES:
            raise BaseModelError(f"{path}: model_type {config.get('model_type')!r} is not supported; llmsignal "
                                 f"tunes {', '.join(SUPPORTED_MODEL_TYPES)} causal language models")


def load_base(spec: str = EMBEDDED) -> Base:
    """Load a causal LM and its tokenizer from safetensors, never running code of its own; never reaches the network."""
    source = _resolve(spec)
    check_model_files(source)
    hf_logging.disable_progress_bar()  # one bar per weight file: noise beside the stages' own bars
    if not any(_local_file(source, name) for name in TOKENIZER_FILES):  # transformers 5 would make an empty one
        raise BaseModelError(f"base {spec!r} has no usable tokenizer (none of {', '.join(TOKENIZER_FILES)}); "
                             "save it with tokenizer.save_pretrained beside the model")
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True, trust_remote_code=False)
    except (OSError, ValueError, TypeError, KeyError) as err:
        raise BaseModelError(f"base {spec!r} has no usable tokenizer ({_first_line(err)})") from None
    try:
        config = AutoConfig.from_pretrained(source, local_files_only=True, trust_remote_code=False)
        if getattr(config, "activation_function", None) == "gelu_new":
            config.activation_function = FUSED_GELU
        model = AutoModelForCausalLM.from_pretrained(source, config=config, local_files_only=True,
                                                     trust_remote_code=False, use_safetensors=True)
    except (OSError, ValueError, TypeError, KeyError) as err:
        raise BaseModelError(f"base {spec!r} is not a causal language model with safetensors weights available "
                             f"offline ({_first_line(err)})") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    info_path = Path(source) / BASE_INFO_FILE
    info = json.loads(info_path.read_text()) if info_path.exists() else {}
    folder = Path(source) if Path(source).exists() else None
    return Base(spec, model.float(), tokenizer, weights_fingerprint(model), info, folder)


def weights_fingerprint(model: torch.nn.Module) -> str:
    """A short hash of a model's weights: entries check it to be sure they load on the base they were tuned on."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().to(torch.float32).cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


def _first_line(err: Exception) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__


def seen_by_base(base: Base, closes: pd.Series) -> list[str]:
    """Warnings naming each pretraining series that shares bars with ``closes``, and the shared dates.

    Bars are matched by fingerprints of runs of returns (``corpus.window_fingerprints``), not by file
    names, so a renamed or rescaled copy of a corpus series is still caught.
    """
    path = base.path / CORPUS_WINDOWS_FILE if base.path else None
    if path is None or not path.exists() or len(closes) <= FINGERPRINT_WINDOW:
        return []
    windows = window_fingerprints(closes.to_numpy())
    found = []
    with np.load(path) as corpus:
        for name in corpus.files:
            shared = np.flatnonzero(np.isin(windows, corpus[name]))
            if shared.size:
                first, last = closes.index[shared[0]], closes.index[shared[-1] + FINGERPRINT_WINDOW]
                found.append(f"the base {base.spec!r} was pretrained on series {name!r}, which shares "
                             f"{shared.size + FINGERPRINT_WINDOW} evaluation bars with this data ({first} to {last}); "
                             "its results on these bars are not out-of-sample")
    return found
