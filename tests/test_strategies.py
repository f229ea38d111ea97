from datetime import datetime

import backtrader as bt
import numpy as np
import pandas as pd
import pytest

from llmsignal.backtests.costs import Costs, rollover_nights, swap_cash
from llmsignal.backtests.engine import run_backtest
from llmsignal.strategies import (
    EnsembleStrategy,
    LLMSignalStrategy,
    ProbabilityStrategy,
    SideStrategy,
    SignalFeed,
    StrategyError,
    ThresholdStrategy,
    VolatilityTargetStrategy,
    signal_frame,
)
from llmsignal.strategies.ensemble import ensemble_exposure
from llmsignal.strategies.loader import shipped_strategies
from llmsignal.strategies.probability import probability_exposure
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


def _random_forecasts(bars, seed):
    """Forecasts that move up and down at random, with P(up) on the forecast's side and a 10 bp sigma."""
    edge = np.random.default_rng(seed).normal(0, 1e-3, len(bars))
    return pd.DataFrame({"forecast": bars["close"] * np.exp(edge), "p_up": 0.5 + 0.3 * np.sign(edge),
                         "sigma": 1e-3}, index=bars.index)


@pytest.mark.parametrize("name", sorted(shipped_strategies()))
def test_every_shipped_strategy_trades_its_forecasts_and_other_forecasts_change_its_trades(bars, name):
    cls = shipped_strategies()[name]
    fills = [_run(signal_frame(bars, _random_forecasts(bars, seed)), cls).fills for seed in (0, 1, 0)]
    assert len(fills[0]) > 10 and len(fills[1]) > 10, name
    assert fills[0] != fills[1] and fills[0] == fills[2], name  # other forecasts, other trades; the same, the same
    assert run_backtest(signal_frame(bars, _random_forecasts(bars, 0)), cls).trades > 0


class Recorder(ThresholdStrategy):
    def start(self):
        self.fills = []

    def notify_order(self, order):
        if order.status == order.Completed:
            self.fills.append((bt.num2date(order.executed.dt), order.executed.price, order.executed.size))


def test_orders_fill_at_the_next_open_plus_half_spread_and_slippage(bars):
    costs = Costs()
    cerebro = bt.Cerebro(stdstats=False)
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


class ForgetsSuper(ThresholdStrategy):
    def __init__(self):
        self.seen = 0


def test_an_init_without_super_is_named(bars):
    with pytest.raises(StrategyError, match=r"ForgetsSuper.__init__ must call super\(\).__init__\(\)"):
        run_backtest(signal_frame(bars, _forecasts(bars, 1.0)), ForgetsSuper)


def test_exposure_outside_the_range_is_an_error(bars):
    with pytest.raises(StrategyError, match=r"exposure 2.0; it must be in \[-1, 1\]"):
        run_backtest(signal_frame(bars, _forecasts(bars, 1.0)), OutOfRange)


