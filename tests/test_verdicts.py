"""Verdicts say no more than the data shows: false claims stay rare, true skill is still found."""

import re
from functools import cache

import numpy as np
import pandas as pd
import pytest

from llmsignal.backtests.evaluation import _distribution_tests, significance
from llmsignal.backtests.metrics import FX, forecast_error, period_returns, trading_day, trading_performance
from llmsignal.backtests.report import tearsheet
from llmsignal.backtests.significance import holm, sharpe_loss_pvalue
from llmsignal.finetune.bars import Split
from llmsignal.models.baselines import climatology, garch

CLAIM = re.compile(r"beats naive|(?<!no )evidence of edge")
DISTRIBUTION_CLAIM = re.compile(r"(beats|worse than) garch's")


def _hours(days: int) -> pd.DatetimeIndex:
    index = pd.date_range("2021-01-04", periods=24 * days, freq="h")
    return index[index.day_of_week < 5]


def _null_run(seed: int, rows: int = 8, days: int = 61) -> tuple[dict, dict]:
    """Random-walk bars and ``rows`` zero-skill forecasters: errors as large as naive's, equity pure noise."""
    rng = np.random.default_rng(seed)
    index = _hours(days)
    close = pd.Series(1.1 * np.exp(np.cumsum(rng.normal(0, 1e-3, len(index)))), index=index)
    following = close.shift(-1).fillna(close.iloc[-1])
    forecasts = {"naive": pd.DataFrame({"close": close, "forecast": close, "p_up": 0.5})}
    equities = {"naive": pd.Series(1e5, index=index)}
    for i in range(rows):
        guess = following + close * rng.normal(0, 1e-3, len(index))
        forecasts[f"m{i}"] = pd.DataFrame({"close": close, "forecast": guess, "p_up": 0.5})
        equities[f"m{i}"] = pd.Series(1e5 * np.exp(np.cumsum(rng.normal(0, 1e-3, len(index)))), index=index)
    return forecasts, equities


def _verdicts(forecasts: dict, equities: dict, reps: int = 100) -> dict[str, dict]:
    rows = [{"method": m, "key": m} for m in forecasts]
    significance(rows, forecasts, equities, reps=reps)
    return {row["method"]: row for row in rows}


@cache
def _null_verdicts(seed: int) -> dict[str, dict]:
    """The verdicts of zero-skill run ``seed``, computed once for every test that reads them."""
    return _verdicts(*_null_run(seed))


def test_zero_skill_rows_rarely_claim_anything():
    """Under the null, the share of runs in which any of 8 rows claims skill or an edge stays within 5%."""
    runs = 60
    claimed = sum(any(CLAIM.search(row["verdict"]) for row in _null_verdicts(seed).values()) for seed in range(runs))
    assert claimed / runs <= 0.05


def test_zero_skill_rows_rarely_say_they_lose_money():
    """"loses money" is Holm-adjusted across the rows that traded: a family-wise 5% claim.

    Each row's own interval below zero said it in 18 of these 60 runs. A 5% claim is said in 3 of 60 runs on
    average, so the bar allows two Monte Carlo standard errors over it; over 1,000 runs of this design the
    trading tests alone said it in 5.3%.
    """
    runs = 60
    said = sum(any("loses money" in row["verdict"] for row in _null_verdicts(seed).values()) for seed in range(runs))
    assert said / runs <= 0.05 + 2 * np.sqrt(0.05 * 0.95 / runs)


def test_a_row_that_loses_money_is_told_after_holm_across_the_trading_rows():
    forecasts, equities = _null_run(5)
    index = equities["m0"].index
    drift = np.random.default_rng(6).normal(-3e-4, 1e-3, len(index))  # about -1.5 Sharpe a day
    equities["m0"] = pd.Series(1e5 * np.exp(np.cumsum(drift)), index=index)
    rows = _verdicts(forecasts, equities)
    assert rows["m0"]["verdict"].startswith("loses money (Holm p<0.001")
    traders = [f"m{i}" for i in range(8)]  # naive never trades and is no test
    expected = holm([sharpe_loss_pvalue(period_returns(equities[k], FX)) for k in traders])
    assert [rows[k]["sharpe_loss_holm"] for k in traders] == pytest.approx(expected)
    assert np.isnan(rows["naive"]["sharpe_loss_holm"])


