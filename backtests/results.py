"""The results table and a run's files: each metric once, the row key, and the folder a run writes.

A metric is declared once in ``METRICS``; ``comparison.csv``, the page, ``llmsignal compare``, ``llmsignal
backtest`` and sweeps all read it from here. A metric that the existing scorers do not already produce carries its
own ``compute``, which ``evaluate`` calls for every row:

    >>> METRICS.append(Metric("hit_rate", "higher", sweep=True,
    ...                       compute=lambda predictions, backtest: backtest.trades / len(predictions)))
    ...                                                                          # doctest: +SKIP

A run's folder is written and read by ``RunOutputs`` alone:

    >>> outputs = RunOutputs.load(Path("runs/latest"))                          # doctest: +SKIP
    >>> outputs.table.loc[:, ["method", "strategy", "sharpe"]]                  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from llmsignal.backtests.metrics import Calendar

IDENTITY = ["method", "kind", "strategy", "inputs"]  # what a row is; the metrics follow
INPUTS_DEFAULT = "close"  # the inputs of a row written before rows recorded them: every model read closes only
BENCHMARK = "buy & hold"  # the equity column of the bars themselves, in equity.csv and every tearsheet


@dataclass(frozen=True)
class Metric:
    """One column of the results table.

    ``better``: which way is better, for marking the best value (None: not ranked). ``needs``: what it is
    computed from (forecasts, trades, the training record, or the tests across rows). ``sweep``: whether a
    sweep's table keeps it. ``compute``: for a metric no scorer produces, ``f(predictions, backtest) -> float``.
    """

    name: str
    better: Literal["lower", "higher"] | None = None
    needs: Literal["forecasts", "trades", "training", "tests"] = "forecasts"
    sweep: bool = False
    compute: Callable[[pd.DataFrame, Any], float] | None = None


def _many(names: str, **common: Any) -> list[Metric]:
    return [Metric(name, **common) for name in names.split()]


METRICS: list[Metric] = [
    *_many("mse mae relmae mase", better="lower", sweep=True),
    Metric("directional_accuracy", "higher", sweep=True),
    *_many("da_base_rate da_pvalue"),
    *_many("sharpe total_return max_drawdown", better="higher", needs="trades", sweep=True),
    *_many("trades commission swap", needs="trades", sweep=True),
    Metric("trainable_params", "lower", "training", sweep=True),
    Metric("train_seconds", "lower", "training", sweep=True),
    *_many("val_loss lr steps_used best_step", needs="training"),
    *_many("peak_memory_mb saved_mb predict_ms_per_bar", better="lower", needs="training", sweep=True),
    Metric("predict_ms_per_bar_merged", "lower", "training"),
    *_many("mse_vs_naive mse_vs_naive_low mse_vs_naive_high dm_stat", needs="tests"),
    Metric("dm_pvalue", needs="tests", sweep=True),
    *_many("dm_holm in_mcs da_ci_low da_ci_high sharpe_ci_low sharpe_ci_high sharpe_pvalue sharpe_holm "
           "sharpe_loss_holm", needs="tests"),
    Metric("deflated_sharpe", "higher", "tests"),
    Metric("verdict", needs="tests", sweep=True),
    # the forecast distributions: scores, then the tests against garch and har-range behind distribution_verdict
    Metric("log_score", "higher", sweep=True),
    Metric("crps", "lower", sweep=True),
    Metric("coverage_90"),
    *_many("calibration_error qlike", better="lower"),
    *_many("ls_dm_stat ls_dm_pvalue ls_holm crps_dm_stat crps_dm_pvalue crps_holm", needs="tests"),
    *_many("ls_dm_stat_range ls_dm_pvalue_range ls_holm_range crps_dm_stat_range crps_dm_pvalue_range "
           "crps_holm_range distribution_verdict", needs="tests"),
]
INTERNAL = ["entry", "key"]  # the registry entries behind a row, and its name for equity and tearsheet files


def columns() -> list[str]:
    """The results table's columns, in order: what a row is, then every metric."""
    return [*IDENTITY, *(m.name for m in METRICS)]


def sweep_metrics() -> list[str]:
    return [m.name for m in METRICS if m.sweep]


def verdict_columns() -> list[str]:
    """The columns that the tests across rows write (``evaluation.significance``)."""
    return [m.name for m in METRICS if m.needs == "tests"]


def better(name: str) -> str | None:
    """"lower", "higher" or None for a metric; None for any other column."""
    return next((m.better for m in METRICS if m.name == name), None)


