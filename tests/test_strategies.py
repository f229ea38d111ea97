import backtrader as bt
import numpy as np
import pandas as pd
import pytest

from backtests.backtest import run_backtest
from backtests.costs import Costs
from strategies import LLMSignalStrategy, StrategyError, ThresholdStrategy, signal_frame
from tests.conftest import synthetic_bars


@pytest.fixture()
def bars():
    frame = synthetic_bars(300)
    frame.columns = [c.lower() for c in frame.columns]
    return frame


def _forecasts(bars, factor):
    return pd.DataFrame({"forecast": bars["close"] * factor, "p_up": 0.5}, index=bars.index)


def test_a_different_forecast_changes_the_trades(bars):
    rng = np.random.default_rng(0)
    up = run_backtest(signal_frame(bars, _forecasts(bars, 1.001)), ThresholdStrategy)
    noisy = _forecasts(bars, np.exp(rng.normal(0, 1e-3, len(bars))))
    mixed = run_backtest(signal_frame(bars, noisy), ThresholdStrategy)
    flat = run_backtest(signal_frame(bars, _forecasts(bars, 1.0)), ThresholdStrategy)
    assert up.trades == 1  # long from the first bar, never closed
    assert mixed.trades > 20
    assert flat.trades == 0 and flat.equity.nunique() == 1
    assert not up.equity.equals(mixed.equity)


class Recorder(ThresholdStrategy):
    def start(self):
        self.fills = []

    def notify_order(self, order):
        if order.status == order.Completed:
            self.fills.append((bt.num2date(order.executed.dt), order.executed.price, order.executed.size))


def test_orders_fill_at_the_next_open_plus_half_spread_and_slippage(bars):
    costs = Costs()
    cerebro = bt.Cerebro(stdstats=False)
    from strategies import SignalFeed

    cerebro.adddata(SignalFeed(dataname=signal_frame(bars, _forecasts(bars, 1.001))))
    cerebro.addstrategy(Recorder)
    costs.apply(cerebro)
    strategy = cerebro.run()[0]
    when, price, size = strategy.fills[0]
    assert pd.Timestamp(when) == bars.index[1]
    assert price == pytest.approx(bars["open"].iloc[1] + (costs.spread_pips / 2 + costs.slippage_pips) * costs.pip)
    assert size > 0 and size % 1000 == 0


def test_commission_is_charged_per_lot(bars):
    result = run_backtest(signal_frame(bars, _forecasts(bars, 1.001)), ThresholdStrategy)
    units = int(Costs().cash / bars["close"].iloc[0] / 1000) * 1000
    assert result.commission == pytest.approx(units / 100_000 * Costs().commission_per_lot, rel=1e-6)


class OutOfRange(LLMSignalStrategy):
    def decide(self, signal):
        return 2.0


def test_exposure_outside_the_range_is_an_error(bars):
    with pytest.raises(StrategyError, match=r"exposure 2.0; it must be in \[-1, 1\]"):
        run_backtest(signal_frame(bars, _forecasts(bars, 1.0)), OutOfRange)
