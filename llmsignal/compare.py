"""Compare runs already on disk: the same comparison page, without training or predicting again.

    llmsignal compare runs/eurusd runs/goog --out runs/both

Each run folder is the ``--out`` of ``llmsignal run``. With several runs, each row's method is
prefixed with its run's folder name so that rows stay apart.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from llmsignal.backtests.evaluation import pretraining_question
from llmsignal.backtests.metrics import Calendar
from llmsignal.backtests.report import BENCHMARK, THRESHOLD_SETTING, write_report
from llmsignal.finetune.bars import DataError

RUN_FILES = ("comparison.csv", "equity.csv", "predictions.csv", "settings.json")


def load_run(folder: Path, prefix: str = "") -> tuple[pd.DataFrame, dict, pd.Series, dict, dict]:
    """A run's table (with keys), equity curves, benchmark, forecasts and settings."""
    missing = [name for name in RUN_FILES if not (folder / name).exists()]
    if missing:
        raise DataError(f"{folder}: not an llmsignal run folder (missing {', '.join(missing)})")
    table = pd.read_csv(folder / "comparison.csv")
    equity = pd.read_csv(folder / "equity.csv", index_col=0, parse_dates=[0])
    single = table["strategy"].nunique() == 1
    table["key"] = [m if single else f"{m}-{s}" for m, s in zip(table["method"], table["strategy"], strict=True)]
    predictions = pd.read_csv(folder / "predictions.csv", index_col=0, parse_dates=[0])
    forecasts = {f"{prefix}{m}": frame.drop(columns="method") for m, frame in predictions.groupby("method")}
    equities = {f"{prefix}{k}": equity[k] for k in table["key"]}
    table["method"], table["key"] = prefix + table["method"], prefix + table["key"]
    return table, equities, equity[BENCHMARK], forecasts, json.loads((folder / "settings.json").read_text())


def _prefixes(folders: list[Path]) -> list[str]:
    """A distinct row prefix per run: its folder's name, numbered where two runs share one."""
    if len(folders) == 1:
        return [""]
    names = [f.resolve().name or "run" for f in folders]
    return [f"{name}/" if names.count(name) == 1 else f"{i}-{name}/" for i, name in enumerate(names, 1)]


def compare(folders: list[Path], out: Path) -> pd.DataFrame:
    """Write the comparison page of ``folders`` to ``out``; returns the combined table."""
    runs = [load_run(f, prefix) for f, prefix in zip(folders, _prefixes(folders), strict=True)]
    table = pd.concat([r[0] for r in runs], ignore_index=True)
    equities = {k: v for r in runs for k, v in r[1].items()}
    forecasts = {k: v for r in runs for k, v in r[3].items()}
    settings = {f"{folder.name}: {k}" if len(folders) > 1 else k: v for folder, r in zip(folders, runs, strict=True)
                for k, v in r[4].items() if k != "warnings"}
    alerts = [w for r in runs for w in r[4].get("warnings", [])]
    out.mkdir(parents=True, exist_ok=True)
    table.drop(columns="key").to_csv(out / "comparison.csv", index=False)
    pretraining = pretraining_question(table, forecasts) if len(folders) == 1 else None
    folds = []
    for folder, prefix in zip(folders, _prefixes(folders), strict=True):
        if (folder / "folds.csv").exists():  # a walk-forward run
            frame = pd.read_csv(folder / "folds.csv")
            frame["method"] = prefix + frame["method"]
            folds.append(frame)
    losses = {f"{prefix}{name}": curve for folder, prefix in zip(folders, _prefixes(folders), strict=True)
              if (folder / "losses.json").exists()
              for name, curve in json.loads((folder / "losses.json").read_text()).items()}
    write_report(out, table, equities, runs[0][2], forecasts, settings, alerts, pretraining,
                 pd.concat(folds, ignore_index=True) if folds else None, Calendar.for_bars(runs[0][2].index), losses,
                 runs[0][4].get(THRESHOLD_SETTING))
    return table
