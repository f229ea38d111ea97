"""The Diebold-Mariano verdicts of a finished run, under the paired t-test and under the dependence-robust test.

    .venv/bin/python benchmarks/dm_rows.py runs/latest

For every forecaster of the run folder: the statistic of its per-bar loss differentials against the references
(squared error against naive; minus the log score and the CRPS against garch), the bandwidth the data chose, and the
Holm-adjusted p-values of both tests side by side, Holm across the same rows as the run's own verdicts. The paired
t-test is the same statistic with only lag 0 weighted (``_hac_test`` at bandwidth 1).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

if __package__ in (None, ""):  # run as a script: the repo root holds the benchmarks package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from llmsignal.backtests.evaluation import errors
from llmsignal.backtests.metrics import distribution_losses
from llmsignal.backtests.results import RunOutputs
from llmsignal.backtests.significance import _hac_test, dm_bandwidth, holm
from llmsignal.finetune.precision import cpu_name


def differentials(outputs: RunOutputs) -> dict[str, dict[str, np.ndarray]]:
    """Per-bar loss differentials of each forecaster against its reference, by loss."""
    found: dict[str, dict[str, np.ndarray]] = {"squared error vs naive": {}, "-log score vs garch": {},
                                               "CRPS vs garch": {}}
    naive = errors(outputs.forecasts[outputs.reference]) ** 2
    garch = distribution_losses(outputs.forecasts[outputs.distribution_reference])
    for name, frame in outputs.forecasts.items():
        if name != outputs.reference:
            found["squared error vs naive"][name] = errors(frame) ** 2 - naive
        losses = distribution_losses(frame)
        if name != outputs.distribution_reference and losses["log_score"].notna().any():
            found["-log score vs garch"][name] = (garch["log_score"] - losses["log_score"]).to_numpy()
            found["CRPS vs garch"][name] = (losses["crps"] - garch["crps"]).to_numpy()
    return found


def table(outputs: RunOutputs) -> pd.DataFrame:
    rows = []
    for loss, by_name in differentials(outputs).items():
        names = list(by_name)
        d = {n: by_name[n][~np.isnan(by_name[n])] for n in names}
        old = [_hac_test(d[n], 1.0) for n in names]
        new = [_hac_test(d[n], dm_bandwidth(d[n])) for n in names]
        old_holm, new_holm = holm([p for _, p in old]), holm([p for _, p in new])
        for i, n in enumerate(names):
            rows.append({"loss": loss, "forecaster": n, "bandwidth": dm_bandwidth(d[n]), "stat old": old[i][0],
                         "stat new": new[i][0], "Holm p old": old_holm[i], "Holm p new": new_holm[i]})
    return pd.DataFrame(rows)


def main(argv: list[str]) -> None:
    folder = Path(argv[0] if argv else "runs/latest")
    print(f"CPU: {cpu_name()}; run: {folder}")
    print(table(RunOutputs.load(folder)).to_string(index=False, float_format=lambda v: f"{v:.3g}"))


if __name__ == "__main__":
    main(sys.argv[1:])