def needs_trades(name: str) -> bool:
    """A trading figure: a row that never traded wins none of these."""
    return any(m.name == name and m.needs == "trades" for m in METRICS) or name == "deflated_sharpe"


def computed(predictions: pd.DataFrame, backtest: Any) -> dict[str, float]:
    """The metrics that declare their own ``compute``, for one row."""
    return {m.name: m.compute(predictions, backtest) for m in METRICS if m.compute is not None}


def row_key(method: str, strategy: str, strategies: int) -> str:
    """A row's name for its equity column and tearsheet: the method, with the strategy where a run has several."""
    return method if strategies == 1 else f"{method}-{strategy}"


def labelled(method: str, inputs: str) -> str:
    """A tuned row's name: the method for close inputs, ``method-ohlc`` for ohlc (so one run can hold both).

    >>> labelled("lora", "close"), labelled("lora", "ohlc")
    ('lora', 'lora-ohlc')
    """
    return method if inputs == INPUTS_DEFAULT else f"{method}-{inputs}"


def table_of(rows: list[dict]) -> pd.DataFrame:
    """The results table of ``rows``, in ``columns()`` order; a column nobody declared is a programming error,
    never silently dropped."""
    known = {*columns(), *INTERNAL}
    undeclared = sorted({k for row in rows for k in row} - known)
    if undeclared:
        raise KeyError(f"undeclared result column(s) {', '.join(undeclared)}: add them to results.METRICS")
    present = {k for row in rows for k in row}
    return pd.DataFrame(rows).reindex(columns=[*columns(), *(c for c in INTERNAL if c in present)])


def write_atomic(path: Path, content: str | bytes) -> None:
    """Write ``content`` to a temporary file beside ``path``, then rename it: ``path`` appears whole or not at all.

    The temporary name is unique per process (sweep workers on several hosts may share a folder).
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    with cannot_write(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            if isinstance(content, bytes):
                tmp.write_bytes(content)
            else:
                tmp.write_text(content, encoding="utf-8")
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise


@contextlib.contextmanager
def cannot_write(path: Path) -> Iterator[None]:
    """A full disk, a read-only folder or a missing permission while writing ``path``: one line, not a traceback."""
    try:
        yield
    except OSError as err:
        if err.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM):
            raise
        raise RunFolderError(f"{path}: cannot write it ({err.strerror}); no partial file was left") from None


def check_writable(folder: Path, flag: str) -> None:
    """Refuse, before any work, a folder this command will not be able to write (read-only, a file, no permission).

    It tries a temporary file in the nearest folder that exists, and leaves nothing behind.
    """
    existing = Path(folder).absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise RunFolderError(f"{flag} {folder}: {existing} is a file, not a folder")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as err:
        raise RunFolderError(f"{flag} {folder}: cannot write in {existing} ({err.strerror or err})") from None


def strict_json(value: Any) -> str:
    """JSON that every parser reads: NaN and infinities become null, numpy scalars plain numbers."""
    return json.dumps(_plain(value), indent=2, allow_nan=False, default=str)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


FILES = {"table": "comparison.csv", "equity": "equity.csv", "predictions": "predictions.csv",
         "settings": "settings.json", "losses": "losses.json", "race": "race.json", "folds": "folds.csv",
         "volatility": "volatility.csv"}
REQUIRED = ("table", "equity", "predictions", "settings")


class RunFolderError(ValueError):
    """A folder that is not a run's outputs."""


