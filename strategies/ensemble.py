"""Combine the forecasts of several models on the same bars: a majority vote or an average."""

from __future__ import annotations

from collections.abc import Sequence

from llmsignal.strategies.base import LLMSignalStrategy, Signal, StrategyError
from llmsignal.strategies.threshold import threshold_exposure

MODES = ("majority", "average")


def ensemble_exposure(close: float, forecasts: Sequence[float], mode: str = "majority",
                      threshold_bps: float = 0.5) -> float:
    """``1``, ``-1`` or ``0`` from several forecasts of the next close.

    ``majority``: each forecast votes up (above ``close``) or down (below); long
    when more than half of all forecasts vote up, short when more than half
    vote down, flat otherwise (a tie, or too many forecasts equal to the close).
    ``average``: long (short) when the mean forecast return exceeds
    ``threshold_bps`` (is below ``-threshold_bps``), flat otherwise.

    >>> ensemble_exposure(1.0, [1.1, 1.2, 0.9])
    1.0
    >>> ensemble_exposure(1.0, [1.0001, 0.9996], mode="average", threshold_bps=0.5)
    -1.0
    """
    if mode == "majority":
        ups = sum(f > close for f in forecasts)
        downs = sum(f < close for f in forecasts)
        return 1.0 if 2 * ups > len(forecasts) else -1.0 if 2 * downs > len(forecasts) else 0.0
    if mode == "average":
        return threshold_exposure(sum(f / close - 1.0 for f in forecasts) / len(forecasts), threshold_bps)
    raise StrategyError(f"unknown ensemble mode {mode!r}; use one of {', '.join(MODES)}")


class EnsembleStrategy(LLMSignalStrategy):
    """Trades ``ensemble_exposure`` over every signal feed: the first data plus the extra feeds.

    The extra feeds hold other models' forecasts on the first data's bars
    (``run_backtest(..., extra_feeds={"name": frame})``); every forecast is
    compared with the first data's close. ``mode``: ``"majority"`` or
    ``"average"``; ``threshold_bps``: the mean forecast return, in basis points,
    that ``"average"`` needs to hold a position.
    """

    params = (("mode", "majority"), ("threshold_bps", 0.5))

    def __init__(self) -> None:
        super().__init__()
        if self.p.mode not in MODES:
            raise StrategyError(f"unknown ensemble mode {self.p.mode!r}; use one of {', '.join(MODES)}")

    def decide(self, signal: Signal) -> float:
        forecasts = [forecast for forecast, _ in signal.forecasts.values()]
        return ensemble_exposure(signal.close, forecasts, self.p.mode, self.p.threshold_bps)
