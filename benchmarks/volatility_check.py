"""Does a model that reads the bars see their volatility? A stochastic-volatility series whose range shows it.

    python benchmarks/volatility_check.py                            # lora:close, 3,000 bars, 30 steps: minutes
    python benchmarks/volatility_check.py --methods full:close,lora:close --steps 200 --out runs/vol-check

The series (``benchmarks.synthetic.stochastic_volatility_bars``) has a log-AR(1) volatility and bars drawn as
paths of Gaussian steps, so a bar's high and low show its volatility better than its close does, and the true
volatility of every next return is known. It goes through the ordinary ``llmsignal run`` path (``RunConfig`` with
``--data``, every baseline included) and prints, for ``garch``, ``har-range``, ``climatology`` and each tuned
``method:inputs``: the log score, the CRPS, the 90% coverage, the Spearman correlation of sigma with the true
volatility, and the Diebold-Mariano test of its log score against garch's (``loss_differential_test``: a Bartlett
long-run variance, fixed-b reference), beside the true distribution's own scores (the ceiling). The check: the
range-based baseline's sigma follows the true volatility better than garch's, which reads closes only. It exits
1 when it does not.

``method:inputs`` names what a tuned method reads; today every method reads closes (``close``). ``INPUTS`` is where
another input kind (``ohlc``) is added, with what ``_config`` passes to the run for it.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

if not __package__:  # `python benchmarks/volatility_check.py`: the repository root, where `benchmarks` is a package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import pandas as pd
from scipy.stats import norm, spearmanr

from benchmarks.distribution_check import cpu_model
from benchmarks.synthetic import stochastic_volatility_bars
from llmsignal.backtests.metrics import distribution_losses
from llmsignal.backtests.significance import loss_differential_test
from llmsignal.models.distribution import distribution_frame
from llmsignal.run import RunConfig, run

INPUTS = ("close",)  # what a tuned method may read; `ohlc` joins once the codec writes ranges
BASELINE_ROWS = ("garch", "har-range", "climatology")


def parse_methods(text: str) -> list[tuple[str, str]]:
    """``lora:close,full`` -> [("lora", "close"), ("full", "close")]; an input kind not in ``INPUTS`` is one line."""
    found = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        method, _, inputs = item.partition(":")
        inputs = inputs or "close"
        if inputs not in INPUTS:
            raise SystemExit(f"volatility_check: --methods {item}: inputs {inputs!r} are not readable yet; "
                             f"give one of {', '.join(INPUTS)}")
        found.append((method, inputs))
    return found


def _config(data: Path, methods: list[str], inputs: str, args: argparse.Namespace) -> RunConfig:
    """The run of ``methods`` reading ``inputs``: a fixed number of steps each, so that every row costs alike."""
    return RunConfig(data=str(data), methods=methods, registry=args.out / f"registry-{inputs}",
                     out=args.out / f"run-{inputs}",
                     budget="steps", steps=args.steps, seed=args.seed, forecasts_per_pass=args.forecasts_per_pass)


def scores(frame: pd.DataFrame, truth: pd.Series, garch: pd.DataFrame | None) -> dict[str, float]:
    """One row of the table: the distribution's scores, sigma against the truth, and its log score against garch's."""
    losses = distribution_losses(frame)
    rho = spearmanr(frame["sigma"], truth.loc[frame.index]).statistic if frame["sigma"].nunique() > 1 else np.nan
    stat, p = (np.nan, np.nan) if garch is None else \
        loss_differential_test(-losses["log_score"], -distribution_losses(garch)["log_score"])
    actual = np.log(frame["close"].shift(-1) / frame["close"]).iloc[:-1]
    inside = (actual >= np.log(frame["q05"] / frame["close"]).iloc[:-1]) & \
        (actual <= np.log(frame["q95"] / frame["close"]).iloc[:-1])
    return {"log score": losses["log_score"].mean(), "CRPS (bp)": losses["crps"].mean(),
            "coverage 90%": float(inside.mean()), "Spearman(sigma, true sigma)": float(rho),
            "DM vs garch": float(stat), "p": float(p)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default="lora:close", help="METHOD[:INPUTS],... (inputs: close)")
    parser.add_argument("--bars", type=int, default=3000)
    parser.add_argument("--persistence", type=float, default=0.98)
    parser.add_argument("--vol-of-vol", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=30, help="training steps per method (default 30; 200 or more "
                                                                 "for a method's real figure)")
    parser.add_argument("--forecasts-per-pass", type=int, default=16,
                        help="bars sharing a window when forecasting (default 16, as --quick; 1 is exact and slower)")
    parser.add_argument("--out", type=Path, default=Path("runs/volatility-check"))
    args = parser.parse_args(argv)
    methods = parse_methods(args.methods)
    if not methods:
        parser.error("--methods names no method")
    bars, true_sigma = stochastic_volatility_bars(args.bars, seed=args.seed, persistence=args.persistence,
                                                  vol_of_vol=args.vol_of_vol)
    args.out.mkdir(parents=True, exist_ok=True)
    data = args.out / "sv_bars.csv"
    bars.to_csv(data)
    began = time.perf_counter()
    forecasts: dict[tuple[str, str], pd.DataFrame] = {}
    for inputs in dict.fromkeys(kind for _, kind in methods):
        tuned = [m for m, kind in methods if kind == inputs]
        run(_config(data, tuned, inputs, args))
        predictions = pd.read_csv(args.out / f"run-{inputs}" / "predictions.csv", index_col=0, parse_dates=[0])
        for name, frame in predictions.groupby("method"):  # the baselines read the same bars in every run
            forecasts[(str(name), inputs if name in tuned else "close")] = frame.drop(columns="method")
    seconds = time.perf_counter() - began
    garch = forecasts[("garch", "close")]
    step = float(garch["bin_step"].iloc[0])
    oracle = distribution_frame(garch["close"], norm(loc=0.0, scale=true_sigma.loc[garch.index].to_numpy()), step)
    rows = {("true volatility", "–"): scores(oracle, true_sigma, garch)}
    rows |= {(name, "close"): scores(forecasts[(name, "close")], true_sigma, None if name == "garch" else garch)
             for name in BASELINE_ROWS if (name, "close") in forecasts}
    rows |= {(name, inputs): scores(forecasts[(name, inputs)], true_sigma, garch) for name, inputs in methods}
    table = pd.DataFrame(rows).T
    print(f"CPU: {cpu_model()}; runs {seconds:.0f} s")
    print(f"stochastic-volatility series: {args.bars} hourly bars, log-volatility AR(1) persistence "
          f"{args.persistence}, stationary sd {args.vol_of_vol}, 60 intrabar steps a bar, seed {args.seed}; "
          f"{len(garch)} test bars; methods trained {args.steps} steps, {args.forecasts_per_pass} forecasts per pass")
    print("\n| forecaster | inputs | " + " | ".join(table.columns) + " |\n|---|---|" + "---|" * len(table.columns))
    for (name, inputs), row in table.iterrows():
        cells = ["–" if not np.isfinite(v) else f"{v:.2g}" if column == "p" else f"{v:.3f}"
                 for column, v in row.items()]
        print(f"| {name} | {inputs} | {' | '.join(cells)} |")
    rho = table["Spearman(sigma, true sigma)"]
    passed = rho[("har-range", "close")] > rho[("garch", "close")] if ("har-range", "close") in rho else False
    print(f"\nDM vs garch: statistic of (row - garch) minus log score, negative = the row's log score is higher; "
          f"p two-sided.\nhar-range's sigma follows the true volatility {'better' if passed else 'NOT better'} than "
          f"garch's: {'pass' if passed else 'FAIL'}")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
