"""Prices as text, LLMTime-style.

Closes become log-returns, each return is quantised into one of 100 bins and
written as two spaced digits followed by a separator::

    >>> codec = PriceCodec(step=0.0001)
    >>> codec.encode(codec.to_bins([1.0, 1.0001, 1.0]))
    ' 5 1 , 4 9 ,'

Bin 50 is "no change"; bin ``b`` stands for a log-return of ``(b - 50) * step``.
``step`` is fitted on the training split only (``PriceCodec.fit``) so that 99% of
training returns fall within 45 bins of zero; returns beyond the range are clipped
to bins 0 and 99. Spacing the digits makes each one a single token for a
character-level tokenizer and for GPT-2's byte-level BPE alike (``" 7"`` and
``" ,"`` are GPT-2 tokens), so every value costs exactly three tokens.

With ``inputs="ohlc"`` each bar is written as its return bin and then its range bin (the bar's
``log(high / low)``, quantised with ``range_step``, also fitted on the training split only, so that 99% of
training ranges fall below bin 90), five tokens a bar::

    >>> ohlc = PriceCodec(step=0.0001, inputs="ohlc", range_step=0.0001)
    >>> ohlc.encode(ohlc.bar_bins([1.0, 1.0001, 1.0], high=[1.0, 1.0002, 1.0001], low=[1.0, 1.0, 0.9999]))
    ' 5 1 0 2 , 4 9 0 2 ,'

The text still ends with a separator where the next return's first digit follows, and the target is still the
next close's return bin: the 100-bin distribution the predictor reads is the same, and only the prompt reads more.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

BINS = 100
ZERO_BIN = 50
TOKENS_PER_VALUE = 3  # a close-only bar: two digits and the separator
SEPARATOR = ","
_COVERAGE = 0.99
_COVERAGE_BINS = 45
_RANGE_COVERAGE_BINS = 90


@dataclass(frozen=True)
class PriceCodec:
    """Turns closes into digit text and next-value distributions back into prices."""

    step: float
    context: int = 48
    inputs: str = "close"
    range_step: float | None = None  # the log(high / low) each range bin adds (ohlc only)

    @classmethod
    def fit(cls, closes: np.ndarray, context: int = 48, high: np.ndarray | None = None,
            low: np.ndarray | None = None) -> PriceCodec:
        """Choose ``step`` from the returns of ``closes`` (pass the training split only); given the same bars'
        ``high`` and ``low`` too, an ohlc codec whose ``range_step`` comes from their ranges."""
        returns = np.abs(np.diff(np.log(np.asarray(closes, dtype=float))))
        scale = float(np.quantile(returns, _COVERAGE)) if returns.size else 0.0
        if not np.isfinite(scale) or scale <= 0:
            raise ValueError("cannot fit the price codec: the closes never move")
        if high is None or low is None:
            return cls(step=scale / _COVERAGE_BINS, context=context)
        ranges = _log_ranges(high, low)
        range_scale = float(np.quantile(ranges, _COVERAGE)) if ranges.size else 0.0
        if not np.isfinite(range_scale) or range_scale <= 0:
            raise ValueError("cannot fit the range codec: high equals low on (nearly) every bar, so the bars carry "
                             "no range (close-only data?); use --inputs close")
        return cls(step=scale / _COVERAGE_BINS, context=context, inputs="ohlc",
                   range_step=range_scale / _RANGE_COVERAGE_BINS)

    @property
    def fields(self) -> int:
        """Values written per bar: its return, and its range with ohlc inputs."""
        return 2 if self.inputs == "ohlc" else 1

    def bar_bins(self, closes: np.ndarray, high: np.ndarray | None = None,
                 low: np.ndarray | None = None) -> np.ndarray:
        """What the model reads of each bar after the first: shape (n - 1,) of return bins, or with ohlc inputs
        (n - 1, 2) of [return bin, range bin]; row ``i`` holds bar ``i + 1`` only (its close's return, its range)."""
        returns = self.to_bins(closes)
        if self.inputs == "close":
            return returns
        if high is None or low is None or self.range_step is None:
            raise ValueError("an ohlc entry reads each bar's high and low too, and none were given")
        ranges = np.clip(np.rint(_log_ranges(high, low)[1:] / self.range_step), 0, BINS - 1).astype(np.int64)
        return np.stack([returns, ranges], axis=-1)

    def to_bins(self, closes: np.ndarray) -> np.ndarray:
        """Bins of the log-returns between consecutive closes (one fewer than closes)."""
        returns = np.diff(np.log(np.asarray(closes, dtype=float)))
        return np.clip(np.rint(returns / self.step) + ZERO_BIN, 0, BINS - 1).astype(np.int64)

    def bin_returns(self) -> np.ndarray:
        """The log-return each bin stands for."""
        return (np.arange(BINS) - ZERO_BIN) * self.step

    @staticmethod
    def encode(bins: np.ndarray) -> str:
        """Text of bins of shape (n,), or (n, fields): each bar's values' digits, then the separator."""
        rows = np.asarray(bins, dtype=int)
        rows = rows[:, None] if rows.ndim == 1 else rows
        return "".join("".join(f" {b // 10} {b % 10}" for b in row) + f" {SEPARATOR}" for row in rows)

    @staticmethod
    def decode(text: str) -> np.ndarray:
        values = [v.replace(" ", "") for v in text.split(SEPARATOR) if v.strip()]
        return np.array([int(v) for v in values], dtype=np.int64)

    def to_dict(self) -> dict:
        """The codec as an entry's metadata holds it; a close-only codec exactly as before ohlc inputs existed."""
        fields = asdict(self)
        return fields if self.inputs == "ohlc" else {k: fields[k] for k in ("step", "context")}


def _log_ranges(high: np.ndarray, low: np.ndarray) -> np.ndarray:
    return np.log(np.asarray(high, dtype=float) / np.asarray(low, dtype=float))


class TokenTable:
    """Token ids of the ten digits and the separator for one tokenizer.

    Building ids by table lookup keeps tokenisation out of the hot loops; the
    constructor checks the table against the tokenizer itself.
    """

    def __init__(self, tokenizer, fields: int = 1) -> None:
        ids = tokenizer.encode(PriceCodec.encode(np.arange(0, BINS, 11)), add_special_tokens=False)
        expected = TOKENS_PER_VALUE * len(range(0, BINS, 11))
        if len(ids) != expected:
            raise ValueError(
                f"tokenizer {type(tokenizer).__name__} does not encode spaced digits as one token each "
                f"({len(ids)} tokens where {expected} were expected)"
            )
        digits = {}
        for value, (d1, d2, sep) in zip(range(0, BINS, 11), np.reshape(ids, (-1, 3)), strict=True):
            digits[value // 10], digits[value % 10] = d1, d2
            self.separator = int(sep)
        self.digits = torch.tensor([digits[d] for d in range(10)], dtype=torch.long)
        self.fields = fields
        self.tokens_per_bar = 2 * fields + 1

    def ids(self, bins: np.ndarray) -> torch.Tensor:
        """Token ids for bins of shape (..., n), or (..., n, fields) with more than one field: (..., n * tokens)."""
        bins = torch.as_tensor(np.asarray(bins), dtype=torch.long)
        if self.fields == 1:
            bins = bins[..., None]
        tens, units = self.digits[bins // 10], self.digits[bins % 10]
        digits = torch.stack([tens, units], dim=-1).flatten(-2)  # (..., n, 2 * fields)
        sep = torch.full_like(digits[..., :1], self.separator)
        return torch.cat([digits, sep], dim=-1).flatten(-2)
