"""Compare runs already on disk: the same comparison page, without training or predicting again.

    llmsignal compare runs/eurusd runs/eurusd-contrarian --out runs/both

Each run folder is the ``--out`` of ``llmsignal run``. With several runs, each row's method is prefixed with its
run's folder name so that rows stay apart. Where every run forecast the same test bars, every test is recomputed
across the union of the rows shown (Holm over all of them, one confidence set, one reference); where the runs cover
different bars, their rows cannot be tested against each other, and the page says that it shows each run's own
verdicts.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from llmsignal.backtests.evaluation import significance
from llmsignal.backtests.report import write_report
from llmsignal.backtests.results import RunFolderError, RunOutputs, check_writable, table_of, verdict_columns
from llmsignal.finetune.bars import DataError


def _prefixes(folders: list[Path]) -> list[str]:
    """A distinct row prefix per run: its folder's name, numbered where two runs share one."""
    if len(folders) == 1:
        return [""]
    names = [f.resolve().name or "run" for f in folders]
    return [f"{name}/" if names.count(name) == 1 else f"{i}-{name}/" for i, name in enumerate(names, 1)]


def load_runs(folders: list[Path]) -> dict[str, RunOutputs]:
    """Each run's outputs by its row prefix (prefixed where there are several); a folder that is not a run is one
    line."""
    try:
        return {prefix: RunOutputs.load(f, prefix) for f, prefix in zip(folders, _prefixes(folders), strict=True)}
    except RunFolderError as err:
        raise DataError(str(err)) from None


def same_bars(runs: list[RunOutputs]) -> bool:
    """Whether every run forecast the same test bars, so that their per-bar losses can be tested together."""
    first = runs[0].forecasts[runs[0].reference].index
    return all(r.reference in r.forecasts and r.forecasts[r.reference].index.equals(first) for r in runs)


def combine(named: dict[str, RunOutputs]) -> RunOutputs:
    """One run's outputs from several: rows side by side, the tests recomputed across all of them when possible."""
    runs = list(named.values())
    if len(runs) == 1:
        return runs[0]
    first = runs[0]
    table = pd.concat([r.table for r in runs], ignore_index=True)
    equities = {k: v for r in runs for k, v in r.equities.items()}
    forecasts = {k: v for r in runs for k, v in r.forecasts.items()}
    warnings = [w for r in runs for w in r.warnings]
    settings = {f"{prefix.rstrip('/')}: {k}": v for prefix, r in named.items() for k, v in r.settings.items()}
    if same_bars(runs):
        rows = table.drop(columns=[c for c in table.columns if c in verdict_columns()]).to_dict("records")
        significance(rows, forecasts, equities, reference=first.reference, calendar=first.calendar,
                     distribution_reference=first.distribution_reference, range_reference=first.range_reference)
        table = table_of(rows)
        settings["tests"] = (f"recomputed across all {len(table)} rows of the {len(runs)} runs (every run forecast "
                             f"the same test bars); reference {first.reference}, distributions against "
                             f"{first.distribution_reference} and {first.range_reference}")
    else:
        warnings.append(f"the {len(runs)} runs forecast different test bars: each row's tests and verdicts are its "
                        "own run's, corrected for that run's rows only, and rows of different runs are not tested "
                        "against each other")
    folds = [r.folds for r in runs if r.folds is not None]
    volatility = [r.volatility for r in runs if r.volatility is not None]
    return RunOutputs(table=table, equities=equities, benchmark=first.benchmark, forecasts=forecasts,
                      settings=settings, warnings=warnings, calendar=first.calendar,
                      folds=pd.concat(folds, ignore_index=True) if folds else None,
                      volatility=pd.concat(volatility, ignore_index=True) if volatility else None,
                      losses={k: v for r in runs for k, v in r.losses.items()},
                      race={k: v for r in runs for k, v in r.race.items()}, threshold_bps=first.threshold_bps,
                      reference=first.reference, distribution_reference=first.distribution_reference,
                      range_reference=first.range_reference)


def compare(folders: list[Path], out: Path) -> pd.DataFrame:
    """Write the comparison page of ``folders`` to ``out``; returns the combined table."""
    check_writable(out, "--out")
    outputs = combine(load_runs(folders))
    outputs.save(out)
    write_report(out, outputs)
    return outputs.table.drop(columns="key")
