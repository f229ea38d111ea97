"""The base class of every llmsignal strategy: a subclass decides an exposure, the base trades it.

    class Contrarian(LLMSignalStrategy):
        params = (("cap", 0.5),)

        def decide(self, signal):
            return -self.p.cap if signal.forecast > signal.close else self.p.cap

Exposure is the fraction of the allowed notional to hold: ``-1`` fully short,
``0`` flat, ``1`` fully long. The allowed notional is ``leverage`` times the
account's equity. Market orders placed on bar ``t`` fill at the open of bar
``t + 1``; costs live in the broker (see ``backtests.costs``), not here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import backtrader as bt
import pandas as pd


class StrategyError(ValueError):
    """A strategy that breaks its contract (an exposure outside [-1, 1], say)."""


@dataclass(frozen=True)
class Signal:
    """What ``decide`` sees on one bar: the close, the model's forecast of the next close, and P(up)."""

    timestamp: pd.Timestamp
    close: float
    forecast: float
    p_up: float
    forecasts: dict  # every signal feed's forecast by feed name, for strategies that combine models

    @property
    def expected_return(self) -> float:
        return self.forecast / self.close - 1.0


class LLMSignalStrategy(bt.Strategy):
    """Turns ``decide(signal) -> exposure`` into backtrader orders on the first data feed."""

    params = (("leverage", 1.0), ("lot_step", 1000.0))

    def decide(self, signal: Signal) -> float:
        raise NotImplementedError("a strategy implements decide(signal) -> exposure in [-1, 1]")

    def signal(self) -> Signal:
        data = self.datas[0]
        forecasts = {d._name or str(i): (d.forecast[0], d.p_up[0]) for i, d in enumerate(self.datas)}
        return Signal(pd.Timestamp(bt.num2date(data.datetime[0])), data.close[0], data.forecast[0],
                      data.p_up[0], forecasts)

    def next(self) -> None:
        exposure = float(self.decide(self.signal()))
        if not (math.isfinite(exposure) and -1.0 <= exposure <= 1.0):
            raise StrategyError(f"{type(self).__name__}.decide returned exposure {exposure}; it must be in [-1, 1]")
        self.order_target_exposure(exposure)

    def order_target_exposure(self, exposure: float) -> None:
        data = self.datas[0]
        notional = exposure * self.p.leverage * self.broker.getvalue()
        units = math.trunc(notional / data.close[0] / self.p.lot_step) * self.p.lot_step
        if units != self.getposition(data).size:
            self.order_target_size(data=data, target=units)
