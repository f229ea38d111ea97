"""Can every method find a planted signal once it is trained to its best? Prints one table.

    python benchmarks/fair_race.py                 # AR(1) returns, phi = -0.6, 3,000 hourly bars
    python benchmarks/fair_race.py --methods lora,adapter --budgets converged

The series' best forecaster calls the direction of the next return about 70% of the time. Each
budget runs ``llmsignal run`` on it ("steps": 200 steps at each method's default learning rate;
"converged": the validation-split search) and the table gives each method's directional accuracy
on the test bars, the learning rate and steps it used, its validation loss and its training seconds.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from llmsignal.finetune.precision import cpu_features, cpu_name
from llmsignal.run import RunConfig, run

METHODS = "full,lora,adapter,houlsby,parallel,ia3"
TARGET = 0.62


def ar1_bars(n: int = 3000, phi: float = -0.6, sigma: float = 1e-3, seed: int = 0) -> pd.DataFrame:
    """Hourly bars whose log returns follow r_t = phi * r_(t-1) + e_t."""
    rng = np.random.default_rng(seed)
    shocks, returns = rng.normal(0, sigma, n), np.zeros(n)
    for t in range(1, n):
        returns[t] = phi * returns[t - 1] + shocks[t]
    close = 1.1 * np.exp(np.cumsum(returns))
    open_ = np.r_[close[0], close[:-1]]
    return pd.DataFrame({"open": open_, "high": np.maximum(open_, close) * 1.0002,
                         "low": np.minimum(open_, close) * 0.9998, "close": close, "volume": 1.0},
                        index=pd.date_range("2020-01-01", periods=n, freq="h", name="timestamp"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", default=METHODS)
    parser.add_argument("--budgets", default="steps,converged")
    parser.add_argument("--out", type=Path, help="keep each run's outputs here (default: a temporary folder)")
    args = parser.parse_args()
    print(f"CPU: {cpu_name()} ({', '.join(cpu_features())})", file=sys.stderr)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.out or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        data = folder / "ar1.csv"
        ar1_bars().to_csv(data)
        for budget in args.budgets.split(","):
            table = run(RunConfig(data=str(data), methods=args.methods.split(","), budget=budget,
                                  registry=folder / "registry", out=folder / budget))
            tuned = table[table["kind"] == "llm"].set_index("method")
            for method, row in tuned.iterrows():
                rows.append({"budget": budget, "method": method, "direction": row["directional_accuracy"],
                             f">= {TARGET}": row["directional_accuracy"] >= TARGET, "lr": row["lr"],
                             "steps": row["steps_used"], "best step": row["best_step"],
                             "val loss": row["val_loss"], "train s": row["train_seconds"]})
            naive = table.set_index("method").loc["ar", "directional_accuracy"]
            print(f"{budget}: the ar baseline (fitted AR model) calls direction {naive:.3f}", file=sys.stderr)
    print(f"CPU: {cpu_name()} ({', '.join(cpu_features())})")
    print(pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:.4g}"))


if __name__ == "__main__":
    main()
