"""Score one set of test-bar forecasts: forecast error, distribution scores, the strategy's P&L, and how sure we
can be."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from llmsignal.backtests.costs import Costs
from llmsignal.backtests.engine import run_backtest
from llmsignal.backtests.metrics import (
    FX,
    Calendar,
    distribution_losses,
    distribution_scores,
    forecast_error,
    period_returns,
    trading_performance,
)
from llmsignal.backtests.results import computed
from llmsignal.backtests.significance import (
    confidence_set,
    deflated_sharpe_from_returns,
    diebold_mariano,
    directional_accuracy_ci,
    distribution_verdict,
    holm,
    loss_differential_test,
    relative_mse_ci,
    sharpe_ci,
    sharpe_loss_pvalue,
    sharpe_pvalue,
    verdict,
)
from llmsignal.strategies import VolatilityTargetStrategy, signal_frame


def errors(predictions: pd.DataFrame) -> np.ndarray:
    """Next-close forecast errors, bar by bar (the last bar has no next close)."""
    return (predictions["forecast"] - predictions["close"].shift(-1)).to_numpy()[:-1]


def evaluate(name: str, kind: str, predictions: pd.DataFrame, bars: pd.DataFrame, strategy: type,
             params: dict, costs: Costs, others: dict[str, pd.DataFrame] | None = None, scale: float | None = None,
             calendar: Calendar = FX, label: str | None = None) -> tuple[dict, pd.Series]:
    """One row of the results table for one method's forecasts under one strategy, and its equity curve.

    Every entry point scores a row here: forecast error, distribution scores, the strategy's P&L and costs,
    and every metric of ``results.METRICS`` that brings its own ``compute``. ``others`` are further forecasts of
    the same bars, fed as extra signal feeds (an ensemble votes with them); ``scale`` is MASE's denominator
    (``mase_scale``); ``label`` names the strategy in the row (default: its class name).
    """
    extra = {n: signal_frame(bars, f) for n, f in (others or {}).items()}
    result = run_backtest(signal_frame(bars, predictions), strategy, params, costs, extra_feeds=extra)
    row = {"method": name, "kind": kind, "strategy": label or strategy.__name__,
           **forecast_error(predictions, scale), **distribution_scores(predictions),
           **trading_performance(result.equity, calendar), "trades": result.trades, "commission": result.commission,
           "swap": result.swap, **computed(predictions, result)}
    return row, result.equity


def significance(rows: list[dict], forecasts: dict[str, pd.DataFrame], equities: dict[str, pd.Series],
                 reference: str = "naive", calendar: Calendar = FX, reps: int = 1000,
                 distribution_reference: str = "garch", range_reference: str = "har-range") -> None:
    """Add the tests behind each row's verdicts, corrected for the number of rows, and the verdicts themselves.

    ``forecasts`` is keyed by method, ``equities`` by the row's ``key`` (method and strategy).

    - Forecasts: Diebold-Mariano on squared errors against ``reference``, one test per method, Holm-adjusted
      across the methods (``dm_holm``); the Hansen model confidence set of the most accurate (``in_mcs``).
    - Distributions: Diebold-Mariano on minus the log score and on the CRPS against
      ``distribution_reference``, each Holm-adjusted across the methods in the same way (``ls_holm``,
      ``crps_holm``), and again against ``range_reference``, the baseline that reads the bars' ranges
      (``ls_holm_range``, ``crps_holm_range``); ``distribution_verdict`` says both. A reference that is not in
      the run leaves its columns empty.
    - Trading: a one-sided test of a positive Sharpe ratio per row, Holm-adjusted across the rows that could
      trade (``sharpe_holm``), and its mirror, of a negative one, Holm-adjusted across the same rows
      (``sharpe_loss_holm``, behind "loses money"); bootstrap intervals, and the deflated Sharpe ratio with
      that many trials.
    """
    methods = list(dict.fromkeys(row["method"] for row in rows))
    error = {m: errors(forecasts[m]) for m in methods}  # each method's, once
    reference_errors = errors(forecasts[reference])
    tested = [m for m in methods if m != reference]
    dm = {m: diebold_mariano(error[m], reference_errors) for m in tested}
    dm_holm = dict(zip(tested, holm([dm[m][1] for m in tested]), strict=True))
    best = confidence_set(pd.DataFrame({m: error[m] ** 2 for m in methods}), reps=reps)
    returns = {row["key"]: period_returns(equities[row["key"]], calendar) for row in rows}
    traders = [row["key"] for row in rows if _could_trade(forecasts[row["method"]])]
    trial_sharpes = [returns[k].mean() / returns[k].std() for k in traders if returns[k].std() > 0]
    sharpe_p = {k: sharpe_pvalue(returns[k]) for k in traders}
    sharpe_holm = dict(zip(traders, holm([sharpe_p[k] for k in traders]), strict=True))
    sharpe_loss_holm = dict(zip(traders, holm([sharpe_loss_pvalue(returns[k]) for k in traders]), strict=True))
    distribution = _distribution_tests(methods, forecasts, distribution_reference)
    against_range = _distribution_tests(methods, forecasts, range_reference, suffix="_range")
    for row in rows:
        row.update(_both_references(distribution.get(row["method"], {}), against_range.get(row["method"], {})))
        frame, key = forecasts[row["method"]], row["key"]
        stat, p = dm.get(row["method"], (np.nan, np.nan))
        close = frame["close"].to_numpy()
        called, moved = np.sign(frame["forecast"].to_numpy()[:-1] - close[:-1]), np.sign(np.diff(close))
        low, high = _interval(sharpe_ci, returns[key], calendar, reps)
        relative = (0.0, 0.0) if row["method"] == reference else \
            _interval(relative_mse_ci, error[row["method"]], reference_errors, reps)
        da_low, da_high = _interval(directional_accuracy_ci, called, moved, reps)
        dsr = _deflated(returns[key], len(traders), trial_sharpes) if key in sharpe_p else float("nan")
        row.update(mse_vs_naive=float(np.nanmean(error[row["method"]] ** 2) / np.nanmean(reference_errors ** 2) - 1),
                   mse_vs_naive_low=relative[0], mse_vs_naive_high=relative[1], dm_stat=stat, dm_pvalue=p,
                   dm_holm=dm_holm.get(row["method"], np.nan),
                   in_mcs=row["method"] in best, da_ci_low=da_low, da_ci_high=da_high, sharpe_ci_low=low,
                   sharpe_ci_high=high, sharpe_pvalue=sharpe_p.get(key, np.nan),
                   sharpe_holm=sharpe_holm.get(key, np.nan), sharpe_loss_holm=sharpe_loss_holm.get(key, np.nan),
                   deflated_sharpe=dsr,
                   verdict=verdict(stat, dm_holm.get(row["method"], np.nan), sharpe_holm.get(key, np.nan), low, high,
                                   dsr, row["method"] in best,
                                   sharpe_loss_holm=sharpe_loss_holm.get(key, np.nan)))


def volatility_targeting(forecasts: dict[str, pd.DataFrame], bars: pd.DataFrame, costs: Costs, target_bps: float,
                         calendar: Calendar = FX, reps: int = 1000) -> pd.DataFrame:
    """Volatility that pays: each forecaster's ``sigma`` sizing the same long position, and what that earns.

    ``VolatilityTargetStrategy`` with ``side=long`` holds ``min(1, target_bps / sigma)`` on every bar, whatever the
    forecast's direction, so that the rows differ by their sigma alone: a sigma that rises before the market moves
    and falls before it calms holds steadier risk, and a steadier risk is a higher Sharpe ratio where returns do not
    grow with volatility. Every forecaster whose sigma moves gets a row; the first whose sigma is constant is the
    unmanaged control (a constant-size long position, costs alike). Columns: ``method``, ``spearman`` (its sigma
    against the size of the next return, bar by bar), ``sharpe`` with its bootstrap interval, ``total_return``,
    ``max_drawdown``, ``trades`` and ``commission``.
    """
    moving = [name for name, frame in forecasts.items() if "sigma" in frame and frame["sigma"].nunique() > 1]
    constant = [name for name, frame in forecasts.items() if "sigma" in frame and frame["sigma"].nunique() == 1]
    rows = []
    for name in [*moving, *constant[:1]]:
        frame = forecasts[name]
        result = run_backtest(signal_frame(bars, frame), VolatilityTargetStrategy,
                              {"side": "long", "target_bps": target_bps}, costs)
        size = np.abs(np.log(frame["close"].shift(-1) / frame["close"])).iloc[:-1]
        low, high = _interval(sharpe_ci, period_returns(result.equity, calendar), calendar, reps)
        rows.append({"method": name, "spearman": float(spearmanr(frame["sigma"].iloc[:-1], size).statistic)
                     if name in moving else float("nan"), **trading_performance(result.equity, calendar),
                     "sharpe_ci_low": low, "sharpe_ci_high": high, "trades": result.trades,
                     "commission": result.commission})
    return pd.DataFrame(rows)


def _distribution_tests(methods: list[str], forecasts: dict[str, pd.DataFrame], reference: str,
                        suffix: str = "") -> dict[str, dict]:
    """Each method's log score and CRPS against ``reference``'s: DM statistic, p-value, Holm and the verdict.

    The columns' names end with ``suffix`` (a second reference's columns stay apart from the first's)."""
    losses = {m: distribution_losses(forecasts[m]) for m in methods}
    if reference not in losses or losses[reference]["log_score"].isna().all():
        return {}
    tested = [m for m in methods if m != reference and losses[m]["log_score"].notna().any()]
    # both as losses, lower is better: minus the log score, and the CRPS
    by_log = {m: loss_differential_test(-losses[m]["log_score"], -losses[reference]["log_score"]) for m in tested}
    by_crps = {m: loss_differential_test(losses[m]["crps"], losses[reference]["crps"]) for m in tested}
    log_holm = dict(zip(tested, holm([by_log[m][1] for m in tested]), strict=True))
    crps_holm = dict(zip(tested, holm([by_crps[m][1] for m in tested]), strict=True))
    role = "the reference that reads the bars' ranges" if suffix else "the reference of the distribution tests"
    found = {reference: {"distribution_verdict": role}}
    for m in tested:
        tests = {"ls_dm_stat": by_log[m][0], "ls_dm_pvalue": by_log[m][1], "ls_holm": log_holm[m],
                 "crps_dm_stat": by_crps[m][0], "crps_dm_pvalue": by_crps[m][1], "crps_holm": crps_holm[m]}
        found[m] = {**{name + suffix: value for name, value in tests.items()},
                    "distribution_verdict": distribution_verdict(by_log[m][0], log_holm[m], by_crps[m][0],
                                                                 crps_holm[m], reference)}
    return found


