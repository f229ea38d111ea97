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
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

BINS = 100
ZERO_BIN = 50
TOKENS_PER_VALUE = 3
SEPARATOR = ","
_COVERAGE = 0.99
_COVERAGE_BINS = 45


@dataclass(frozen=True)
class PriceCodec:
    """Turns closes into digit text and next-value distributions back into prices."""

    step: float
    context: int = 48

    @classmethod
    def fit(cls, closes: np.ndarray, context: int = 48) -> PriceCodec:
        """Choose ``step`` from the returns of ``closes`` (pass the training split only)."""
        returns = np.abs(np.diff(np.log(np.asarray(closes, dtype=float))))
        scale = float(np.quantile(returns, _COVERAGE)) if returns.size else 0.0
        if not np.isfinite(scale) or scale <= 0:
            raise ValueError("cannot fit the price codec: the closes never move")
        return cls(step=scale / _COVERAGE_BINS, context=context)

    def to_bins(self, closes: np.ndarray) -> np.ndarray:
        """Bins of the log-returns between consecutive closes (one fewer than closes)."""
        returns = np.diff(np.log(np.asarray(closes, dtype=float)))
        return np.clip(np.rint(returns / self.step) + ZERO_BIN, 0, BINS - 1).astype(np.int64)

    def bin_returns(self) -> np.ndarray:
        """The log-return each bin stands for."""
        return (np.arange(BINS) - ZERO_BIN) * self.step

    @staticmethod
    def encode(bins: np.ndarray) -> str:
        return "".join(f" {b // 10} {b % 10} {SEPARATOR}" for b in np.asarray(bins, dtype=int))

    @staticmethod
    def decode(text: str) -> np.ndarray:
        values = [v.replace(" ", "") for v in text.split(SEPARATOR) if v.strip()]
        return np.array([int(v) for v in values], dtype=np.int64)

    def to_dict(self) -> dict:
        return asdict(self)


class TokenTable:
    """Token ids of the ten digits and the separator for one tokenizer.

    Building ids by table lookup keeps tokenisation out of the hot loops; the
    constructor checks the table against the tokenizer itself.
    """

    def __init__(self, tokenizer) -> None:
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

    def ids(self, bins: np.ndarray) -> torch.Tensor:
        """Token ids for bins of shape (..., n): shape (..., 3n)."""
        bins = torch.as_tensor(np.asarray(bins), dtype=torch.long)
        tens, units = self.digits[bins // 10], self.digits[bins % 10]
        sep = torch.full_like(tens, self.separator)
        return torch.stack([tens, units, sep], dim=-1).flatten(-2)
