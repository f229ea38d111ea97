"""The pretrained base: the project's embedded GPT-2, real GPT-2, or any local causal LM folder.

    >>> base = load_base("embedded")          # shipped with the package
    >>> base = load_base("gpt2")              # from the local Hugging Face cache, never downloaded  # doctest: +SKIP
    >>> base = load_base("/path/to/folder")   # saved with save_pretrained (model and tokenizer)  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
import zipfile
from dataclasses import dataclass, field
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
# The largest sizes a base's config.json may ask for, checked before anything is allocated: room above GPT-2 xl
# (48 layers, 1,600 wide, 25 heads, 1,024 positions, 50,257 tokens), far below what would exhaust a machine.
MAX_CONFIG_SIZES = {"n_layer": 64, "n_embd": 2048, "n_head": 64, "n_positions": 4096, "n_ctx": 4096,
                    "vocab_size": 131072, "n_inner": 8192}
MAX_PARAMETERS = 2_000_000_000  # GPT-2 xl has 1.56 billion
MAX_JSON_BYTES = 16 << 20  # a config, tokenizer config or pretraining record; a GPT-2 tokenizer.json is 1.4 MB
MAX_CORPUS_BYTES = 256 << 20  # the uncompressed fingerprints of corpus_windows.npz (the embedded base's: 0.2 MB)
MAX_SAFETENSORS_HEADER = 100 << 20  # what the safetensors library itself allows
SAFETENSORS_DTYPES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2, "F16": 2,
                      "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}


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
    corpus_windows: dict[str, np.ndarray] | None = field(default=None, repr=False)  # read and checked on load


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
        config = read_json_object(path)
        if "auto_map" in config:
            raise BaseModelError(f"{path}: asks for custom code (auto_map); llmsignal never runs code from a model "
                                 "folder")
        if name == "config.json" and config.get("model_type") not in SUPPORTED_MODEL_TYPES:
            raise BaseModelError(f"{path}: model_type {config.get('model_type')!r} is not supported; llmsignal "
                                 f"tunes {', '.join(SUPPORTED_MODEL_TYPES)} causal language models")
        if name == "config.json":
            check_config_sizes(config, path)
    weights = sorted(Path(source).glob("*.safetensors")) if Path(source).is_dir() else \
        [path for path in [_local_file(source, "model.safetensors")] if path is not None]
    for path in weights:
        safetensors_header(path)


def local_config(spec: str) -> dict | None:
    """The config.json of base ``spec``, read and checked without loading anything; None when it is not here."""
    path = _local_file(_resolve(spec), "config.json")
    if path is None:
        return None
    config = read_json_object(path)
    check_config_sizes(config, path)
    return config


def read_json_object(path: Path, limit: int = MAX_JSON_BYTES) -> dict:
    """The JSON object in ``path`` (UTF-8, at most ``limit`` bytes); ``BaseModelError`` naming the file otherwise."""
    try:
        size = path.stat().st_size
        if size > limit:
            raise BaseModelError(f"{path}: {size:,} bytes, over the {limit:,} a JSON file of a model may have")
        value = json.loads(path.read_bytes().decode("utf-8"))
    except OSError as err:
        raise BaseModelError(f"{path}: cannot read ({err.strerror or _first_line(err)})") from None
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        raise BaseModelError(f"{path}: not valid JSON ({_first_line(err)})") from None
    if not isinstance(value, dict):
        raise BaseModelError(f"{path}: not a JSON object")
    return value


def check_config_sizes(config: dict, path: Path | str) -> None:
    """Refuse a GPT-2 config whose sizes would allocate more than any GPT-2 (xl included) before it is built."""
    for key, limit in MAX_CONFIG_SIZES.items():
        value = config.get(key)
        if value is None and key in ("n_inner", "n_ctx"):  # n_inner: 4 x n_embd; n_ctx: unused by transformers 5
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= limit:
            raise BaseModelError(f"{path}: {key} {value!r} is not a whole number from 1 to {limit:,} (GPT-2 xl: "
                                 f"{_XL.get(key, '-')}); llmsignal loads GPT-2 sizes only")
    layers, width, heads = config["n_layer"], config["n_embd"], config["n_head"]
    if width % heads:
        raise BaseModelError(f"{path}: n_embd {width} is not a multiple of n_head {heads}")
    inner = config.get("n_inner") or 4 * width
    embeddings = (config["vocab_size"] + config["n_positions"]) * width
    parameters = layers * (4 * width * width + 2 * width * inner) + embeddings
    if parameters > MAX_PARAMETERS:
        raise BaseModelError(f"{path}: n_layer {layers} x n_embd {width} makes about {parameters:,} parameters, "
                             f"over the {MAX_PARAMETERS:,} llmsignal loads (GPT-2 xl: 1.56 billion)")


_XL = {"n_layer": 48, "n_embd": 1600, "n_head": 25, "n_positions": 1024, "n_ctx": 1024, "vocab_size": 50257,
       "n_inner": 6400}


def safetensors_header(path: Path) -> dict[str, tuple[str, list[int]]]:
    """Each tensor's dtype and shape from a safetensors file's header, checked against the file's length.

    Every size is bounded by the bytes really in the file, so loading it allocates no more than that;
    ``BaseModelError`` naming the file for a header that claims more, or that is not a safetensors header.
    """
    try:
        with open(path, "rb") as handle:
            size = handle.seek(0, 2)
            handle.seek(0)
            prefix = handle.read(8)
            length = struct.unpack("<Q", prefix)[0] if len(prefix) == 8 else -1
            if not 2 <= length <= min(MAX_SAFETENSORS_HEADER, size - 8):
                raise BaseModelError(f"{path}: not a safetensors file (its header claims {length:,} bytes of "
                                     f"a {size:,}-byte file)")
            header = json.loads(handle.read(length).decode("utf-8"))
    except OSError as err:
        raise BaseModelError(f"{path}: cannot read ({err.strerror or _first_line(err)})") from None
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        raise BaseModelError(f"{path}: not a safetensors file (its header is not JSON: {_first_line(err)})") from None
    if not isinstance(header, dict):
        raise BaseModelError(f"{path}: not a safetensors file (its header is not a JSON object)")
    data = size - 8 - length
    tensors = {}
    for name, spec in header.items():
        if name == "__metadata__":
            continue
        dtype = spec.get("dtype") if isinstance(spec, dict) else None
        shape = spec.get("shape") if isinstance(spec, dict) else None
        offsets = spec.get("data_offsets") if isinstance(spec, dict) else None
        if (dtype not in SAFETENSORS_DTYPES or not isinstance(shape, list) or not isinstance(offsets, list)
                or len(offsets) != 2 or len(shape) > 8
                or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in [*shape, *offsets])):
            raise BaseModelError(f"{path}: tensor {str(name)[:80]!r} has no valid dtype, shape and data offsets")
        begin, end = offsets
        claimed = math.prod(shape) * SAFETENSORS_DTYPES[dtype]
        if not begin <= end <= data or end - begin != claimed:
            raise BaseModelError(f"{path}: tensor {str(name)[:80]!r} claims {claimed:,} bytes at {begin:,}..{end:,} "
                                 f"but the file holds {data:,} bytes of tensors (cut short, or a crafted header)")
        tensors[name] = (dtype, shape)
    return tensors


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
    tokenizer_file = next(filter(None, (_local_file(source, name) for name in TOKENIZER_FILES)))
    try:
        config = AutoConfig.from_pretrained(source, local_files_only=True, trust_remote_code=False)
    except (OSError, ValueError, TypeError, KeyError) as err:
        raise BaseModelError(f"base {spec!r} is not a causal language model with safetensors weights available "
                             f"offline ({_first_line(err)})") from None
    _check_tokenizer(tokenizer, tokenizer_file, config.vocab_size)
    folder = Path(source) if Path(source).is_dir() else None
    info = _read_info(folder / BASE_INFO_FILE) if folder and (folder / BASE_INFO_FILE).exists() else {}
    windows = _read_corpus_windows(folder / CORPUS_WINDOWS_FILE) if folder else None
    try:
        if getattr(config, "activation_function", None) == "gelu_new":
            config.activation_function = FUSED_GELU
        model = AutoModelForCausalLM.from_pretrained(source, config=config, local_files_only=True,
                                                     trust_remote_code=False, use_safetensors=True)
    except (OSError, ValueError, TypeError, KeyError, RuntimeError) as err:  # RuntimeError: weights of other shapes
        raise BaseModelError(f"base {spec!r} is not a causal language model with safetensors weights available "
                             f"offline ({_first_line(err)})") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return Base(spec, model.float(), tokenizer, weights_fingerprint(model), info, folder, windows)


def _check_tokenizer(tokenizer, path: Path, vocab_size: int) -> None:
    """The codec writes each value as two digits and a separator: each must be one token the model has."""
    from llmsignal.finetune.codec import TokenTable

    try:
        table = TokenTable(tokenizer)
    except (ValueError, IndexError, TypeError) as err:
        raise BaseModelError(f"{path}: {_first_line(err)}; llmsignal needs the digits 0-9 and ',' as one "
                             "token each") from None
    ids = [*table.digits.tolist(), table.separator]
    if not all(0 <= i < vocab_size for i in ids):
        raise BaseModelError(f"{path}: the digits encode as token ids {ids}, outside the model's vocabulary of "
                             f"{vocab_size}")


def _read_info(path: Path) -> dict:
    """The pretraining record ``llmsignal pretrain`` wrote, checked for what ``base-info`` reads."""
    info = read_json_object(path, limit=MAX_JSON_BYTES)
    numbers = all(isinstance(info.get(k), int | float) and not isinstance(info.get(k), bool)
                  for k in ("heldout_loss", "train_loss"))
    config, corpus = info.get("config"), info.get("corpus")
    series_keys = ("name", "source", "bars", "start", "end", "fingerprint")
    if not (numbers and isinstance(config, dict) and "steps" in config and isinstance(corpus, list)
            and all(isinstance(s, dict) and all(isinstance(s.get(k), str | int) for k in series_keys)
                    for s in corpus)):
        raise BaseModelError(f"{path}: not a pretraining record of `llmsignal pretrain` (it needs numbers "
                             "heldout_loss and train_loss, config.steps and a corpus list of series)")
    return info


def _read_corpus_windows(path: Path) -> dict[str, np.ndarray] | None:
    """The window fingerprints of the pretraining corpus (1-D unsigned 64-bit arrays), never unpickled."""
    if not path.exists():
        return None
    try:
        with zipfile.ZipFile(path) as archive:
            total = sum(member.file_size for member in archive.infolist())
        if total > MAX_CORPUS_BYTES:
            raise BaseModelError(f"{path}: {total:,} bytes uncompressed, over the {MAX_CORPUS_BYTES:,} of "
                                 "corpus fingerprints llmsignal reads")
        with np.load(path, allow_pickle=False) as corpus:
            windows = {name: corpus[name] for name in corpus.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as err:
        raise BaseModelError(f"{path}: not the corpus fingerprints `llmsignal pretrain` writes "
                             f"({_first_line(err)})") from None
    for name, array in windows.items():
        if array.ndim != 1 or array.dtype != np.uint64:
            raise BaseModelError(f"{path}: {name!r} is a {array.dtype} array of shape {array.shape}, not the 1-D "
                                 "uint64 fingerprints `llmsignal pretrain` writes")
    return windows


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
    corpus = base.corpus_windows
    if corpus is None and base.path is not None:
        corpus = _read_corpus_windows(base.path / CORPUS_WINDOWS_FILE)
    if not corpus or len(closes) <= FINGERPRINT_WINDOW:
        return []
    windows = window_fingerprints(closes.to_numpy())
    found = []
    for name, fingerprints in corpus.items():
        shared = np.flatnonzero(np.isin(windows, fingerprints))
        if shared.size:
            first, last = closes.index[shared[0]], closes.index[shared[-1] + FINGERPRINT_WINDOW]
            found.append(f"the base {base.spec!r} was pretrained on series {name!r}, which shares "
                         f"{shared.size + FINGERPRINT_WINDOW} evaluation bars with this data ({first} to {last}); "
                         "its results on these bars are not out-of-sample")
    return found
