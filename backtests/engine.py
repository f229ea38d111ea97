"""Run a strategy on a signal frame in backtrader and collect equity, returns and trades."""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import backtrader as bt
import numpy as np
import pandas as pd

from llmsignal.backtests.costs import Costs, swap_cash
from llmsignal.strategies import LLMSignalStrategy, SignalFeed, StrategyError, signal_frame


@dataclass
class BacktestResult:
    equity: pd.Series  # account value at each bar's close
    trades: int
    commission: float
    swap: float = 0.0  # overnight financing as cash, negative = paid (not included in commission)

    @property
    def returns(self) -> pd.Series:
        return self.equity.pct_change().fillna(0.0)


class EquityCurve(bt.Analyzer):
    """Account value per bar, keyed by the bar's timestamp."""

    def start(self) -> None:
        self.values: dict[pd.Timestamp, float] = {}

    def next(self) -> None:
        self.values[pd.Timestamp(self.data.datetime.datetime(0))] = self.strategy.broker.getvalue()

    def get_analysis(self) -> dict:
        return self.values


class CommissionPaid(bt.Analyzer):
    def start(self) -> None:
        self.total = 0.0

    def notify_order(self, order: bt.Order) -> None:
        if order.status == order.Completed:
            self.total += order.executed.comm

    def get_analysis(self) -> float:
        return self.total


def run_backtest(frame: pd.DataFrame, strategy: type[bt.Strategy], params: dict | None = None,
                 costs: Costs | None = None, extra_feeds: dict[str, pd.DataFrame] | None = None) -> BacktestResult:
    """Backtest ``strategy`` on ``frame`` (bars with ``forecast``, ``p_up`` and ``sigma`` columns: ``signal_frame``).

    ``extra_feeds``: other forecasts on the same bars, seen by the strategy in
    ``Signal.forecasts`` under their names (the first data is ``"signal"``).
    ``costs`` sets the broker (spread, slippage, commission, margin, swap) and,
    for an ``LLMSignalStrategy``, the lot step and minimum lot, unless
    ``params`` sets ``lot_step`` or ``min_size`` itself.

        result = run_backtest(frame, ThresholdStrategy, {"threshold_bps": 1.0}, Costs(swap_long_pips=-0.9))
    """
    costs = costs or Costs()
    if isinstance(strategy, type) and issubclass(strategy, LLMSignalStrategy):
        params = {**costs.sizing(), **(params or {})}
    cerebro = bt.Cerebro(stdstats=False, cheat_on_open=False)
    cerebro.adddata(SignalFeed(dataname=frame), name="signal")
    for name, extra in (extra_feeds or {}).items():
        cerebro.adddata(SignalFeed(dataname=extra), name=name)
    cerebro.addstrategy(strategy, **(params or {}))
    costs.apply(cerebro)
    cerebro.addanalyzer(EquityCurve, _name="equity")
    cerebro.addanalyzer(bt.analyzers.TradeAnalyzer, _name="trades")
    cerebro.addanalyzer(CommissionPaid, _name="commission")
    result = cerebro.run()[0]
    equity = pd.Series(result.analyzers.equity.get_analysis(), name="equity", dtype=float)
    trades = result.analyzers.trades.get_analysis()
    return BacktestResult(equity, int(trades.get("total", {}).get("total", 0)),
                          float(result.analyzers.commission.get_analysis()), swap_cash(cerebro.broker))


CHECK_BARS = 40  # enough for a 14-bar ATR exit to come into play


def check_strategy(bars: pd.DataFrame, strategy: type[bt.Strategy], params: dict | None = None,
                   costs: Costs | None = None) -> None:
    """Trade ``strategy`` on the first bars of ``bars`` with made-up forecasts that swing both ways.

    A ``decide`` that raises, returns no number or leaves [-1, 1], or an ``__init__`` or ``next`` that raises,
    fails here as one ``StrategyError`` line, before any training, rather than after the registry has been written.
    """
    sample = bars.iloc[:CHECK_BARS]
    swing = np.where(np.arange(len(sample)) % 2, 1.001, 0.999)
    made_up = pd.DataFrame({"forecast": sample["close"].to_numpy() * swing, "p_up": np.where(swing > 1, 0.8, 0.2),
                            "sigma": np.where(swing > 1, 0.0005, 0.002)}, index=sample.index)
    frame = signal_frame(sample, made_up)
    try:
        run_backtest(frame, strategy, params, costs, extra_feeds={"check": frame})
    except StrategyError:
        raise
    except Exception as error:  # a user's __init__ or next() can fail in any way: one line naming the class
        where = f"{strategy.__name__} ({inspect.getsourcefile(strategy) or 'unknown file'})"
        raise StrategyError(f"{where}: raised {type(error).__name__} on sample bars: {error}") from error
