"""The base class of every llmsignal strategy: a subclass decides an exposure, the base trades it.

    class Contrarian(LLMSignalStrategy):
        params = (("cap", 0.5),)

        def decide(self, signal):
            return -self.p.cap if signal.forecast > signal.close else self.p.cap

Exposure is the fraction of the allowed notional to hold: ``-1`` fully short,
``0`` flat, ``1`` fully long. The allowed notional is ``leverage`` times the
account's equity. Market orders placed on bar ``t`` fill at the open of bar
``t + 1``; costs live in the broker (see ``llmsignal.backtests.costs``), not here.

Sizing: the target size is truncated to a multiple of ``lot_step`` units and a
target smaller than ``min_size`` units is flat (``llmsignal.backtests.engine.run_backtest``
sets both from ``Costs.min_lot`` and ``Costs.lot_step``).

Exits, for any subclass: with ``stop_atr > 0`` (``take_atr > 0``) the base
closes a position whose close has moved against (in favour of) its average
entry price by more than ``stop_atr`` (``take_atr``) times the ATR of the first
data, checked on each bar's close, filled at the next open. After such an exit
the base stays flat while ``decide`` keeps the side it exited; it follows
``decide`` again once the exposure is ``0`` or of the other sign. With an exit
on, trading starts once the ATR has ``atr_period`` bars. A subclass that
defines ``__init__`` calls ``super().__init__()``.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from datetime import datetime

import backtrader as bt
import pandas as pd


class StrategyError(ValueError):
    """A strategy that breaks its contract (an exposure outside [-1, 1], say)."""


@dataclass(frozen=True)
class Signal:
    """What ``decide`` sees on one bar: the close, the model's forecast of the next close, P(up) and ``sigma``,
    the standard deviation of the next log-return (NaN in predictions made without it)."""

    timestamp: datetime
    close: float
    forecast: float
    p_up: float
    forecasts: dict  # (forecast, p_up) of every signal feed by feed name, the first data's included
    sigma: float = float("nan")

    @property
    def expected_return(self) -> float:
        return self.forecast / self.close - 1.0


def _side(x: float) -> int:
    return (x > 0) - (x < 0)


class LLMSignalStrategy(bt.Strategy):
    """Turns ``decide(signal) -> exposure`` into backtrader orders on the first data feed."""

    params = (("leverage", 1.0), ("lot_step", 1000.0), ("min_size", 1000.0),
              ("atr_period", 14), ("stop_atr", 0.0), ("take_atr", 0.0))

    def __init__(self) -> None:
        if self.p.stop_atr < 0 or self.p.take_atr < 0:
            raise StrategyError(f"{type(self).__name__}: stop_atr and take_atr must be >= 0 (0 disables)")
        # The ATR only exists when an exit needs it: an indicator delays the first next() by its warm-up.
        exits = self.p.stop_atr > 0 or self.p.take_atr > 0
        self._atr = bt.indicators.ATR(self.datas[0], period=self.p.atr_period) if exits else None
        self._exited_side = 0  # the side the last stop / take-profit closed; 0 when decide() is followed
        self.exits: list[tuple[pd.Timestamp, str]] = []  # (bar, "stop" or "take"), for reports and tests

    def decide(self, signal: Signal) -> float:
        raise NotImplementedError("a strategy implements decide(signal) -> exposure in [-1, 1]")

    def signal(self) -> Signal:
        data = self.datas[0]
        forecast, p_up = data.forecast[0], data.p_up[0]
        forecasts = {data._name or "0": (forecast, p_up)}
        forecasts.update({d._name or str(i): (d.forecast[0], d.p_up[0]) for i, d in enumerate(self.datas[1:], 1)})
        return Signal(data.datetime.datetime(0), data.close[0], forecast, p_up, forecasts, data.sigma[0])

    def next(self) -> None:
        exposure = self._checked_exposure(self.signal())
        exit_kind = self._exit_hit()
        if exit_kind:
            self._exited_side = _side(self.getposition(self.datas[0]).size)
            self.exits.append((pd.Timestamp(bt.num2date(self.datas[0].datetime[0])), exit_kind))
        if self._exited_side and _side(exposure) == self._exited_side:
            exposure = 0.0  # re-entering the side just exited would undo the exit on the next bar
        else:
            self._exited_side = 0
        self.order_target_exposure(exposure)

    def _checked_exposure(self, signal: Signal) -> float:
        """``decide(signal)``, or a ``StrategyError`` naming the strategy's class and file when it breaks."""
        where = f"{type(self).__name__} ({inspect.getsourcefile(type(self)) or type(self).__module__})"
        try:
            exposure = self.decide(signal)
        except StrategyError:
            raise
        except Exception as error:  # a user's decide() can fail in any way; the CLI wants one line, not a traceback
            raise StrategyError(f"{where}: decide raised {type(error).__name__}: {error}") from error
        if isinstance(exposure, bool) or not isinstance(exposure, int | float):
            raise StrategyError(f"{where}: decide returned {exposure!r}; it must return a number in [-1, 1]")
        if not (math.isfinite(exposure) and -1.0 <= exposure <= 1.0):
            raise StrategyError(f"{where}: decide returned exposure {exposure}; it must be in [-1, 1]")
        return float(exposure)

    def _exit_hit(self) -> str:
        """``"stop"`` or ``"take"`` when the open position crossed its ATR exit on this close, else ``""``."""
        if not hasattr(self, "_atr"):  # an __init__ override that skipped ours: say so, not AttributeError
            raise StrategyError(f"{type(self).__name__}.__init__ must call super().__init__()")
        if self._atr is None:
            return ""
        position = self.getposition(self.datas[0])
        if not position.size:
            return ""
        gain = (self.datas[0].close[0] - position.price) * _side(position.size)
        atr = self._atr[0]
        if self.p.stop_atr > 0 and -gain > self.p.stop_atr * atr:
            return "stop"
        if self.p.take_atr > 0 and gain > self.p.take_atr * atr:
            return "take"
        return ""

    def order_target_exposure(self, exposure: float) -> None:
        data = self.datas[0]
        notional = exposure * self.p.leverage * self.broker.getvalue()
        units = math.trunc(notional / data.close[0] / self.p.lot_step) * self.p.lot_step
        if abs(units) < self.p.min_size:
            units = 0.0  # the broker takes no order below its minimum lot
        if units != self.getposition(data).size:
            self.order_target_size(data=data, target=units)