@cache
def _garch_and_climatology(seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The ``garch`` and ``climatology`` baselines' forecast frames of 600 test bars of a GARCH-volatility walk.

    Hourly log-returns of a zero-mean GARCH(1,1) with Gaussian shocks (omega 3e-8, alpha 0.10, beta 0.87: 10 bp
    a bar unconditionally, persistence 0.97, as ``benchmarks/distribution_check.py``); 1,200 training, 200
    validation and 600 test bars. The baselines fit on the training bars and forecast the test bars as in a run.
    """
    rng = np.random.default_rng(seed)
    omega, alpha, beta = 3e-8, 0.10, 0.87
    variance, returns = omega / (1 - alpha - beta), np.empty(1999)
    for i in range(len(returns)):
        returns[i] = np.sqrt(variance) * rng.standard_normal()
        variance = omega + alpha * returns[i] ** 2 + beta * variance
    bars = pd.DataFrame({"close": 1.1 * np.exp(np.r_[0.0, np.cumsum(returns)])},
                        index=pd.date_range("2021-01-04", periods=2000, freq="h"))
    split = Split(bars, val_start=1200, test_start=1400)
    reference = garch(split)
    return reference, climatology(split)[reference.columns]


def _regimes(rng: np.random.Generator, bars: int, switch: float = 0.2) -> np.ndarray:
    """True where a mixture takes garch's forecast: a two-state Markov chain, 50/50 from its first bar on."""
    return (int(rng.random() < 0.5) + np.cumsum(rng.random(bars) < switch)) % 2 == 1


def _distribution_claims(walks: int, draws: int, switch: float = 0.2) -> float:
    """The share of exact-null runs in which some row's distribution verdict claims to beat or lose to garch's."""
    rows = ["m0", "m1", "m2"]
    claimed = []
    for seed in range(walks):
        reference, clim = _garch_and_climatology(seed)
        rng = np.random.default_rng(seed)
        for _ in range(draws):
            picks = {name: _regimes(rng, len(reference), switch) for name in ["garch", *rows]}
            forecasts = {name: reference.where(np.repeat(pick[:, None], reference.shape[1], axis=1), clim)
                         for name, pick in picks.items()}
            tests = _distribution_tests(list(forecasts), forecasts, "garch")
            claimed.append(any(DISTRIBUTION_CLAIM.search(tests[m]["distribution_verdict"]) for m in rows))
    return float(np.mean(claimed))


def test_zero_skill_distributions_rarely_claim_to_beat_or_lose_to_garch():
    """Exact nulls whose loss differentials cluster: no "beats garch's" or "worse than garch's" in over 5% of runs.

    The reference ("garch") and three rows each take garch's or climatology's forecast bar by bar, switching with
    probability 0.2 a bar (a 50/50 Markov chain drawn apart from the prices and from each other). At every bar a
    row and the reference are each garch with probability 1/2, so every row's expected log score and CRPS are
    exactly the reference's: no row has skill. But the per-bar differential, (row's pick - reference's pick)
    times (garch's loss - climatology's), is serially correlated (the picks persist, about 0.6^lag, and the
    losses cluster with volatility), as a tuned model's against garch is when its quality varies with the
    market. 40 walks, 5 draws of the picks on each: 200 runs, in which the HAC fixed-b test claimed something
    (log score or CRPS, any row, Holm across the rows) in 6.5%, and the paired t-test (no lags) in 12.0%; over 600
    more runs of this design the HAC test said it in 5.3%, so the bar allows two Monte Carlo standard errors over
    5%. With independent picks (switching 1/2 a bar) the differentials are uncorrelated and both tests say it in
    5-6%; with picks that persist longer (switching 0.1 a bar, 0.8^lag) the HAC test said it in 10% of 600 runs
    and the t-test in 20% of 200: the fixed-b reference stretches only so far over 600 bars.
    """
    runs = 200
    assert _distribution_claims(walks=40, draws=5) <= 0.05 + 2 * np.sqrt(0.05 * 0.95 / runs)


def test_better_by_absolute_error_but_worse_by_squared_error_is_worse():
    """The direction comes from the loss the test uses: smaller errors with rare large ones lose on MSE."""
    rng = np.random.default_rng(1)
    index = _hours(61)
    close = pd.Series(1.1 * np.exp(np.cumsum(rng.normal(0, 1e-4, len(index)))), index=index)
    following = close.shift(-1).fillna(close.iloc[-1])
    naive_error = close - following
    big = np.arange(len(index)) % 20 == 0
    model_error = np.where(big, 5.9, 0.5) * naive_error
    forecasts = {"naive": pd.DataFrame({"close": close, "forecast": close, "p_up": 0.5}),
                 "model": pd.DataFrame({"close": close, "forecast": following + model_error, "p_up": 0.5})}
    flat = pd.Series(1e5, index=index)
    scores = forecast_error(forecasts["model"])
    assert scores["relmae"] < 0.9 and scores["mse"] > 1.5 * forecast_error(forecasts["naive"])["mse"]
    verdict = _verdicts(forecasts, {"naive": flat, "model": flat})["model"]
    assert verdict["dm_stat"] > 0 and verdict["verdict"].startswith("worse than naive")


def test_the_true_model_of_a_planted_signal_is_found_and_alone_in_the_confidence_set():
    rng = np.random.default_rng(2)
    index = _hours(61)
    returns = np.zeros(len(index))
    for t in range(1, len(index)):
        returns[t] = -0.6 * returns[t - 1] + rng.normal(0, 1e-3)
    close = pd.Series(1.1 * np.exp(np.cumsum(returns)), index=index)
    forecasts, equities = _null_run(3, rows=7)
    forecasts = {name: frame.assign(close=close, forecast=close * frame["forecast"] / frame["close"])
                 for name, frame in forecasts.items()}
    forecasts["true"] = pd.DataFrame({"close": close, "forecast": close * np.exp(-0.6 * returns), "p_up": 0.5})
    equities["true"] = equities["m0"]
    rows = _verdicts(forecasts, equities)
    assert rows["true"]["verdict"].startswith("beats naive") and rows["true"]["dm_holm"] < 1e-6
    assert {name for name, row in rows.items() if row["in_mcs"]} == {"true"}


def test_a_strategy_flat_for_a_month_has_the_same_sharpe_in_its_tearsheet(tmp_path):
    """quantstats must not drop the flat days (match_dates) nor use other days than the comparison."""
    index = _hours(90)
    moves = np.r_[np.zeros(24 * 30), np.random.default_rng(4).normal(2e-4, 2e-3, len(index) - 24 * 30)]
    equity = pd.Series(1e5 * np.exp(np.cumsum(moves)), index=index)
    tearsheet(equity, pd.Series(1e5 * np.linspace(1, 1.01, len(index)), index=index), "flat start",
              tmp_path / "t.html")
    page = (tmp_path / "t.html").read_text()
    # the metrics table's columns: Metric, the benchmark, then the strategy
    shown = float(re.search(r"<td>Sharpe</td>\s*<td>-?[\d.]+</td>\s*<td>(-?[\d.]+)</td>", page).group(1))
    assert shown == pytest.approx(trading_performance(equity)["sharpe"], abs=0.005)


def test_fx_days_end_at_the_new_york_rollover():
    index = pd.DatetimeIndex(["2021-01-03 22:00", "2021-01-03 23:00", "2021-01-04 21:00", "2021-01-04 22:00"])
    assert list(trading_day(index).day_name()) == ["Monday", "Monday", "Monday", "Tuesday"]
    summer = pd.DatetimeIndex(["2021-07-05 20:59", "2021-07-05 21:00"])  # 17:00 New York is 21:00 UTC in summer
    assert list(trading_day(summer).day_name()) == ["Monday", "Tuesday"]
    week = pd.date_range("2021-01-03 22:00", "2021-01-08 21:00", freq="h")  # Sunday evening to Friday's close
    returns = period_returns(pd.Series(np.linspace(1, 2, len(week)), index=week), FX)
    assert len(returns) == 5 and list(returns.index.day_name()) == ["Monday", "Tuesday", "Wednesday", "Thursday",
                                                                    "Friday"]


def test_another_market_sets_its_own_day_end():
    """--day-end for US stocks: a bar at 16:00 New York opens the next day."""
    from llmsignal.backtests.metrics import Calendar

    index = pd.DatetimeIndex(["2021-01-04 20:59", "2021-01-04 21:00"])  # 15:59 and 16:00 New York
    stocks = Calendar.for_bars(pd.date_range("2021-01-04", periods=10, freq="h"), "16:00", "America/New_York")
    assert list(trading_day(index, stocks).day_name()) == ["Monday", "Tuesday"]
    assert list(trading_day(index).day_name()) == ["Monday", "Monday"]  # FX: 17:00 New York


def test_a_bad_day_end_is_one_line(capsys, tmp_path):
    from llmsignal.cli import main

    assert main(["run", "--day-end", "25:00 Mars/Olympus", "--registry", str(tmp_path / "r")]) == 2
    assert "--day-end '25:00 Mars/Olympus'" in capsys.readouterr().err and not (tmp_path / "r").exists()
