"""Always in the market on the forecast's side: long when the forecast is above the close, short when below."""

from __future__ import annotations

from llmsignal.strategies.base import LLMSignalStrategy, Signal
from llmsignal.strategies.threshold import threshold_exposure


class SideStrategy(LLMSignalStrategy):
    """Holds ``1`` while the forecast is above the close and ``-1`` while it is below (flat only when equal).

    The calls it trades are the ones the ``directional_accuracy`` column scores, whatever the size of the forecast
    return: every forecaster that calls a direction trades, so its tearsheet shows what its calls earn after costs.
    ``ThresholdStrategy`` with ``threshold_bps=0`` trades the same; this one has no threshold to set.
    """

    def decide(self, signal: Signal) -> float:
        return threshold_exposure(signal.expected_return, 0.0)
