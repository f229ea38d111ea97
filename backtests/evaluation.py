"""Score one set of test-bar forecasts: forecast error, the strategy's P&L, and how sure we can be."""

from __future__ import annotations

import numpy as np
import pandas as pd

from llmsignal.backtests.costs import Costs
from llmsignal.backtests.engine import run_backtest
from llmsignal.backtests.metrics import daily_returns, forecast_error, trading_performance
from llmsignal.backtests.significance import (
    deflated_sharpe_from_returns,
    diebold_mariano,
    directional_accuracy_ci,
    sharpe_ci,
    verdict,
)
from llmsignal.strategies import signal_frame

DSR_LEVEL = 0.95


def errors(predictions: pd.DataFrame) -> np.ndarray:
    """Next-close forecast errors, bar by bar (the last bar has no next close)."""
    return (predictions["forecast"] - predictions["close"].shift(-1)).to_numpy()[:-1]


def evaluate(name: str, kind: str, predictions: pd.DataFrame, bars: pd.DataFrame, strategy: type,
             params: dict, costs: Costs, others: dict[str, pd.DataFrame] | None = None) -> tuple[dict, pd.Series]:
    """Forecast error and the strategy's P&L for one method's forecasts; returns the row and the equity curve.

    ``others`` are further forecasts of the same bars, fed as extra signal feeds (an ensemble votes with them).
    """
    extra = {n: signal_frame(bars, f) for n, f in (others or {}).items()}
    result = run_backtest(signal_frame(bars, predictions), strategy, params, costs, extra_feeds=extra)
    row = {"method": name, "kind": kind, **forecast_error(predictions), **trading_performance(result.equity),
           "trades": result.trades, "commission": result.commission, "swap": result.swap}
    return row, result.equity


def significance(rows: list[dict], forecasts: dict[str, pd.DataFrame], equities: dict[str, pd.Series],
                 reference: str = "naive") -> None:
    """Add DM against ``reference``, bootstrap CIs, the deflated Sharpe ratio and a verdict to each row.

    ``forecasts`` is keyed by method, ``equities`` by the row's ``key`` (method and strategy). The
    deflated Sharpe counts every row of the comparison as one configuration tried.
    """
    daily = {key: daily_returns(equity) for key, equity in equities.items()}
    trial_sharpes = [r.mean() / r.std() for r in daily.values() if r.std() > 0]
    reference_errors = errors(forecasts[reference])
    for row in rows:
        frame, returns = forecasts[row["method"]], daily[row["key"]]
        stat, p = (np.nan, np.nan)
        if row["method"] != reference:
            stat, p = diebold_mariano(errors(frame), reference_errors)
        close = frame["close"].to_numpy()
        called, moved = np.sign(frame["forecast"].to_numpy()[:-1] - close[:-1]), np.sign(np.diff(close))
        low, high = _interval(sharpe_ci, returns)
        da_low, da_high = _interval(directional_accuracy_ci, called, moved)
        dsr = _deflated(returns, len(equities), trial_sharpes)
        said = verdict((low, high), p, row["mase"])
        if low > 0 and not dsr >= DSR_LEVEL:  # one lucky configuration among many is no edge
            said += f"; but not after deflating for {len(equities)} configurations (DSR {dsr:.2f})"
        row.update(dm_stat=stat, dm_pvalue=p, da_ci_low=da_low, da_ci_high=da_high, sharpe_ci_low=low,
                   sharpe_ci_high=high, deflated_sharpe=dsr, verdict=said)


def _deflated(returns: pd.Series, trials: int, trial_sharpes: list[float]) -> float:
    """The deflated Sharpe ratio, or NaN for a test period too short to estimate it (under three days)."""
    try:
        return deflated_sharpe_from_returns(returns, trials, trial_sharpes if len(trial_sharpes) >= 2 else None)
    except ValueError:
        return float("nan")


def _interval(ci, *series) -> tuple[float, float]:
    """A bootstrap interval, or NaNs when there is too little to resample (a model that never calls a move)."""
    try:
        return ci(*series)
    except ValueError:
        return float("nan"), float("nan")


def pretraining_question(table: pd.DataFrame, forecasts: dict[str, pd.DataFrame]) -> dict | None:
    """Does pretraining help? The best tuned method against ``scratch`` and the best baseline.

    "Best" is the lowest MSE; the DM p-values compare the best tuned method's forecast losses
    with each rival's. None when the run has no ``scratch`` row or no tuned method.
    """
    rows = table.drop_duplicates("method").set_index("method")
    tuned = rows[(rows["kind"] == "llm") & ~rows.index.isin(["scratch", "zero-shot"])]
    baselines = rows[rows["kind"] == "baseline"]
    if "scratch" not in rows.index or tuned.empty or baselines.empty:
        return None
    best, baseline = tuned["mse"].idxmin(), baselines["mse"].idxmin()
    compared = []
    for rival in ("scratch", baseline):
        _, p = diebold_mariano(errors(forecasts[best]), errors(forecasts[rival]))
        compared.append({"rival": rival, "p_value": p, "mse_ratio": rows.loc[best, "mse"] / rows.loc[rival, "mse"],
                         "sharpe": rows.loc[rival, "sharpe"]})
    scratch, versus_baseline = compared
    p = f"DM p={scratch['p_value']:.3g}"
    if scratch["p_value"] < 0.05 and scratch["mse_ratio"] < 1:
        sentence = f"Yes on this data: {best} (pretrained) forecasts better than scratch ({p})"
    elif scratch["p_value"] < 0.05:
        sentence = f"No: scratch forecasts better than the best pretrained method, {best} ({p})"
    else:
        sentence = f"Not shown on this data: {best} (pretrained) and scratch forecast equally well ({p})"
    beats = versus_baseline["mse_ratio"] < 1 and versus_baseline["p_value"] < 0.05
    sentence += (f"; {'it beats' if beats else 'it does not beat'} the best baseline, {baseline} "
                 f"(DM p={versus_baseline['p_value']:.3g}).")
    return {"best": best, "best_mse": rows.loc[best, "mse"], "best_sharpe": rows.loc[best, "sharpe"],
            "rows": rows.loc[[best, "scratch", baseline], ["kind", "mse", "mase", "directional_accuracy", "sharpe"]],
            "compared": compared, "sentence": sentence}
