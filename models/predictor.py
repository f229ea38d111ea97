"""Serve forecasts from any registry entry: batched, distribution-exact, cached.

    >>> predictor = Predictor.from_entry(registry.get("eurusd-lora"))  # doctest: +SKIP
    >>> frame = predictor.predict(bars, start=4000)   # one row per bar from index 4000 on  # doctest: +SKIP
    >>> fast = Predictor.from_entry(entry, forecasts_per_pass=16, precision="bfloat16")  # doctest: +SKIP

The forecast for bar ``t`` reads the ``codec.context`` returns ending at bar
``t`` (closes up to and including ``t``) and never anything later. Instead of
sampling text, it scores all 100 two-digit values of the next return exactly,
in one forward pass: the ten first-digit candidates are appended to the prompt
with an attention mask that lets each see the prompt and itself only, so their
logits give the second digit for each first digit. The forecast is the close times the
exponential of the mean return; ``p_up`` is the probability mass above "no
change" (half of "no change" counts as up); ``sigma`` and the quantiles ``q05 .. q95``
of the next close come from the same 100 bins, and the frame keeps the bins themselves
for the distribution scores (``llmsignal.models.distribution``).

``forecasts_per_pass=k`` trades context for speed: the bars ``t`` with the
same ``t // k`` share one window of ``context`` returns, and each bar's
candidates see the window only up to its own close, so bar ``t`` reads the
``context - k + 1 + t % k`` returns ending at ``t``. The model was trained on
every prefix of its windows, so these shorter contexts are ones it knows; a
pass of k bars costs ``3 * context + 10 * k`` tokens instead of k times
``3 * context + 10``.
``precision="bfloat16"`` runs the model under autocast: about twice as fast on
CPUs with AMX or AVX-512 BF16, and off from float32 by a few hundredths of a
basis point.

An entry tuned with ``inputs="ohlc"`` reads each bar's high and low too (``describe(closes, ends, high=...,
low=...)``); its text still ends with the separator after bar ``t``, so the same candidates score the next
return, and the fast paths above work as they do for closes (each bar costs five tokens instead of three).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from llmsignal.finetune.codec import PriceCodec, TokenTable
from llmsignal.finetune.precision import PrecisionError, autocast, device, resolve_precision
from llmsignal.models.distribution import binned_frame
from llmsignal.models.entries import frame_fingerprint, load_entry_model
from llmsignal.models.registry import Entry

CACHE_VERSION = 2  # 2: sigma, quantiles and the 100 bins beside forecast and p_up


class PredictionError(ValueError):
    """A prediction option or request the entry cannot serve."""


def check_forecasts_per_pass(k: int, context: int) -> None:
    """Refuse a window-sharing setting the codec's context cannot hold."""
    if not 1 <= k <= context:
        raise PredictionError(f"forecasts per pass must be between 1 and the context ({context}), not {k}")


