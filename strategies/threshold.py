"""Long when the forecast is above the close by more than a threshold, short when below, flat otherwise."""

from __future__ import annotations

from strategies.base import LLMSignalStrategy, Signal


class ThresholdStrategy(LLMSignalStrategy):
    """``threshold_bps``: the forecast return (in basis points) a position needs."""

    params = (("threshold_bps", 0.5),)

    def decide(self, signal: Signal) -> float:
        edge = signal.expected_return * 1e4
        if edge > self.p.threshold_bps:
            return 1.0
        if edge < -self.p.threshold_bps:
            return -1.0
        return 0.0
