"""Long when the forecast is above the close by more than a threshold, short when below, flat otherwise."""

from __future__ import annotations

from llmsignal.strategies.base import LLMSignalStrategy, Signal


def threshold_exposure(expected_return: float, threshold_bps: float = 0.5) -> float:
    """``1`` above ``threshold_bps`` (basis points of forecast return), ``-1`` below minus it, ``0`` between.

    >>> threshold_exposure(0.0001), threshold_exposure(-0.0001), threshold_exposure(0.00004)
    (1.0, -1.0, 0.0)
    """
    edge = expected_return * 1e4
    return 1.0 if edge > threshold_bps else -1.0 if edge < -threshold_bps else 0.0


class ThresholdStrategy(LLMSignalStrategy):
    """``threshold_bps``: the forecast return (in basis points) a position needs."""

    params = (("threshold_bps", 0.5),)

    def decide(self, signal: Signal) -> float:
        return threshold_exposure(signal.expected_return, self.p.threshold_bps)