class Predictor:
    def __init__(self, model: torch.nn.Module, tokenizer, codec: PriceCodec, batch_size: int = 64,
                 name: str = "model", forecasts_per_pass: int = 1, precision: str = "float32") -> None:
        check_forecasts_per_pass(forecasts_per_pass, codec.context)
        try:
            self.number_format = resolve_precision(precision)
        except PrecisionError as err:
            raise PredictionError(str(err)) from None
        self.model = model.to(device()).eval()
        self.table = TokenTable(tokenizer, codec.fields)
        self.codec = codec
        self.batch_size = batch_size
        self.name = name
        self.forecasts_per_pass = forecasts_per_pass
        self.precision = "float32"  # the exactness probe compares like with like
        self.use_tree = self._tree_is_exact()
        self.precision = self.number_format.name

    @classmethod
    def from_entry(cls, entry: Entry, merge: bool = False, batch_size: int = 64, forecasts_per_pass: int = 1,
                   precision: str = "float32") -> Predictor:
        """Rebuild an entry's model on its base; ``merge`` folds LoRA/IA3 into the base weights."""
        model, tokenizer, codec = load_entry_model(entry, merge=merge)
        return cls(model, tokenizer, codec, batch_size, name=entry.ref,
                   forecasts_per_pass=forecasts_per_pass, precision=precision)

    @torch.no_grad()
    def distribution(self, contexts: np.ndarray) -> torch.Tensor:
        """Probabilities of the 100 bins of the next return, for bins of shape (batch, context)."""
        if self.use_tree:
            return self.window_distribution(contexts, 1)[:, 0]
        return self._expanded_distribution(contexts)

    @torch.no_grad()
    def window_distribution(self, windows: np.ndarray, points: int) -> torch.Tensor:
        """Next-return probabilities after each of the last ``points`` values of each window: (batch, points, 100).

        Point ``j`` reads the window up to value ``width - points + j`` only; needs a model whose
        attention the mask fully describes (``use_tree``).
        """
        if not 1 <= points <= np.shape(windows)[1]:
            raise PredictionError(f"a window of {np.shape(windows)[1]} values has no {points} forecast points")
        ids = self.table.ids(windows).to(device())
        digits = self.table.digits.to(device())
        batch, length = ids.shape
        per_bar = self.table.tokens_per_bar
        separators = torch.arange(length - per_bar * (points - 1) - 1, length, per_bar,
                                  device=ids.device)  # where each point's prompt ends
        mask, positions = _candidate_mask(length, separators)
        read = torch.cat([separators, torch.arange(length, length + 10 * points, device=ids.device)])
        logits = self._logits(input_ids=torch.cat([ids, digits.repeat(batch, points)], 1),
                              attention_mask=mask.expand(batch, 1, -1, -1), position_ids=positions.expand(batch, -1),
                              logits_to_keep=read)[:, :, digits]
        return _joint(logits[:, :points], logits[:, points:].reshape(batch, points, 10, 10)).cpu()

    @torch.no_grad()
    def _expanded_distribution(self, contexts: np.ndarray) -> torch.Tensor:
        """Ten full sequences per prompt: slow, but exact for any model."""
        ids, digits = self.table.ids(contexts).to(device()), self.table.digits.to(device())
        batch = len(ids)
        expanded = torch.cat([ids.repeat_interleave(10, 0), digits.repeat(batch)[:, None]], 1)
        logits = self._logits(input_ids=expanded, logits_to_keep=2)[:, :, digits]
        return _joint(logits[::10, 0], logits[:, 1].view(batch, 10, 10)).cpu()

    def _logits(self, **inputs) -> torch.Tensor:
        """The model's logits at the positions ``logits_to_keep`` names: GPT-2's 50,257-wide head only where read."""
        with autocast(self.precision):
            return self.model(**inputs).logits.float()

    def context_lengths(self, ends: np.ndarray) -> np.ndarray:
        """How many returns the forecast for each bar in ``ends`` reads."""
        k = self.forecasts_per_pass
        return self.codec.context - k + 1 + np.asarray(ends) % k

    def probabilities(self, closes: np.ndarray, ends: np.ndarray, progress: bool = False,
                      high: np.ndarray | None = None, low: np.ndarray | None = None) -> np.ndarray:
        """The 100 bin probabilities of the next return after each bar index in ``ends``, from bars up to it only
        (closes, and with an ohlc entry the same bars' ``high`` and ``low``)."""
        closes = np.asarray(closes, dtype=float)
        ends = np.asarray(ends, dtype=int)
        context = self.codec.context
        if len(ends) and ends.min() < context:
            raise PredictionError(f"a forecast needs {context + 1} closes; bar {ends.min()} has only {ends.min() + 1}")
        if len(ends) and ends.max() >= len(closes):
            raise PredictionError(f"bar {ends.max()} is past the last of {len(closes)} closes")
        try:
            bins = self.codec.bar_bins(closes, high, low)  # bins[i]: the return from close i to close i+1 (, range)
        except ValueError as err:
            raise PredictionError(f"{self.name}: {err}") from None
        bars, row_of_bar = np.unique(ends, return_inverse=True)  # each bar once, in order
        batches = self._shared_windows if self.use_tree and self.forecasts_per_pass > 1 else self._one_per_pass
        probs = torch.full((len(bars), 100), float("nan"), dtype=torch.float64)
        with tqdm(total=len(bars), desc=f"predict {self.name}", unit="bar", leave=False,
                  disable=not progress or bool(os.environ.get("TQDM_DISABLE"))) as bar:  # -q sets it
            for rows, chunk in batches(bins, bars):
                probs[rows] = chunk
                bar.update(len(rows))
        return probs[row_of_bar].numpy()

    def describe(self, closes: np.ndarray, ends: np.ndarray, progress: bool = False,
                 high: np.ndarray | None = None, low: np.ndarray | None = None) -> pd.DataFrame:
        """The forecast frame (``llmsignal.models.distribution``) of each bar index in ``ends``: one row each."""
        ends = np.asarray(ends, dtype=int)
        probs = self.probabilities(closes, ends, progress, high, low)
        return binned_frame(np.asarray(closes, dtype=float)[ends], probs, self.codec.step)

    def forecast(self, closes: np.ndarray, ends: np.ndarray, progress: bool = False, high: np.ndarray | None = None,
                 low: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Next-close forecast and P(up) for each bar index in ``ends``, from bars up to that bar only."""
        frame = self.describe(closes, ends, progress, high, low)
        return frame["forecast"].to_numpy(), frame["p_up"].to_numpy()

    def _one_per_pass(self, bins: np.ndarray, bars: np.ndarray) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
        """Each bar's own context, in batches of bars that read the same number of returns."""
        lengths = self.context_lengths(bars)
        for length in np.unique(lengths):
            rows = np.flatnonzero(lengths == length)
            for i in range(0, len(rows), self.batch_size):
                chunk = rows[i:i + self.batch_size]
                yield chunk, self.distribution(np.stack([bins[t - length:t] for t in bars[chunk]]))

    def _shared_windows(self, bins: np.ndarray, bars: np.ndarray) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
        """One window per group of k bars (``bars`` distinct); the last group may be cut short where the closes end."""
        k, context = self.forecasts_per_pass, self.codec.context
        row_of = {t: i for i, t in enumerate(bars.tolist())}
        groups = np.unique(bars // k)
        last_close = len(bins)  # closes run one past the last return
        full = groups[groups * k + k - 1 <= last_close]
        # as many windows as keep the attention scores of a pass (quadratic in its length) the size of
        # ``batch_size`` one-forecast prompts': past that, they outgrow the cache and a pass gets slower per bar
        prompt = self.table.tokens_per_bar * context
        per_pass = max(1, self.batch_size * (prompt + 10) ** 2 // (prompt + 10 * k) ** 2)
        for i in range(0, len(full), per_pass):
            first_bars = full[i:i + per_pass] * k
            windows = np.stack([bins[b + k - 1 - context:b + k - 1] for b in first_bars])
            yield from _requested_points(row_of, first_bars, self.window_distribution(windows, k))
        for group in groups[groups * k + k - 1 > last_close]:
            first_bar = group * k
            window = bins[first_bar + k - 1 - context:last_close]
            points = last_close - first_bar + 1
            yield from _requested_points(row_of, [first_bar], self.window_distribution(window[None], points))

    def predict(self, bars: pd.DataFrame, start: int, progress: bool = True) -> pd.DataFrame:
        """The forecast frame of every bar from position ``start`` to the end of ``bars``, indexed by their times."""
        ranges = {k: bars[k].to_numpy() for k in ("high", "low")} if self.codec.inputs == "ohlc" else {}
        frame = self.describe(bars["close"].to_numpy(), np.arange(start, len(bars)), progress=progress, **ranges)
        return frame.set_axis(bars.index[start:])

    def _tree_is_exact(self) -> bool:
        """Whether one pass with the candidate mask gives what ten plain passes give, at this many points.

        Some methods (prefix tuning) add attention of their own that the mask does not cover, and some
        attention implementations cannot take a pass longer than the model's positions.
        """
        k, context = self.forecasts_per_pass, self.codec.context
        shape = (2, context) if self.codec.fields == 1 else (2, context, self.codec.fields)
        windows = np.random.default_rng(0).integers(40, 60, size=shape)
        try:
            shared = self.window_distribution(windows, k)
        except (RuntimeError, ValueError, TypeError, IndexError):
            return False
        return all(torch.allclose(shared[:, point], self._expanded_distribution(windows[:, :length]), atol=1e-6)
                   for point, length in ((0, context - k + 1), (k - 1, context)))


def _requested_points(row_of: dict[int, int], first_bars: Sequence[int],
                      probs: torch.Tensor) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
    """The requested bars among each window's points, as (rows of ``ends``, their distributions)."""
    for first_bar, window_probs in zip(first_bars, probs, strict=True):
        bars = [(row_of[t], j) for j, t in enumerate(range(first_bar, first_bar + len(window_probs))) if t in row_of]
        if bars:
            rows, points = map(list, zip(*bars, strict=True))
            yield np.array(rows), window_probs[points]


def _candidate_mask(length: int, separators: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Additive attention mask and position ids for a causal prompt followed by ten candidates per point.

    The candidates of the point whose prompt ends at ``separators[j]`` see the prompt up to there and
    themselves only, at the position right after it.
    """
    dev = separators.device
    size = length + 10 * len(separators)
    allowed = torch.zeros(size, size, dtype=torch.bool, device=dev)
    allowed[:length, :length] = torch.ones(length, length, dtype=torch.bool, device=dev).tril()
    candidates = torch.arange(length, size, device=dev)
    prompt_end = separators.repeat_interleave(10)
    allowed[length:, :length] = torch.arange(length, device=dev)[None] <= prompt_end[:, None]
    allowed[candidates, candidates] = True
    # an additive float mask: the adapters library reads a 2D/4D mask but cannot take a boolean one
    mask = torch.zeros(allowed.shape, device=dev).masked_fill(~allowed, torch.finfo(torch.float32).min)
    positions = torch.cat([torch.arange(length, device=dev), prompt_end + 1])
    return mask, positions


def _joint(first_logits: torch.Tensor, second_logits: torch.Tensor) -> torch.Tensor:
    """P(bin) = P(first digit) x P(second digit | first digit), over the last axes, as 100 bins."""
    first = torch.log_softmax(first_logits.double(), dim=-1)
    second = torch.log_softmax(second_logits.double(), dim=-1)
    return (first[..., None] + second).exp().flatten(-2)


def cached_predictions(entry: Entry, bars: pd.DataFrame, start: int, cache_dir: Path, merge: bool = False,
                       forecasts_per_pass: int = 1, precision: str = "float32") -> tuple[pd.DataFrame, float]:
    """Forecasts of ``entry`` for ``bars[start:]``, from the cache when the same entry saw the same bars.

    Returns the frame and the prediction time per bar in milliseconds (as measured when computed). The
    file name carries ``CACHE_VERSION``: a cache written before the frame gained columns is never read.
    """
    precision = resolve_precision(precision).name  # the cache names what ran, never "auto"
    options = f"{'-merged' if merge else ''}{f'-k{forecasts_per_pass}' if forecasts_per_pass > 1 else ''}" + (
        f"-{precision}" if precision != "float32" else "")
    fingerprint = frame_fingerprint(bars, entry.metadata["codec"].get("inputs", "close"))
    path = Path(cache_dir) / (f"{entry.name}-{entry.version}-{fingerprint}-{start}{options}"
                              f"-v{CACHE_VERSION}.csv")
    if path.exists():
        cached = pd.read_csv(path, index_col=0, parse_dates=[0])
        # copy: read_csv gives each of the 110 columns a block of its own, and pandas warns at every insert
        return cached.drop(columns="ms_per_bar").copy(), float(cached["ms_per_bar"].iloc[0])
    predictor = Predictor.from_entry(entry, merge=merge, forecasts_per_pass=forecasts_per_pass, precision=precision)
    began = pd.Timestamp.now()
    frame = predictor.predict(bars, start)
    ms_per_bar = (pd.Timestamp.now() - began).total_seconds() * 1000 / max(1, len(frame))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    frame.assign(ms_per_bar=ms_per_bar).to_csv(tmp)
    tmp.replace(path)
    return frame, ms_per_bar
