"""Many instruments in one backtrader account (issue 32): legs that add up, each its own costs, no look-ahead."""

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from benchmarks.synthetic import loaded_bars
from llmsignal.backtests.costs import Costs
from llmsignal.backtests.portfolio import Leg, run_portfolio
from llmsignal.strategies import StrategyError, ThresholdStrategy, signal_frame


def frame(seed: int, n: int = 240, sigma: float = 1e-3) -> pd.DataFrame:
    """Hourly bars with noisy forecasts that swing long and short."""
    bars = loaded_bars(n, seed)
    rng = np.random.default_rng(seed + 100)
    forecasts = pd.DataFrame({"forecast": bars["close"] * (1 + rng.normal(0, 5e-4, n)), "p_up": 0.5,
                              "sigma": sigma}, index=bars.index)
    return signal_frame(bars, forecasts)


SWAPPING = Costs(swap_long_pips=-3.0, swap_short_pips=-2.0)  # big enough to show in the legs


@pytest.mark.parametrize("weighting", ["equal", "inverse_sigma"])
def test_the_account_moves_by_the_sum_of_its_legs_on_every_bar(weighting):
    later = frame(2, sigma=2e-3).iloc[60:]  # starts 60 bars after the first: the first trades alone until then
    legs = {"EURUSD": Leg(frame(1), SWAPPING), "GBPUSD": Leg(later, replace(SWAPPING, spread_pips=2.0,
                                                                           commission_per_lot=7.0))}
    result = run_portfolio(legs, ThresholdStrategy, {"threshold_bps": 1.0}, weighting=weighting)
    alone = result.positions.index < later.index[0]
    assert (result.positions.loc[alone, "EURUSD"] != 0).any() and (result.positions.loc[alone, "GBPUSD"] == 0).all()
    assert (result.positions != 0).any().all()  # both instruments traded
    assert result.legs.iloc[-1].abs().min() > 10  # and made or lost money
    change = result.equity - SWAPPING.cash
    assert np.allclose(change, result.legs.sum(axis=1), atol=0.01, rtol=0)


def test_each_instrument_pays_its_own_costs():
    """The same bars as two instruments, one free to trade: their positions match, and the free one is ahead by
    exactly the other's commission, half spread and slippage on every unit it filled."""
    dear = Costs(spread_pips=1.6, slippage_pips=0.3, commission_per_lot=7.0, swap_long_pips=0, swap_short_pips=0)
    free = replace(dear, spread_pips=0.0, slippage_pips=0.0, commission_per_lot=0.0)
    result = run_portfolio({"dear": Leg(frame(3), dear), "free": Leg(frame(3), free)}, ThresholdStrategy)
    assert result.positions["dear"].equals(result.positions["free"])
    filled = result.positions["dear"].diff().fillna(result.positions["dear"]).abs().sum()
    per_unit = dear.commission_per_lot / dear.lot_size + (dear.spread_pips / 2 + dear.slippage_pips) * dear.pip
    assert filled > 0
    gap = result.legs["free"].iloc[-1] - result.legs["dear"].iloc[-1]
    assert gap == pytest.approx(filled * per_unit, abs=0.01)


def test_inverse_sigma_gives_a_quiet_instrument_more_notional():
    same = frame(4)
    quiet = same.assign(sigma=same["sigma"] / 2)
    result = run_portfolio({"jumpy": Leg(same), "quiet": Leg(quiet)}, ThresholdStrategy, weighting="inverse_sigma")
    held = result.positions.abs()
    ratio = held["quiet"][held["jumpy"] > 0] / held["jumpy"][held["jumpy"] > 0]
    assert ratio.median() == pytest.approx(2.0, rel=0.05)


@pytest.mark.parametrize("weighting", ["equal", "inverse_sigma"])
def test_a_later_bar_of_one_instrument_never_moves_another_earlier(weighting):
    a, b = frame(5), frame(6)
    cut = b.index[150]
    changed = b.copy()
    later = changed.index >= cut
    changed.loc[later, ["open", "high", "low", "close"]] *= 1.05  # a jump, and forecasts and sigma to match
    changed.loc[later, "forecast"] = changed.loc[later, "close"] * 0.99
    changed.loc[later, "sigma"] = 5e-3
    before = run_portfolio({"A": Leg(a), "B": Leg(b)}, ThresholdStrategy, weighting=weighting)
    after = run_portfolio({"A": Leg(a), "B": Leg(changed)}, ThresholdStrategy, weighting=weighting)
    earlier = before.positions.index < cut
    assert not before.positions["B"].equals(after.positions["B"])  # the change mattered to B
    assert before.positions.loc[earlier, "A"].equals(after.positions.loc[earlier, "A"])
    assert before.equity[earlier].equals(after.equity[earlier])


def test_instruments_on_another_bar_or_currency_are_left_out_with_a_note():
    hourly, other = frame(7), frame(8)
    daily = other.resample("D").agg({"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum",
                                     "forecast": "last", "p_up": "last", "sigma": "last"}).dropna()
    result = run_portfolio({"H1": Leg(hourly), "D1": Leg(daily), "JPY": Leg(frame(9), quote="JPY")},
                           ThresholdStrategy)
    assert list(result.legs.columns) == ["H1"]
    assert len(result.notes) == 2
    assert result.notes[0].startswith("D1: bars every 1 days") and "left out of the portfolio" in result.notes[0]
    assert result.notes[1].startswith("JPY: quoted in JPY") and "USD" in result.notes[1]


def test_a_portfolio_refuses_what_it_cannot_do():
    legs = {"A": Leg(frame(1))}
    with pytest.raises(StrategyError, match="per instrument only"):
        run_portfolio(legs, ThresholdStrategy, {"stop_atr": 2.0})
    with pytest.raises(ValueError, match="weighting"):
        run_portfolio(legs, ThresholdStrategy, weighting="kelly")
    with pytest.raises(ValueError, match="A: inverse_sigma"):
        run_portfolio({"A": Leg(frame(1).assign(sigma=np.nan))}, ThresholdStrategy, weighting="inverse_sigma")