def test_the_side_strategy_holds_the_forecasts_side_however_small_where_the_threshold_stays_flat(bars):
    tiny = np.where(np.arange(len(bars)) // 50 % 2 == 0, 1 + 2e-5, 1 - 2e-5)  # 0.2 bp up, then down, 50 bars each
    frame = signal_frame(bars, _forecasts(bars, tiny))
    side = _run(frame, SideStrategy)
    assert run_backtest(frame, ThresholdStrategy).trades == 0  # all within the 0.5 bp threshold
    held = np.sign(np.cumsum([size for _, _, size in side.fills]))  # the position after each fill
    sides = [int(s) for i, s in enumerate(held) if i == 0 or s != held[i - 1]]
    assert sides == [1, -1] * (len(bars) // 100) and 0 not in held  # long first, short at each switch, never flat
    assert run_backtest(signal_frame(bars, _forecasts(bars, 1.0)), SideStrategy).trades == 0  # no call, no trade


# --- shipped strategies, ATR exits, lots and swap --------------------------------------------------------------


def _recording():
    """start / notify_order methods that keep (time, price, size) of every fill in ``self.fills``."""

    def start(self):
        self.fills = []

    def notify_order(self, order):
        if order.status == order.Completed:
            self.fills.append((pd.Timestamp(bt.num2date(order.executed.dt)), order.executed.price, order.executed.size))

    return {"start": start, "notify_order": notify_order}


def _run(frame, cls, costs=None, **params):
    """The strategy instance after a run, with ``fills`` recorded, on the same broker set-up as run_backtest."""
    costs = costs or Costs()
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.adddata(SignalFeed(dataname=frame), name="signal")
    cerebro.addstrategy(type(f"Recording{cls.__name__}", (cls,), _recording()), **{**costs.sizing(), **params})
    costs.apply(cerebro)
    return cerebro.run()[0]


@pytest.mark.parametrize(("p_up", "dead_zone", "cap", "expected"), [
    (0.5, 0.05, 1.0, 0.0),
    (0.53, 0.05, 1.0, 0.0),        # inside the dead zone
    (0.55, 0.05, 1.0, 0.0),        # on its edge
    (0.6, 0.05, 1.0, 0.05 / 0.45),
    (0.775, 0.05, 1.0, 0.5),
    (1.0, 0.05, 1.0, 1.0),
    (0.4, 0.05, 1.0, -0.05 / 0.45),
    (0.0, 0.05, 1.0, -1.0),
    (0.9, 0.05, 0.5, 0.5),         # capped
    (0.1, 0.05, 0.5, -0.5),
    (0.75, 0.0, 1.0, 0.5),         # no dead zone: linear in p_up
])
def test_probability_exposure_mapping(p_up, dead_zone, cap, expected):
    assert probability_exposure(p_up, dead_zone, cap) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("p_up", [float("nan"), -0.1, 1.2])
def test_probability_exposure_needs_a_probability(p_up):
    with pytest.raises(StrategyError, match="is not a probability"):
        probability_exposure(p_up)


def test_probability_strategy_holds_the_mapped_exposure(bars):
    frame = signal_frame(bars, pd.DataFrame({"forecast": bars["close"], "p_up": 0.775}, index=bars.index))
    strategy = _run(frame, ProbabilityStrategy)
    size = strategy.fills[0][2]
    assert size == int(0.5 * Costs().cash / bars["close"].iloc[0] / 1000) * 1000
    with pytest.raises(StrategyError, match="dead_zone < 0.5"):
        run_backtest(frame, ProbabilityStrategy, {"dead_zone": 0.5})


def test_volatility_targeting_sizes_the_side_by_target_over_sigma(bars):
    wide = signal_frame(bars, _forecasts(bars, 1.001).assign(sigma=0.002))  # 10 bp up, 20 bp wide
    size = _run(wide, VolatilityTargetStrategy, target_bps=5.0).fills[0][2]
    assert size == int(0.25 * Costs().cash / bars["close"].iloc[0] / 1000) * 1000  # 5 / 20 of a full position
    calm = signal_frame(bars, _forecasts(bars, 0.999).assign(sigma=0.0002))
    assert _run(calm, VolatilityTargetStrategy, target_bps=5.0).fills[0][2] == \
        -int(Costs().cash / bars["close"].iloc[0] / 1000) * 1000  # capped at a full short
    with pytest.raises(StrategyError, match="target_bps > 0"):
        run_backtest(wide, VolatilityTargetStrategy, {"target_bps": 0})


def test_volatility_targeting_long_sizes_a_long_position_by_sigma_whatever_the_forecast(bars):
    full = Costs().cash / bars["close"].iloc[0]
    down = signal_frame(bars, _forecasts(bars, 0.999).assign(sigma=0.002))  # a 10 bp fall forecast, 20 bp wide
    assert _run(down, VolatilityTargetStrategy, target_bps=5.0, side="long").fills[0][2] == \
        int(0.25 * full / 1000) * 1000  # long all the same, 5 / 20 of a full position
    flat = signal_frame(bars, _forecasts(bars, 1.0).assign(sigma=0.0002))  # no call at all; calm
    assert _run(flat, VolatilityTargetStrategy, target_bps=5.0, side="long").fills[0][2] == int(full / 1000) * 1000
    assert _run(flat, VolatilityTargetStrategy, target_bps=5.0).fills == []  # the forecast's side: flat
    with pytest.raises(StrategyError, match="side forecast or long"):
        run_backtest(down, VolatilityTargetStrategy, {"side": "short"})


def test_forecasts_without_sigma_trade_with_the_old_strategies_and_the_sigma_strategy_says_what_is_missing(bars):
    old = signal_frame(bars, _forecasts(bars, 1.001))  # forecast and p_up only, as before sigma existed
    assert old["sigma"].isna().all()
    for strategy in (ThresholdStrategy, ProbabilityStrategy, EnsembleStrategy):
        assert run_backtest(old, strategy).equity.notna().all()
    with pytest.raises(StrategyError) as raised:
        run_backtest(old, VolatilityTargetStrategy)
    message = str(raised.value)
    assert "\n" not in message and message.startswith("VolatilityTargetStrategy needs the forecast's sigma")


def _direction(result, bars):
    """+1 when the equity moved with the price (long), -1 against it (short)."""
    moves = pd.concat([result.equity.diff(), bars["close"].diff()], axis=1).dropna()
    return np.sign(moves.corr().iloc[0, 1])


def test_ensemble_majority_of_three_feeds(bars):
    frame = signal_frame(bars, _forecasts(bars, 1.001))  # the primary model says up
    down, up = signal_frame(bars, _forecasts(bars, 0.999)), signal_frame(bars, _forecasts(bars, 1.001))
    outvoted = run_backtest(frame, EnsembleStrategy, extra_feeds={"b": down, "c": down})
    backed = run_backtest(frame, EnsembleStrategy, extra_feeds={"b": up, "c": down})
    alone = run_backtest(frame, ThresholdStrategy)
    assert _direction(outvoted, bars) == -1
    assert _direction(backed, bars) == 1 == _direction(alone, bars)
    assert outvoted.trades == backed.trades == 1


def test_ensemble_exposure_modes():
    assert ensemble_exposure(1.0, [1.1, 0.9, 1.0]) == 0.0             # no majority: one abstains
    assert ensemble_exposure(1.0, [0.9, 0.9, 1.1]) == -1.0
    assert ensemble_exposure(1.0, [1.0003, 0.9999], "average", 0.5) == 1.0  # mean +1 bp
    assert ensemble_exposure(1.0, [1.0003, 0.9999], "average", 2.0) == 0.0
    with pytest.raises(StrategyError, match="unknown ensemble mode 'vote'"):
        ensemble_exposure(1.0, [1.0], "vote")


def _trend(step, n=200, start="2020-01-06"):
    """Bars that move by ``step`` (log) every hour, with a small range, and an up forecast."""
    close = 1.1 * np.exp(np.arange(n) * step)
    open_ = np.r_[close[0], close[:-1]]
    index = pd.date_range(start, periods=n, freq="h")
    bars = pd.DataFrame({"open": open_, "high": np.maximum(open_, close) * 1.0002,
                         "low": np.minimum(open_, close) * 0.9998, "close": close, "volume": 100}, index=index)
    return bars, pd.DataFrame({"forecast": bars["close"] * 1.001, "p_up": 0.5}, index=index)


def test_atr_stop_closes_a_losing_position_and_stays_out():
    bars, forecasts = _trend(-5e-4)  # a steady fall while the forecast says up
    frame = signal_frame(bars, forecasts)
    strategy = _run(frame, ThresholdStrategy, stop_atr=3.0)
    assert [kind for _, kind in strategy.exits] == ["stop"]
    (opened, _, size), (closed, _, closing) = strategy.fills  # no re-entry while decide() stays long
    assert size > 0 and closing == -size and opened == bars.index[15]  # trading starts after the ATR's warm-up
    assert strategy.getposition(strategy.datas[0]).size == 0
    stopped, held = run_backtest(frame, ThresholdStrategy, {"stop_atr": 3.0}), run_backtest(frame, ThresholdStrategy)
    assert stopped.equity.iloc[-1] > held.equity.iloc[-1]
    assert stopped.equity.loc[closed:].nunique() == 1


def test_after_an_exit_decide_is_followed_again_once_it_goes_flat():
    bars, forecasts = _trend(-5e-4)
    forecasts.iloc[150, 0] = bars["close"].iloc[150]  # one flat forecast releases the stop's hold
    strategy = _run(signal_frame(bars, forecasts), ThresholdStrategy, stop_atr=3.0)
    kinds = [kind for _, kind in strategy.exits]
    assert kinds[0] == "stop" and len(strategy.fills) >= 3
    assert strategy.fills[2][0] == bars.index[152] and strategy.fills[2][2] > 0  # long again after bar 151


def test_atr_take_profit_closes_a_winning_position():
    bars, forecasts = _trend(5e-4)
    strategy = _run(signal_frame(bars, forecasts), ThresholdStrategy, take_atr=5.0)
    assert [kind for _, kind in strategy.exits] == ["take"]
    assert strategy.getposition(strategy.datas[0]).size == 0
    with pytest.raises(StrategyError, match="must be >= 0"):
        _run(signal_frame(bars, forecasts), ThresholdStrategy, stop_atr=-1.0)


@pytest.mark.parametrize(("start", "end", "nights"), [
    (datetime(2024, 1, 1, 21), datetime(2024, 1, 1, 23), 1),    # Monday
    (datetime(2024, 1, 1, 22), datetime(2024, 1, 1, 23), 0),    # opened at the rollover: not held across it
    (datetime(2024, 1, 1, 21), datetime(2024, 1, 1, 22), 1),    # closed at the rollover: held to it
    (datetime(2024, 1, 3, 12), datetime(2024, 1, 4, 12), 3),    # Wednesday carries the weekend
    (datetime(2024, 1, 5, 23), datetime(2024, 1, 8, 12), 0),    # Friday night to Monday: no rollover
    (datetime(2024, 1, 1, 0), datetime(2024, 1, 8, 0), 7),      # a week
    (datetime(2024, 1, 1, 12), datetime(2024, 1, 1, 20), 0),
])
def test_rollover_nights(start, end, nights):
    assert rollover_nights(start, end) == nights


def test_swap_is_charged_overnight_and_not_when_flat(bars):
    long = _run(signal_frame(bars, _forecasts(bars, 1.001)), ThresholdStrategy)
    (opened, _, size), = long.fills  # one fill, held to the end
    nights = rollover_nights(opened, bars.index[-1])
    assert nights >= 10
    assert swap_cash(long.broker) == pytest.approx(nights * -0.6 * 1e-4 * size)
    charged = run_backtest(signal_frame(bars, _forecasts(bars, 1.001)), ThresholdStrategy)
    free = run_backtest(signal_frame(bars, _forecasts(bars, 1.001)), ThresholdStrategy, costs=Costs(swap_long_pips=0))
    assert charged.swap == pytest.approx(swap_cash(long.broker))
    assert charged.equity.iloc[-1] - free.equity.iloc[-1] == pytest.approx(charged.swap)
    assert charged.commission == pytest.approx(free.commission)  # swap is not booked as commission
    assert run_backtest(signal_frame(bars, _forecasts(bars, 0.999)), ThresholdStrategy).swap > 0  # short earns
    assert run_backtest(signal_frame(bars, _forecasts(bars, 1.0)), ThresholdStrategy).swap == 0.0


def test_lot_step_and_minimum_lot_come_from_costs(bars):
    frame = signal_frame(bars, _forecasts(bars, 1.001))
    coarse = _run(frame, ThresholdStrategy, costs=Costs(lot_step=0.1))
    assert coarse.fills[0][2] % 10_000 == 0 and coarse.fills[0][2] > 0
    assert run_backtest(frame, ThresholdStrategy, costs=Costs(min_lot=1.0)).trades == 0  # 0.9 lots is below 1 lot


def test_costs_describe_in_words():
    words = Costs().describe()
    assert "-0.6 pips" in words["swap"] and "22:00 UTC" in words["swap"]
    assert "0.01 lots" in words["lots"] and "30:1" in words["leverage"]
