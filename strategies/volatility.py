"""Volatility targeting: the side of the forecast (or always long), sized down when the forecast distribution is
wide."""

from __future__ import annotations

import math

from llmsignal.strategies.base import LLMSignalStrategy, Signal, StrategyError
from llmsignal.strategies.threshold import threshold_exposure


def volatility_target_exposure(expected_return: float, sigma: float, target_bps: float = 5.0,
                               threshold_bps: float = 0.5) -> float:
    """``sign(expected return) * min(1, target / sigma)``, flat while the forecast return is within the threshold.

    ``sigma`` is the forecast's standard deviation of the next log-return; ``target_bps`` the standard
    deviation per bar, in basis points, that a full position may carry: a position holds about
    ``target_bps`` of risk per bar whenever the forecast expects more than that.

    >>> volatility_target_exposure(0.0002, sigma=0.0010)   # 2 bp up, 10 bp wide: half of the 5 bp target
    0.5
    >>> volatility_target_exposure(-0.0002, sigma=0.0004), volatility_target_exposure(0.00001, sigma=0.0004)
    (-1.0, 0.0)
    """
    side = threshold_exposure(expected_return, threshold_bps)
    return side * min(1.0, target_bps * 1e-4 / sigma) if sigma > 0 else side


SIDES = ("forecast", "long")


class VolatilityTargetStrategy(LLMSignalStrategy):
    """Holds ``volatility_target_exposure(expected return, sigma, target_bps, threshold_bps)``.

    ``target_bps`` (> 0): the per-bar standard deviation, in basis points, of a position at the target;
    ``threshold_bps`` (>= 0): the forecast return, in basis points, a position needs (as ``ThresholdStrategy``);
    ``side``: ``forecast`` (the forecast's side) or ``long`` (always long, ``min(1, target / sigma)``: a
    volatility-managed position, whose P&L tells what the forecast's sigma alone is worth, whatever its direction).
    It needs ``sigma``, which predictions from ``llmsignal run`` and ``llmsignal predict`` carry.
    """

    params = (("target_bps", 5.0), ("threshold_bps", 0.5), ("side", "forecast"))

    def __init__(self) -> None:
        super().__init__()
        if not (self.p.target_bps > 0 and self.p.threshold_bps >= 0 and self.p.side in SIDES):
            raise StrategyError(f"VolatilityTargetStrategy needs target_bps > 0, threshold_bps >= 0 and side "
                                f"{' or '.join(SIDES)}, got target_bps={self.p.target_bps}, "
                                f"threshold_bps={self.p.threshold_bps}, side={self.p.side}")

    def decide(self, signal: Signal) -> float:
        if not (math.isfinite(signal.sigma) and signal.sigma >= 0):
            raise StrategyError(f"VolatilityTargetStrategy needs the forecast's sigma, and the predictions have "
                                f"none at {signal.timestamp} (a file from before sigma existed? make it again with "
                                "llmsignal predict or run, or trade it with ThresholdStrategy)")
        if self.p.side == "long":  # a sure upward call of at least the threshold: only sigma sizes it
            return volatility_target_exposure(1.0, signal.sigma, self.p.target_bps, 0.0)
        return volatility_target_exposure(signal.expected_return, signal.sigma, self.p.target_bps,
                                          self.p.threshold_bps)