def _both_references(first: dict, second: dict) -> dict:
    """One row's tests against both references, its verdict the two in one line (a reference's own role first)."""
    said = [found["distribution_verdict"] for found in (first, second) if found.get("distribution_verdict")]
    said.sort(key=lambda part: not part.startswith("the reference"))
    return {**first, **second, **({"distribution_verdict": "; ".join(said)} if said else {})}


def _could_trade(forecasts: pd.DataFrame) -> bool:
    """A configuration counts as a trial of the deflated Sharpe ratio unless its forecast never moves (naive)."""
    return bool((forecasts["forecast"] != forecasts["close"]).any())


def _deflated(returns: pd.Series, trials: int, trial_sharpes: list[float]) -> float:
    """The deflated Sharpe ratio, or NaN for a test period too short to estimate it (under three days)."""
    try:
        return deflated_sharpe_from_returns(returns, max(1, trials),
                                            trial_sharpes if len(trial_sharpes) >= 2 else None)
    except ValueError:
        return float("nan")


def _interval(ci, *series) -> tuple[float, float]:
    """A bootstrap interval, or NaNs when there is too little to resample (a model that never calls a move)."""
    try:
        return ci(*series)
    except ValueError:
        return float("nan"), float("nan")


def pretraining_question(table: pd.DataFrame, forecasts: dict[str, pd.DataFrame]) -> dict | None:
    """Does pretraining help? The tuned method chosen on the validation split against ``scratch`` and the baselines.

    The method is chosen by its validation loss, never by the test bars it is then tested on; its test
    forecasts are compared with scratch's and with every baseline's by Diebold-Mariano on squared errors,
    Holm-adjusted across those comparisons. None when the run has no ``scratch`` row, no tuned method or no
    validation losses.
    """
    rows = table.drop_duplicates("method").set_index("method")
    # with ohlc rows too, scratch-ohlc and zero-shot-ohlc are no more pretrained methods than scratch is
    untuned = ["scratch", "zero-shot", "scratch-ohlc", "zero-shot-ohlc"]
    tuned = rows[(rows["kind"] == "llm") & ~rows.index.isin(untuned)]
    baselines = list(rows.index[rows["kind"] == "baseline"])
    if "scratch" not in rows.index or tuned.empty or not baselines or "val_loss" not in rows \
            or tuned["val_loss"].isna().all():
        return None
    best = tuned["val_loss"].idxmin()
    rivals = ["scratch", *baselines]
    tests = [diebold_mariano(errors(forecasts[best]), errors(forecasts[rival])) for rival in rivals]
    adjusted = holm([p for _, p in tests])
    compared = [{"rival": rival, "dm_stat": stat, "p_value": p, "p_holm": p_holm,
                 "mse_ratio": rows.loc[best, "mse"] / rows.loc[rival, "mse"]}
                for rival, (stat, p), p_holm in zip(rivals, tests, adjusted, strict=True)]
    scratch, others = compared[0], compared[1:]
    said = f"Holm p={scratch['p_holm']:.2g}"
    if scratch["p_holm"] < 0.05 and scratch["dm_stat"] < 0:
        sentence = f"Yes on this data: {best} (pretrained) forecasts better than scratch ({said})"
    elif scratch["p_holm"] < 0.05:
        sentence = f"No: scratch forecasts better than {best}, the pretrained method chosen on validation ({said})"
    else:
        sentence = f"Not shown on this data: {best} (pretrained) and scratch are not told apart ({said})"
    beaten = [c["rival"] for c in others if c["p_holm"] < 0.05 and c["dm_stat"] < 0]
    sentence += (f"; it beats {'every baseline' if len(beaten) == len(others) else ', '.join(beaten) or 'no baseline'}"
                 f" ({len(beaten)} of {len(others)} after Holm).")
    return {"best": best, "best_mse": rows.loc[best, "mse"], "best_sharpe": rows.loc[best, "sharpe"],
            "rows": rows.loc[[best, *rivals], ["kind", "val_loss", "mse", "relmae", "directional_accuracy", "sharpe"]],
            "compared": compared, "sentence": sentence}
