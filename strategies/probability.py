"""Exposure proportional to the model's confidence P(up), with a dead zone around a coin flip."""

from __future__ import annotations

import math

from llmsignal.strategies.base import LLMSignalStrategy, Signal, StrategyError


def probability_exposure(p_up: float, dead_zone: float = 0.05, cap: float = 1.0) -> float:
    """The exposure for ``p_up``: flat inside ``0.5 ± dead_zone``, then linear up to ``±cap``.

    ``exposure = sign(p_up - 0.5) * min(cap, (|p_up - 0.5| - dead_zone) / (0.5 - dead_zone))``
    when ``|p_up - 0.5| > dead_zone``, else ``0``: the ramp starts at 0 on the
    edge of the dead zone and reaches 1 at certainty (``p_up`` 0 or 1).

    >>> round(probability_exposure(0.775), 6)  # 0.225 past the dead zone, out of 0.45
    0.5
    >>> probability_exposure(0.1, cap=0.5)
    -0.5
    """
    if not 0.0 <= p_up <= 1.0:  # also catches NaN
        raise StrategyError(f"p_up {p_up} is not a probability")
    edge = p_up - 0.5
    beyond = abs(edge) - dead_zone
    if beyond <= 1e-12:  # 0.55 - 0.5 - 0.05 is 4e-17 in floats; the edge itself is still flat
        return 0.0
    return math.copysign(min(cap, beyond / (0.5 - dead_zone)), edge)


class ProbabilityStrategy(LLMSignalStrategy):
    """Holds ``probability_exposure(p_up, dead_zone, cap)``; ignores the point forecast.

    ``dead_zone`` (0 <= dead_zone < 0.5): how far from 0.5 ``p_up`` must be to trade.
    ``cap`` (0 < cap <= 1): the largest exposure either way.
    """

    params = (("dead_zone", 0.05), ("cap", 1.0))

    def __init__(self) -> None:
        super().__init__()
        if not (0.0 <= self.p.dead_zone < 0.5 and 0.0 < self.p.cap <= 1.0):
            raise StrategyError(f"ProbabilityStrategy needs 0 <= dead_zone < 0.5 and 0 < cap <= 1, "
                                f"got dead_zone={self.p.dead_zone}, cap={self.p.cap}")

    def decide(self, signal: Signal) -> float:
        return probability_exposure(signal.p_up, self.p.dead_zone, self.p.cap)
