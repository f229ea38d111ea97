import numpy as np
import pandas as pd
import pytest
from scipy.stats import kurtosis, norm, skew

from benchmarks.synthetic import stochastic_volatility_bars
from llmsignal.backtests.costs import Costs
from llmsignal.backtests.engine import run_backtest
from llmsignal.backtests.evaluation import pretraining_question, significance, volatility_targeting
from llmsignal.backtests.metrics import Calendar, period_returns, trading_performance
from llmsignal.strategies import VolatilityTargetStrategy, signal_frame


def _frame(close, target, noise, seed):
    forecast = target * np.exp(np.random.default_rng(seed).normal(0, noise, len(close)))
    return pd.DataFrame({"close": close, "forecast": forecast, "p_up": 0.5}, index=close.index)


def _setup():
    index = pd.date_range("2021-01-01", periods=24 * 60, freq="h")
    close = pd.Series(1.1 * np.exp(np.cumsum(np.random.default_rng(0).normal(0, 1e-3, len(index)))), index=index)
    forecasts = {"naive": pd.DataFrame({"close": close, "forecast": close, "p_up": 0.5}),
                 "good": _frame(close, close.shift(-1).fillna(close.iloc[-1]), 1e-5, 1),
                 "noisy": _frame(close, close, 3e-3, 2)}
    return index, close, forecasts


def test_significance_with_only_one_curve_that_moves():
    index, close, forecasts = _setup()
    flat = pd.Series(1e5, index=index)
    equities = {"naive": flat, "good": 1e5 * close / close.iloc[0], "noisy": flat}
    rows = [{"method": m, "key": m} for m in forecasts]
    significance(rows, forecasts, equities)
    good = rows[1]
    assert good["dm_stat"] < -5 and good["dm_pvalue"] < 1e-6  # a near-perfect forecast beats naive
    # naive's forecast never moves, so it is no trial: good and noisy are the 2 configurations that could trade
    assert good["deflated_sharpe"] == pytest.approx(_deflated_sharpe_of_two(period_returns(equities["good"])))
    assert np.isnan(rows[0]["dm_pvalue"]) and np.isnan(rows[0]["deflated_sharpe"])  # naive is the reference


def test_a_lucky_configuration_among_many_is_deflated():
    index, close, forecasts = _setup()
    held = 1e5 * close / close.iloc[0]
    rng = np.random.default_rng(5)
    equities = {"naive": pd.Series(1e5, index=index), "good": held * np.exp(1.2e-4 * np.arange(len(index)))}
    equities.update({f"luck{i}": held * np.exp(rng.normal(0, 4e-4) * np.arange(len(index))) for i in range(20)})
    frames = {name: forecasts["noisy"] for name in equities} | {"naive": forecasts["naive"]}
    rows = [{"method": m, "key": m} for m in equities]
    significance(rows, frames, equities, reps=300)
    good = rows[1]
    assert good["sharpe_ci_low"] > 0 and good["deflated_sharpe"] < 0.95  # above zero alone, but not among 21
    assert "edge" not in good["verdict"].replace("no evidence of edge", "")


def test_pretraining_question_names_the_winner():
    _, _, forecasts = _setup()
    table = pd.DataFrame({"method": ["lora", "full", "scratch", "naive"], "kind": ["llm", "llm", "llm", "baseline"],
                          "val_loss": [1.1, 1.2, 1.3, np.nan], "mse": [1.0, 0.5, 2.0, 3.0],
                          "relmae": [0.5, 0.4, 1.5, 1.0], "directional_accuracy": 0.5, "sharpe": [1.0, 2.0, -1.0, 0.0]})
    answer = pretraining_question(table, {"lora": forecasts["good"], "full": forecasts["naive"],
                                          "scratch": forecasts["noisy"], "naive": forecasts["naive"]})
    # chosen by validation loss (lora), not by test MSE (full)
    assert answer["best"] == "lora" and answer["sentence"].startswith("Yes on this data: lora")
    assert "it beats every baseline (1 of 1 after Holm)" in answer["sentence"]
    assert pretraining_question(table[table["method"] != "scratch"], forecasts) is None


def _deflated_sharpe_of_two(returns: pd.Series) -> float:
    """Bailey & Lopez de Prado (2014), eqs. 2 and 4 written out for 2 zero-skill trials of Sharpe variance
    1/(n-1): the expected maximum of two standard normals is exactly 1/sqrt(pi)."""
    r = returns.dropna().to_numpy()
    n, sharpe = len(r), r.mean() / r.std(ddof=1)
    best_of_trials = np.sqrt(1 / (n - 1)) / np.sqrt(np.pi)
    spread = 1 - skew(r) * sharpe + (kurtosis(r, fisher=False) - 1) / 4 * sharpe**2
    return float(norm.cdf((sharpe - best_of_trials) * np.sqrt(n - 1) / np.sqrt(spread)))


def test_a_sigma_that_knows_the_volatility_pays_in_a_volatility_managed_long_position():
    """A planted truth: a steady drift under a stochastic volatility, so that a long position sized by the true
    volatility earns a higher Sharpe ratio than one of constant size or one sized by an uninformative sigma (over
    three seeds: 1.3 to 1.6 times the constant one's)."""
    bars, true_sigma = stochastic_volatility_bars(1500, seed=0, persistence=0.95)
    prices = ["open", "high", "low", "close"]
    bars[prices] = bars[prices].mul(np.exp(2e-4 * np.arange(len(bars))), axis=0)
    close = bars["close"]

    def frame(sigma):
        return pd.DataFrame({"close": close, "forecast": close, "p_up": 0.5, "sigma": sigma}, index=bars.index)

    shuffled = np.random.default_rng(0).permutation(true_sigma.to_numpy())
    forecasts = {"truth": frame(true_sigma), "shuffled": frame(shuffled), "constant": frame(1e-3),
                 "another constant": frame(2e-3)}
    costs, calendar = Costs(spread_pips=0, commission_per_lot=0, slippage_pips=0, swap_long_pips=0), \
        Calendar.for_bars(bars.index)
    table = volatility_targeting(forecasts, bars, costs, 2.0, calendar, reps=100).set_index("method")
    assert list(table.index) == ["truth", "shuffled", "constant"]  # one constant sigma: the unmanaged control
    assert table.loc["truth", "spearman"] > 0.3 > abs(table.loc["shuffled", "spearman"])
    assert np.isnan(table.loc["constant", "spearman"])
    assert table.loc["truth", "sharpe"] > 1.15 * max(table.loc["constant", "sharpe"], table.loc["shuffled", "sharpe"])
    held = run_backtest(signal_frame(bars, forecasts["truth"]), VolatilityTargetStrategy,
                        {"side": "long", "target_bps": 2.0}, costs).equity  # the strategy as a user runs it
    assert table.loc["truth", "sharpe"] == pytest.approx(trading_performance(held, calendar)["sharpe"])
    assert table.loc["truth", "sharpe_ci_low"] < table.loc["truth", "sharpe"] < table.loc["truth", "sharpe_ci_high"]
