"""Backtrader strategies that trade forecasts. A strategy sees only its signal feed."""

from llmsignal.strategies.base import LLMSignalStrategy, Signal, StrategyError
from llmsignal.strategies.ensemble import EnsembleStrategy
from llmsignal.strategies.probability import ProbabilityStrategy
from llmsignal.strategies.side import SideStrategy
from llmsignal.strategies.signal_feed import SignalFeed, signal_frame
from llmsignal.strategies.threshold import ThresholdStrategy
from llmsignal.strategies.volatility import VolatilityTargetStrategy

__all__ = ["EnsembleStrategy", "LLMSignalStrategy", "ProbabilityStrategy", "SideStrategy", "Signal", "SignalFeed",
           "StrategyError", "ThresholdStrategy", "VolatilityTargetStrategy", "signal_frame"]