@dataclass
class RunOutputs:
    """Everything a run writes besides its pages: the table and what the page and tearsheets are drawn from.

    ``table`` has a ``key`` column naming each row's equity curve in ``equities``; ``forecasts`` is keyed by
    method; ``benchmark`` is the buy-and-hold equity of the test bars.
    """

    table: pd.DataFrame
    equities: dict[str, pd.Series]
    benchmark: pd.Series
    forecasts: dict[str, pd.DataFrame]
    settings: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    calendar: Calendar = field(default_factory=Calendar)
    folds: pd.DataFrame | None = None
    losses: dict[str, list[float]] = field(default_factory=dict)
    race: dict[str, list[dict]] = field(default_factory=dict)
    threshold_bps: float | None = None  # the first strategy's trading threshold, for the page's histogram
    reference: str = "naive"  # the forecast every point test compares with
    distribution_reference: str = "garch"  # the distribution every log-score and CRPS test compares with
    range_reference: str = "har-range"  # and the second one, which reads the bars' ranges (columns ..._range)
    volatility: pd.DataFrame | None = None  # each sigma sizing a long position (evaluation.volatility_targeting)

    def save(self, out: Path) -> None:
        """Write the run's files into ``out``, each whole or not at all."""
        # every column a forecaster gives, its distribution's bins included, so that a reloaded run scores the same
        predictions = pd.concat(self.forecasts, names=["method", "timestamp"]).swaplevel()
        equity = pd.DataFrame({**self.equities, BENCHMARK: self.benchmark}).rename_axis("timestamp")
        meta = {"settings": self.settings, "warnings": self.warnings, "calendar": asdict(self.calendar),
                "threshold_bps": self.threshold_bps, "reference": self.reference,
                "distribution_reference": self.distribution_reference, "range_reference": self.range_reference}
        files = {"table": self.table.drop(columns="key").to_csv(index=False), "equity": equity.to_csv(),
                 "predictions": predictions.to_csv(), "settings": strict_json(meta),
                 "losses": strict_json(self.losses), "race": strict_json(self.race)}
        if self.folds is not None:
            files["folds"] = self.folds.to_csv(index=False)
        if self.volatility is not None:
            files["volatility"] = self.volatility.to_csv(index=False)
        for name, text in files.items():
            write_atomic(out / FILES[name], text)

    @classmethod
    def load(cls, folder: Path, prefix: str = "") -> RunOutputs:
        """A run's outputs from ``folder``; with ``prefix``, every method and key starts with it (for compare)."""
        missing = [FILES[name] for name in REQUIRED if not (folder / FILES[name]).exists()]
        if missing:
            raise RunFolderError(f"{folder}: not an llmsignal run folder (missing {', '.join(missing)})")
        try:
            found = pd.read_csv(folder / FILES["table"])
            equity = pd.read_csv(folder / FILES["equity"], index_col=0, parse_dates=[0])
            predictions = pd.read_csv(folder / FILES["predictions"], index_col=0, parse_dates=[0])
            meta = json.loads((folder / FILES["settings"]).read_text(encoding="utf-8"))
        except (ValueError, OSError, UnicodeDecodeError) as err:
            raise RunFolderError(f"{folder}: unreadable run files ({str(err).splitlines()[0]})") from None
        if "settings" not in meta:  # a folder written before settings.json held more than the settings
            meta = {"settings": {k: v for k, v in meta.items() if k != "warnings"}, "warnings": meta.get("warnings")}
        if "inputs" not in found:
            found.insert(IDENTITY.index("inputs"), "inputs", INPUTS_DEFAULT)
        strategies = found["strategy"].nunique()
        found["key"] = [prefix + row_key(m, s, strategies) for m, s in zip(found["method"], found["strategy"],
                                                                             strict=True)]
        found["method"] = prefix + found["method"].astype(str)
        missing_curves = sorted(set(found["key"].str.removeprefix(prefix)) - set(equity.columns))
        if missing_curves:
            raise RunFolderError(f"{folder / FILES['equity']}: no equity curve for {', '.join(missing_curves)}")
        calendar = Calendar(**meta["calendar"]) if meta.get("calendar") else Calendar.for_bars(equity.index)
        return cls(table=found, equities={k: equity[k.removeprefix(prefix)].dropna() for k in found["key"]},
                   benchmark=equity[BENCHMARK].dropna(),
                   forecasts={f"{prefix}{m}": f.drop(columns="method") for m, f in predictions.groupby("method")},
                   settings=meta["settings"], warnings=list(meta.get("warnings") or []), calendar=calendar,
                   folds=_by_method(folder, "folds", prefix), volatility=_by_method(folder, "volatility", prefix),
                   losses=_prefixed(_json(folder, "losses"), prefix),
                   race=_prefixed(_json(folder, "race"), prefix), threshold_bps=meta.get("threshold_bps"),
                   reference=prefix + meta.get("reference", "naive"),
                   distribution_reference=prefix + meta.get("distribution_reference", "garch"),
                   range_reference=prefix + meta.get("range_reference", "har-range"))


def _json(folder: Path, name: str) -> dict:
    path = folder / FILES[name]
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def _prefixed(values: dict, prefix: str) -> dict:
    return {f"{prefix}{k}": v for k, v in values.items()}


def _by_method(folder: Path, name: str, prefix: str) -> pd.DataFrame | None:
    """An optional table of the run with a ``method`` column (folds, volatility), methods prefixed; None if absent."""
    path = folder / FILES[name]
    if not path.exists():
        return None
    frame = pd.read_csv(path)
    frame["method"] = prefix + frame["method"].astype(str)
    return frame
