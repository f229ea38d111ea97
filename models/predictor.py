"""Serve forecasts from any registry entry: batched, distribution-exact, cached.

    >>> predictor = Predictor.from_entry(registry.get("eurusd-lora"))
    >>> frame = predictor.predict(bars, start=4000)   # one row per bar from index 4000 on

The forecast for bar ``t`` reads the ``codec.context`` returns ending at bar
``t`` (closes up to and including ``t``) and never anything later. Instead of
sampling text, it scores all 100 two-digit values of the next return exactly,
in one forward pass: the ten first-digit candidates are appended to the prompt
with an attention mask that lets each see the prompt and itself only, so their
logits give the second digit for each first digit. The forecast is the close times the
exponential of the mean return; ``p_up`` is the probability mass above "no
change" (half of "no change" counts as up).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file
from tqdm.auto import tqdm

from finetune.base import load_base
from finetune.codec import ZERO_BIN, PriceCodec, TokenTable
from finetune.methods import get_model, load_trainable_state, make_method, merge_for_serving
from finetune.train import device
from models.registry import Entry, RegistryError

WEIGHTS = "weights.safetensors"


class Predictor:
    def __init__(self, model: torch.nn.Module, tokenizer, codec: PriceCodec, batch_size: int = 64,
                 name: str = "model") -> None:
        self.model = model.to(device()).eval()
        self.table = TokenTable(tokenizer)
        self.codec = codec
        self.batch_size = batch_size
        self.name = name
        self.returns = torch.tensor(codec.bin_returns(), dtype=torch.float64)
        self.use_tree = self._tree_is_exact()

    @classmethod
    def from_entry(cls, entry: Entry, merge: bool = False, batch_size: int = 64) -> Predictor:
        """Rebuild an entry's model on its base; ``merge`` folds LoRA/IA3 into the base weights."""
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
        return cls(model, base.tokenizer, PriceCodec(**meta["codec"]), batch_size, name=entry.ref)

    @torch.no_grad()
    def distribution(self, contexts: np.ndarray) -> torch.Tensor:
        """Probabilities of the 100 bins of the next return, for bins of shape (batch, context)."""
        ids = self.table.ids(contexts).to(device())
        digits = self.table.digits.to(device())
        first_logits, second_logits = (self._tree if self.use_tree else self._expanded)(ids, digits)
        first = torch.log_softmax(first_logits.double(), dim=-1)
        second = torch.log_softmax(second_logits.double(), dim=-1)
        return (first[:, :, None] + second).exp().view(len(ids), 100).cpu()

    def _tree(self, ids: torch.Tensor, digits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One pass: the ten first-digit candidates follow the prompt, each seeing the prompt and itself only."""
        batch, length = ids.shape
        allowed = torch.zeros(length + 10, length + 10, dtype=torch.bool, device=ids.device)
        allowed[:, :length] = torch.ones(length + 10, length, device=ids.device).tril().bool()
        allowed[length:, length:] = torch.eye(10, dtype=torch.bool, device=ids.device)
        # an additive float mask: the adapters library reads a 2D/4D mask but cannot take a boolean one
        mask = torch.zeros(allowed.shape, device=ids.device).masked_fill(~allowed, torch.finfo(torch.float32).min)
        positions = torch.cat([torch.arange(length), torch.full((10,), length)]).to(ids.device)
        logits = self.model(input_ids=torch.cat([ids, digits.repeat(batch, 1)], 1),
                            attention_mask=mask.expand(batch, 1, -1, -1),
                            position_ids=positions.expand(batch, -1)).logits
        return logits[:, length - 1, digits], logits[:, length:][:, :, digits]

    def _expanded(self, ids: torch.Tensor, digits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Ten full sequences per prompt: slow, but exact for any model."""
        batch = len(ids)
        expanded = torch.cat([ids.repeat_interleave(10, 0), digits.repeat(batch)[:, None]], 1)
        logits = self.model(input_ids=expanded).logits
        return logits[::10, -2, digits], logits[:, -1, digits].view(batch, 10, 10)

    def forecast(self, closes: np.ndarray, ends: np.ndarray, progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Next-close forecast and P(up) for each bar index in ``ends``, from closes up to that bar only."""
        closes = np.asarray(closes, dtype=float)
        ends = np.asarray(ends, dtype=int)
        context = self.codec.context
        if len(ends) and ends.min() < context:
            raise ValueError(f"a forecast needs {context + 1} closes; bar {ends.min()} has only {ends.min() + 1}")
        bins = self.codec.to_bins(closes)  # bins[i] is the return from close i to close i+1
        forecasts, ups = np.empty(len(ends)), np.empty(len(ends))
        steps = range(0, len(ends), self.batch_size)
        for i in tqdm(steps, desc=f"predict {self.name}", unit="batch", leave=False, disable=not progress):
            chunk = ends[i:i + self.batch_size]
            contexts = np.stack([bins[t - context:t] for t in chunk])
            probs = self.distribution(contexts)
            mean_return = (probs @ self.returns).numpy()
            forecasts[i:i + len(chunk)] = closes[chunk] * np.exp(mean_return)
            ups[i:i + len(chunk)] = (probs[:, ZERO_BIN + 1:].sum(1) + 0.5 * probs[:, ZERO_BIN]).numpy()
        return forecasts, ups

    def predict(self, bars: pd.DataFrame, start: int, progress: bool = True) -> pd.DataFrame:
        """Forecasts for every bar from position ``start`` to the end of ``bars``."""
        ends = np.arange(start, len(bars))
        forecast, p_up = self.forecast(bars["close"].to_numpy(), ends, progress=progress)
        return pd.DataFrame({"close": bars["close"].to_numpy()[start:], "forecast": forecast, "p_up": p_up},
                            index=bars.index[start:])

    def _tree_is_exact(self) -> bool:
        """Some methods (prefix tuning) add attention of their own that the one-pass mask does not cover."""
        probe = np.random.default_rng(0).integers(40, 60, size=(2, 8))
        self.use_tree = False
        reference = self.distribution(probe)
        self.use_tree = True
        try:
            return bool(torch.allclose(self.distribution(probe), reference, atol=1e-6))
        except (RuntimeError, ValueError, TypeError, IndexError):
            return False

def frame_fingerprint(bars: pd.DataFrame) -> str:
    digest = hashlib.sha256(bars.index.asi8.tobytes() if hasattr(bars.index, "asi8") else b"")
    digest.update(np.ascontiguousarray(bars["close"].to_numpy(dtype=np.float64)).tobytes())
    return digest.hexdigest()[:16]


def cached_predictions(entry: Entry, bars: pd.DataFrame, start: int, cache_dir: Path,
                       merge: bool = False) -> tuple[pd.DataFrame, float]:
    """Forecasts of ``entry`` for ``bars[start:]``, from the cache when the same entry saw the same bars.

    Returns the frame and the prediction time per bar in milliseconds (as measured when computed).
    """
    key = f"{entry.name}-{entry.version}-{frame_fingerprint(bars)}-{start}{'-merged' if merge else ''}"
    path = Path(cache_dir) / f"{key}.csv"
    if path.exists():
        cached = pd.read_csv(path, index_col=0, parse_dates=[0])
        return cached.drop(columns="ms_per_bar"), float(cached["ms_per_bar"].iloc[0])
    predictor = Predictor.from_entry(entry, merge=merge)
    began = pd.Timestamp.now()
    frame = predictor.predict(bars, start)
    ms_per_bar = (pd.Timestamp.now() - began).total_seconds() * 1000 / max(1, len(frame))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    frame.assign(ms_per_bar=ms_per_bar).to_csv(tmp)
    tmp.replace(path)
    return frame, ms_per_bar
