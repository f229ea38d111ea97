import numpy as np
import pandas as pd
import pytest
from scipy.stats import kurtosis, norm, skew

from llmsignal.backtests.evaluation import pretraining_question, significance
from llmsignal.backtests.metrics import period_returns


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
