import numpy as np
import pandas as pd
import pytest
from scipy.stats import kurtosis, norm, skew

from llmsignal.backtests.evaluation import pretraining_question, significance
from llmsignal.backtests.metrics import daily_returns


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
    rows = [{"method": m, "key": m, "mase": 1.0} for m in forecasts]
    significance(rows, forecasts, equities)
    good = rows[1]
    assert good["dm_stat"] < -5 and good["dm_pvalue"] < 1e-6  # a near-perfect forecast beats naive
    assert good["deflated_sharpe"] == pytest.approx(_deflated_sharpe_by_hand(daily_returns(equities["good"]), 3))
    assert np.isnan(rows[0]["dm_pvalue"])  # naive is the reference


def test_a_lucky_configuration_among_many_is_deflated():
    index, close, forecasts = _setup()
    held = 1e5 * close / close.iloc[0]
    rng = np.random.default_rng(5)
    equities = {"naive": pd.Series(1e5, index=index), "good": held * np.exp(1.2e-4 * np.arange(len(index)))}
    equities.update({f"luck{i}": held * np.exp(rng.normal(0, 4e-4) * np.arange(len(index))) for i in range(20)})
    frames = {name: forecasts["noisy"] for name in equities} | {"naive": forecasts["naive"]}
    rows = [{"method": m, "key": m, "mase": 1.0} for m in equities]
    significance(rows, frames, equities)
    good = rows[1]
    assert good["sharpe_ci_low"] > 0 and good["deflated_sharpe"] < 0.95
    assert good["verdict"].startswith("evidence of edge")
    assert "not after deflating for 22 configurations" in good["verdict"]


def test_pretraining_question_names_the_winner():
    _, _, forecasts = _setup()
    table = pd.DataFrame({"method": ["lora", "scratch", "naive"], "kind": ["llm", "llm", "baseline"],
                          "mse": [1.0, 2.0, 3.0], "mase": [0.5, 1.5, 1.0], "directional_accuracy": 0.5,
                          "sharpe": [1.0, -1.0, 0.0]})
    answer = pretraining_question(table, {"lora": forecasts["good"], "scratch": forecasts["noisy"],
                                          "naive": forecasts["naive"]})
    assert answer["best"] == "lora" and answer["sentence"].startswith("Yes on this data: lora")
    assert "it beats the best baseline, naive" in answer["sentence"]
    assert pretraining_question(table[table["method"] != "scratch"], forecasts) is None


def _deflated_sharpe_by_hand(returns: pd.Series, trials: int) -> float:
    """Bailey & Lopez de Prado (2014), eqs. 2 and 4 written out: zero-skill trials, Sharpe variance 1/(n-1)."""
    r = returns.dropna().to_numpy()
    n, sharpe = len(r), r.mean() / r.std(ddof=1)
    gamma = 0.5772156649015329
    best_of_trials = np.sqrt(1 / (n - 1)) * ((1 - gamma) * norm.ppf(1 - 1 / trials)
                                             + gamma * norm.ppf(1 - 1 / (trials * np.e)))
    spread = 1 - skew(r) * sharpe + (kurtosis(r, fisher=False) - 1) / 4 * sharpe**2
    return float(norm.cdf((sharpe - best_of_trials) * np.sqrt(n - 1) / np.sqrt(spread)))
