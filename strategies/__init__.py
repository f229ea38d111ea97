"""Backtrader strategies that trade forecasts. A strategy sees only its signal feed."""

from strategies.base import LLMSignalStrategy, Signal, StrategyError
from strategies.ensemble import EnsembleStrategy
from strategies.probability import ProbabilityStrategy
from strategies.signal_feed import SignalFeed, signal_frame
from strategies.threshold import ThresholdStrategy

__all__ = ["EnsembleStrategy", "LLMSignalStrategy", "ProbabilityStrategy", "Signal", "SignalFeed", "StrategyError",
           "ThresholdStrategy", "signal_frame"]
