"""Does the distribution instrument see what is there? A GARCH(1,1) series whose true volatility is known.

    python benchmarks/distribution_check.py                          # full,lora,adapter; 3,000 bars; 200 steps
    python benchmarks/distribution_check.py --methods lora --steps 50 --out runs/dist-check

The series has strong volatility clustering (persistence alpha + beta = 0.97) and no mean
predictability (zero mean, Gaussian shocks). It goes through the ordinary ``llmsignal run`` path
(``RunConfig`` with ``--data``), then the check reads the run's ``comparison.csv`` and ``predictions.csv``:

1. the ``garch`` row's log score beats ``climatology``'s with a Diebold-Mariano p-value below 0.01;
2. each tuned method's ``sigma`` rank-correlates (Spearman) with the realised |next return| on the test
   bars at least 70% as well as the generator's true volatility does on the same bars.

It prints one table, with the machine's CPU at the top, and exits 1 when a check fails.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from llmsignal.run import RunConfig, run

SHARE_OF_TRUE = 0.7  # a tuned method's Spearman must reach this share of the true volatility's
EWMA_BARS = 48


def garch_series(bars: int, alpha: float, beta: float, seed: int, vol: float = 1e-3,
                 burn: int = 500) -> tuple[pd.DataFrame, pd.Series]:
    """Hourly bars of a zero-mean GARCH(1,1) with Gaussian shocks, and the true volatility of each bar's next return.

    The variance of the return after bar t is known at bar t: ``sigma2[t + 1] = omega + alpha r[t]^2 + beta
    sigma2[t]``; ``vol`` is the unconditional standard deviation per bar.
    """
    rng = np.random.default_rng(seed)
    omega = vol**2 * (1 - alpha - beta)
    variance, returns, sigmas = vol**2, np.empty(bars + burn), np.empty(bars + burn)
    for i in range(bars + burn):
        sigmas[i] = np.sqrt(variance)
        returns[i] = sigmas[i] * rng.standard_normal()
        variance = omega + alpha * returns[i] ** 2 + beta * variance
    returns, sigmas = returns[burn:], sigmas[burn:]
    close = 1.1 * np.exp(np.cumsum(np.r_[0.0, returns[:-1]]))  # close[t + 1] = close[t] * exp(returns[t])
    open_ = np.r_[close[0], close[:-1]]
    index = pd.date_range("2021-01-04", periods=bars, freq="h", name="timestamp")
    frame = pd.DataFrame({"open": open_, "high": np.maximum(open_, close) * 1.0001,
                          "low": np.minimum(open_, close) * 0.9999, "close": close, "volume": 1.0}, index=index)
    return frame, pd.Series(sigmas, index=index, name="true_sigma")  # sigmas[t]: of the return after bar t


def cpu_model() -> str:
    try:
        names = [line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                 if line.startswith("model name")]
        return f"{names[0]} ({len(names)} logical CPUs)" if names else platform.processor()
    except OSError:
        return platform.processor() or platform.machine()


def spearman_with_size(sigma: pd.Series, close: pd.Series) -> float:
    """Spearman correlation of a volatility forecast made at bar t with |log(close[t+1] / close[t])|."""
    size = np.abs(np.log(close.shift(-1) / close))
    return float(spearmanr(sigma.iloc[:-1], size.iloc[:-1]).statistic)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default="full,lora,adapter")
    parser.add_argument("--bars", type=int, default=3000)
    parser.add_argument("--alpha", type=float, default=0.10)
    parser.add_argument("--beta", type=float, default=0.87)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, help="training steps per method (default: llmsignal run's, 200)")
    parser.add_argument("--out", type=Path, default=Path("runs/distribution-check"))
    args = parser.parse_args(argv)
    methods = args.methods.split(",")
    bars, true_sigma = garch_series(args.bars, args.alpha, args.beta, args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    data = args.out / "garch_bars.csv"
    bars.to_csv(data)
    began = time.perf_counter()
    run(RunConfig(data=str(data), methods=methods, registry=args.out / "registry", out=args.out / "run",
                  steps=args.steps, seed=args.seed))
    seconds = time.perf_counter() - began
    table = pd.read_csv(args.out / "run" / "comparison.csv").drop_duplicates("method").set_index("method")
    predictions = pd.read_csv(args.out / "run" / "predictions.csv", index_col=0, parse_dates=[0])
    close = predictions.loc[predictions["method"] == "garch", "close"]
    test = close.index
    truth = spearman_with_size(true_sigma.loc[test], close)
    returns = np.log(bars["close"]).diff()
    ewma = np.sqrt((returns**2).ewm(span=EWMA_BARS).mean())  # at bar t: returns up to t only
    rows = [("true volatility", np.nan, np.nan, np.nan, truth, "")]
    rows.append((f"{EWMA_BARS}-bar EWMA", np.nan, np.nan, np.nan, spearman_with_size(ewma.loc[test], close), ""))
    failures = []
    for name in ["garch", "climatology", *methods]:
        sigma = predictions.loc[predictions["method"] == name, "sigma"]
        rho = spearman_with_size(sigma, close) if sigma.std() > 0 else float("nan")
        check = ""
        if name in methods:
            passed = rho >= SHARE_OF_TRUE * truth
            check = f"{'pass' if passed else 'FAIL'}: {rho / truth:.0%} of the true volatility's"
            failures += [] if passed else [name]
        scores = table.loc[name]
        rows.append((name, scores["log_score"], scores["crps"], scores["coverage_90"], rho, check))
    climatology = table.loc["climatology"]
    garch_wins = climatology["ls_dm_stat"] > 0 and climatology["ls_dm_pvalue"] < 0.01
    failures += [] if garch_wins else ["garch vs climatology"]
    print(f"CPU: {cpu_model()}; run {seconds:.0f} s")
    print(f"GARCH(1,1) series: {args.bars} hourly bars, alpha {args.alpha}, beta {args.beta} (persistence "
          f"{args.alpha + args.beta:.2f}), zero mean, seed {args.seed}; test bars {len(test)}; methods trained "
          f"{args.steps or 200} steps")
    print("\n| forecaster | log score | CRPS (bp) | coverage 90% | Spearman(sigma, abs next return) | check |\n"
          "|---|---|---|---|---|---|")
    for name, log_score, crps, coverage, rho, check in rows:
        cells = [f"{v:.3f}" if np.isfinite(v) else "–" for v in (log_score, crps, coverage, rho)]
        print(f"| {name} | {' | '.join(cells)} | {check} |")
    print(f"\ngarch's log score {table.loc['garch', 'log_score']:.3f} against climatology's "
          f"{climatology['log_score']:.3f}: DM statistic (climatology - garch losses) {climatology['ls_dm_stat']:.2f}, "
          f"p = {climatology['ls_dm_pvalue']:.2g} ({'pass' if garch_wins else 'FAIL'}: p < 0.01 needed)")
    print(f"tuned sigma needs Spearman >= {SHARE_OF_TRUE:.0%} x {truth:.3f} = {SHARE_OF_TRUE * truth:.3f}")
    for name in methods:
        print(f"{name}: {table.loc[name, 'distribution_verdict']}")
    print("all checks pass" if not failures else f"FAILED: {', '.join(failures)}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
