"""Sweeps: methods x seeds x hyper-parameters x data sets, each trial one train → predict → backtest run.

    llmsignal sweep examples/sweep.yaml --workers 2 --out runs/sweep --registry registry
    llmsignal sweep examples/sweep.yaml --address auto      # the trials go to a running Ray cluster

or from Python::

    trials = expand(load_grid("examples/sweep.yaml"))
    results = run_sweep(trials, Path("runs/sweep"), Path("registry"), workers=2)
    table, summary = write_outputs(Path("runs/sweep"), results)     # sweep.csv and sweep.html

The CONFIG file (YAML or JSON)::

    methods: [lora, adapter]              # llmsignal.finetune.methods names
    seeds: [0, 1]                         # default [0]
    params:                               # per method; each value a list (or one value): their product is tried
      lora: {r: [4, 8]}
    data: [EURUSD, bars/gbpusd.csv]       # EURUSD = the bundled H1 series; paths are relative to CONFIG's folder
    strategies:                           # shipped names, package.module:Class or path/file.py:Class
      - ThresholdStrategy
      - {spec: ProbabilityStrategy, params: {dead_zone: 0.1}, name: prob60}
    base: embedded                        # embedded, gpt2 or a model folder
    inputs: [close, ohlc]                 # what the models read of each bar (default [close]); each its trials
    budget: {steps: 6, batch_size: 4, quick: true, policy: converged}   # policy: converged (default) or steps

A trial is one method, seed, hyper-parameter setting and data set, run by ``llmsignal.run.run`` into
``OUT/trials/<id>/`` (its comparison outputs, ``log.txt`` and ``result.json``); every strategy is backtested in
that run, so a trial gives one row per strategy. Entries go to the shared registry, where the request key makes
an identical request reuse its entry. ``result.json`` is written atomically when the trial ends: a sweep started
again skips trials whose result says ok and runs failed ones again (a failure may be transient, like running out
of memory). With ``ray`` installed the trials run as Ray tasks of one CPU each; without it, one after another.
"""

from __future__ import annotations

import contextlib
import hashlib
import html
import itertools
import json
import math
import os
import socket
import sys
import time
import traceback
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from llmsignal.backtests.report import render, template
from llmsignal.backtests.results import INPUTS_DEFAULT, RunOutputs, labelled, strict_json, sweep_metrics, write_atomic

DEFAULT_DATA = "EURUSD"
KEYS = ("methods", "seeds", "params", "data", "strategies", "base", "budget", "inputs")
BUDGET_KEYS = ("steps", "batch_size", "quick", "policy")
# per-period (daily) moments of each backtest's returns: what the deflated Sharpe ratio needs, kept in sweep.csv so
# that the summary can be recomputed from the table alone
RETURN_STATS = ["daily_sharpe", "daily_obs", "daily_skew", "daily_kurtosis"]
TRIAL_COLUMNS = ["trial", "method", "inputs", "seed", "params", "data", "strategy", "status", "error"]


def columns() -> list[str]:
    """sweep.csv's columns: the trial, the metrics that sweeps keep (``results.METRICS``), the return moments."""
    return [*TRIAL_COLUMNS, *sweep_metrics(), *RETURN_STATS, "entry", "seconds"]


SUMMARY_METRICS = ["mse", "mase", "sharpe"]
RESULT = "result.json"


class SweepError(ValueError):
    """A sweep config that cannot be read or does not describe a grid."""


@dataclass
class Trial:
    """One train → predict → backtest unit; plain data, so that it travels to a Ray worker and into JSON."""

    method: str
    seed: int
    params: dict[str, Any]
    data: str  # an absolute path, or DEFAULT_DATA
    strategies: list[dict[str, Any]]  # {"label", "spec", "params"}, params already typed
    base: str = "embedded"
    budget: dict[str, Any] = field(default_factory=dict)  # RunConfig's steps, batch_size, quick, budget (policy)
    inputs: str = INPUTS_DEFAULT  # what the model reads of each bar: close, or ohlc

    @property
    def id(self) -> str:
        """Readable and stable: the same settings in a later run of the sweep find the same folder."""
        fields = asdict(self)
        if self.inputs == INPUTS_DEFAULT:  # a close-only trial keeps the folder it had before inputs existed
            del fields["inputs"]
        digest = hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()[:8]
        return f"{labelled(self.method, self.inputs)}-{data_label(self.data)}-seed{self.seed}-{digest}"

    def run_config(self, out: Path, registry: Path):
        """The ``llmsignal.run.RunConfig`` of this trial (strategies loaded here, in the process that runs it)."""
        from llmsignal.run import RunConfig
        from llmsignal.strategies.loader import load_strategy

        strategies = [(s["label"], load_strategy(s["spec"]), dict(s["params"])) for s in self.strategies]
        return RunConfig(data=None if self.data == DEFAULT_DATA else self.data, methods=[self.method],
                         base=self.base, registry=registry, out=out, seed=self.seed,
                         method_params={self.method: dict(self.params)}, strategies=strategies,
                         inputs=[self.inputs], **self.budget)


@dataclass
class Grid:
    methods: list[str]
    seeds: list[int] = field(default_factory=lambda: [0])
    params: dict[str, dict[str, list]] = field(default_factory=dict)
    data: list[str] = field(default_factory=lambda: [DEFAULT_DATA])
    strategies: list[dict[str, Any]] = field(
        default_factory=lambda: [{"label": "ThresholdStrategy", "spec": "ThresholdStrategy", "params": {}}])
    base: str = "embedded"
    budget: dict[str, Any] = field(default_factory=dict)
    inputs: list[str] = field(default_factory=lambda: [INPUTS_DEFAULT])


def data_label(data: str) -> str:
    return "eurusd" if data == DEFAULT_DATA else Path(data).stem.lower()


# --- the config ---------------------------------------------------------------------------------------------------

def load_grid(path: str | Path) -> Grid:
    """Read a YAML or JSON sweep config; relative paths in it are taken from the config's folder."""
    from llmsignal.config_file import parse_yaml, read_config_text

    path = Path(path)
    # bounded in size and alias expansion; UTF-8, or UTF-16/32 with a byte-order mark, as run --config
    text = read_config_text(path, SweepError, " the sweep config")
    if path.suffix.lower() == ".json":
        try:
            raw = json.loads(text)
        except (ValueError, RecursionError) as err:
            raise SweepError(f"{path}: not valid JSON ({' '.join(str(err).split())[:300] or 'nested too deeply'})") \
                from None
    else:
        raw = parse_yaml(text, path, SweepError)
    return grid_from_dict(raw, path.resolve().parent)


def grid_from_dict(raw: Any, root: Path = Path(".")) -> Grid:
    """Check a parsed config and resolve its names and paths; errors are one line each.

    Method names and strategies are checked here, before any training; hyper-parameters are not: a bad one
    fails only the trials that use it, which the results table then shows.
    """
    from llmsignal.finetune.methods import make_method

    if not isinstance(raw, dict):
        raise SweepError(f"a sweep config is a mapping with keys {', '.join(KEYS)}")
    unknown = sorted(set(raw) - set(KEYS))
    if unknown:
        raise SweepError(f"unknown key(s) {', '.join(unknown)} in the sweep config; known: {', '.join(KEYS)}")
    methods = [_text(m, "methods") for m in _as_list(raw.get("methods"), "methods")]
    if not methods:
        raise SweepError("the sweep config lists no methods")
    for method in methods:
        make_method(method)  # MethodError for an unknown name
    return Grid(methods=list(dict.fromkeys(methods)),
                seeds=[_integer(s, "seeds") for s in _as_list(raw.get("seeds", [0]), "seeds")],
                params=_param_space(raw.get("params") or {}, methods),
                data=[_data_path(d, root) for d in _as_list(raw.get("data", [DEFAULT_DATA]), "data")],
                strategies=_strategy_list(raw.get("strategies", ["ThresholdStrategy"]), root),
                base=_base(raw.get("base", "embedded"), root),
                budget=_budget(raw.get("budget") or {}), inputs=_inputs(raw.get("inputs", [INPUTS_DEFAULT])))


def _inputs(value: Any) -> list[str]:
    import argparse

    from llmsignal.cli_args import inputs_list

    try:
        return inputs_list(",".join(_text(v, "inputs") for v in _as_list(value, "inputs")))
    except argparse.ArgumentTypeError as err:
        raise SweepError(f"inputs: {err}") from None


def _as_list(value: Any, key: str) -> list:
    if value is None:
        return []
    if isinstance(value, (str, int, float, bool, dict)):
        return [value]
    if isinstance(value, list):
        return value
    raise SweepError(f"{key}: expected a list, got {type(value).__name__}")


def _text(value: Any, key: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise SweepError(f"{key}: expected names, got {value!r}")
    return value.strip()


def _integer(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SweepError(f"{key}: expected an integer, got {value!r}")
    return value


def _param_space(raw: Any, methods: list[str]) -> dict[str, dict[str, list]]:
    if not isinstance(raw, dict):
        raise SweepError("params: expected a mapping of method → {parameter: [values]}")
    space = {}
    for method, values in raw.items():
        if method not in methods:
            raise SweepError(f"params: method {method!r} is not in methods ({', '.join(methods)})")
        if not isinstance(values, dict):
            raise SweepError(f"params.{method}: expected a mapping of parameter → [values]")
        space[method] = {name: _as_list(choices, f"params.{method}.{name}") for name, choices in values.items()}
        empty = [name for name, choices in space[method].items() if not choices]
        if empty:
            raise SweepError(f"params.{method}.{empty[0]}: no values")
    return space


def _data_path(value: Any, root: Path) -> str:
    value = _text(value, "data")
    if value.upper() == DEFAULT_DATA:
        return DEFAULT_DATA
    path = (root / value).resolve()  # absolute: a Ray worker's working folder is not the driver's
    if not path.is_file():
        from llmsignal.finetune.bars import DataError

        raise DataError(f"{value}: no such file (data paths are relative to the sweep config's folder {root})")
    return str(path)


def _strategy_list(raw: Any, root: Path) -> list[dict[str, Any]]:
    from llmsignal.strategies.loader import load_strategy, strategy_params

    chosen = []
    for item in _as_list(raw, "strategies"):
        if isinstance(item, str):
            item = {"spec": item}
        if not isinstance(item, dict) or "spec" not in item or set(item) - {"spec", "params", "name"}:
            raise SweepError(f"strategies: {item!r} is not a name or a mapping with spec, params and name")
        spec = _strategy_spec(_text(item["spec"], "strategies"), root)
        cls = load_strategy(spec)  # StrategyError now rather than in every trial
        params = strategy_params(cls, item.get("params") or {})
        chosen.append({"label": str(item.get("name") or cls.__name__), "spec": spec, "params": params})
    labels = [s["label"] for s in chosen]
    if len(set(labels)) < len(labels):
        raise SweepError(f"strategies: labels {labels} repeat; give each variant a name")
    return chosen


def _strategy_spec(spec: str, root: Path) -> str:
    """A ``path/file.py:Class`` spec made absolute, so that workers find the file."""
    where, colon, name = spec.rpartition(":")
    if colon and where.endswith(".py") and not Path(where).is_absolute():
        return f"{(root / where).resolve()}:{name}"
    return spec


def _base(value: Any, root: Path) -> str:
    value = _text(value, "base")
    folder = root / value
    return str(folder.resolve()) if value not in ("embedded", "gpt2") and folder.is_dir() else value


def _budget(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise SweepError(f"budget: expected a mapping with {', '.join(BUDGET_KEYS)}")
    unknown = sorted(set(raw) - set(BUDGET_KEYS))
    if unknown:
        raise SweepError(f"budget: unknown key(s) {', '.join(unknown)}; known: {', '.join(BUDGET_KEYS)}")
    import argparse

    from llmsignal.cli_args import positive_int

    budget = {}
    for key in ("steps", "batch_size"):  # by the rules of run's --steps: a whole number of at least 1
        if raw.get(key) is not None or (key == "batch_size" and key in raw):
            try:
                budget[key] = positive_int(str(raw[key]))
            except argparse.ArgumentTypeError as err:
                raise SweepError(f"budget.{key}: {err}") from None
    if "quick" in raw:
        if not isinstance(raw["quick"], bool):
            raise SweepError(f"budget.quick: expected true or false, got {raw['quick']!r}")
        budget["quick"] = raw["quick"]
    if "policy" in raw:
        from llmsignal.cli_args import BUDGETS

        if raw["policy"] not in BUDGETS:
            raise SweepError(f"budget.policy: expected one of {', '.join(BUDGETS)}, got {raw['policy']!r}")
        budget["budget"] = raw["policy"]
    return budget


def settings(space: dict[str, list]) -> list[dict[str, Any]]:
    """Every combination of a method's hyper-parameter values; ``{}`` (the defaults) when none are given."""
    names = list(space)
    return [dict(zip(names, values, strict=True)) for values in itertools.product(*(space[n] for n in names))]


def expand(grid: Grid) -> list[Trial]:
    """The grid's trials: data x method x hyper-parameter setting x seed, duplicates dropped, in that order."""
    trials: dict[str, Trial] = {}
    for data, method, inputs in itertools.product(grid.data, grid.methods, grid.inputs):
        for setting, seed in itertools.product(settings(grid.params.get(method, {})), grid.seeds):
            trial = Trial(method, seed, setting, data, grid.strategies, grid.base, dict(grid.budget), inputs)
            trials.setdefault(trial.id, trial)
    return list(trials.values())


# --- one trial ----------------------------------------------------------------------------------------------------

def trial_folder(out: Path, trial: Trial) -> Path:
    return Path(out) / "trials" / trial.id


def run_trial(trial: Trial, out: Path, registry: Path) -> dict[str, Any]:
    """Run one trial into ``out/trials/<id>/`` and write its result file; never raises: a failure is a result.

    What the run prints (training progress, warnings, a traceback) goes to the trial's ``log.txt``, so that
    parallel trials do not interleave their output with the sweep's progress bar.
    """
    folder = trial_folder(out, trial)
    folder.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    with open(folder / "log.txt", "w") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        try:
            rows, status, error = trial_rows(trial, folder, Path(registry)), "ok", ""
        except Exception as err:  # a bad hyper-parameter, out of memory, anything: this trial's result, not the sweep's
            traceback.print_exc(file=log)
            rows, status, error = [], "failed", one_line(err)
    result = make_result(trial, status, error, rows, time.perf_counter() - began)
    write_result(folder, result)
    return result


def trial_rows(trial: Trial, folder: Path, registry: Path) -> list[dict[str, Any]]:
    """The trial's run: one row of metrics per strategy (the baselines' rows stay in its comparison.csv)."""
    from llmsignal.backtests.metrics import period_returns
    from llmsignal.run import run

    run(trial.run_config(folder, registry))
    outputs = RunOutputs.load(folder)
    tuned = outputs.table[outputs.table["kind"] == "llm"]
    return [{"strategy": row["strategy"], **{m: _plain(row.get(m)) for m in sweep_metrics()},
             **return_moments(period_returns(outputs.equities[row["key"]], outputs.calendar)), "entry": row["entry"]}
            for _, row in tuned.iterrows()]


def return_moments(returns: Iterable[float]) -> dict[str, float]:
    """Per-period Sharpe, count, skew and plain (non-excess) kurtosis; NaN where they do not exist."""
    from scipy import stats

    values = np.asarray(list(returns), dtype=float)
    values = values[~np.isnan(values)]
    moments = {"daily_sharpe": math.nan, "daily_obs": float(len(values)), "daily_skew": math.nan,
               "daily_kurtosis": math.nan}
    if len(values) >= 3 and np.ptp(values) > 0:  # a flat curve has no Sharpe (std would be rounding noise)
        moments.update(daily_sharpe=float(values.mean() / values.std(ddof=1)), daily_skew=float(stats.skew(values)),
                       daily_kurtosis=float(stats.kurtosis(values, fisher=False)))
    return moments


def make_result(trial: Trial, status: str, error: str, rows: list[dict], seconds: float) -> dict[str, Any]:
    # host and pid: which machine of a cluster ran the trial, to find its Ray logs
    return {"id": trial.id, "trial": asdict(trial), "status": status, "error": error, "rows": rows,
            "seconds": round(seconds, 3), "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "host": socket.gethostname(), "pid": os.getpid()}


def one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0]}" if text else type(err).__name__


def _plain(value: Any) -> Any:
    """numpy scalars as Python ones, for JSON."""
    return value.item() if isinstance(value, np.generic) else value


def write_result(folder: Path, result: dict[str, Any]) -> None:
    write_atomic(Path(folder) / RESULT, strict_json(result))


def read_result(folder: Path) -> dict[str, Any] | None:
    """A trial's result, or None when it has none (or an unreadable one: then it runs again)."""
    try:
        return json.loads((Path(folder) / RESULT).read_text())
    except (OSError, ValueError):
        return None


# --- the sweep ----------------------------------------------------------------------------------------------------

def pending(trials: list[Trial], out: Path) -> tuple[list[Trial], list[dict[str, Any]]]:
    """The trials still to run, and the results of those an earlier run of the sweep finished ok."""
    todo, finished = [], []
    for trial in trials:
        result = read_result(trial_folder(out, trial))
        if result is not None and result.get("status") == "ok":
            finished.append(result)
        else:
            todo.append(trial)
    return todo, finished


def import_ray():
    """The ``ray`` module, or None when the optional extra is not installed."""
    try:
        import ray
    except ImportError:
        return None
    return ray


def run_sweep(trials: list[Trial], out: Path, registry: Path, address: str | None = None, workers: int | None = None,
              progress: bool = True) -> list[dict[str, Any]]:
    """Run the trials not already finished in ``out`` (on Ray when installed) and return every trial's result."""
    out, registry = Path(out).resolve(), Path(registry).resolve()  # workers may start in another folder
    todo, results = pending(trials, out)
    if results:
        print(f"{len(results)} of {len(trials)} trials already finished in {out}; running {len(todo)}",
              file=sys.stderr)
    if not todo:
        return results
    ray = import_ray()
    if ray is None:
        if address:
            raise SweepError("--address needs ray: pip install '.[distributed]'")
        print(f"ray is not installed; running {len(todo)} trials one after another "
              "(pip install '.[distributed]' for parallel trials)", file=sys.stderr)
        stream = _sequential(todo, out, registry)
    else:
        stream = _on_ray(ray, todo, out, registry, address, workers)
    with _Progress(len(trials), len(results), progress) as bar:
        for result, running in stream:
            bar.show(result, running)
            if result is not None:
                results.append(result)
    return results


# The executors yield (result, trials still running) as trials end, and (None, running) once they have started.

def _sequential(todo: list[Trial], out: Path, registry: Path) -> Iterator[tuple[dict | None, int]]:
    yield None, 1
    for i, trial in enumerate(todo):
        yield run_trial(trial, out, registry), int(i < len(todo) - 1)


def ray_init_args(address: str | None, workers: int | None) -> dict[str, Any]:
    """``ray.init`` arguments: connect to ``address``, or start a private local Ray of ``workers`` CPUs."""
    import logging

    # workers' output is in each trial's log.txt; forwarding it would scribble over the progress bar (-v asks for it)
    loud = bool(os.environ.get("LLMSIGNAL_RAY_LOGS"))
    quiet = {"log_to_driver": loud, "logging_level": logging.INFO if loud else logging.WARNING}
    if address:
        return {"address": address, **quiet}
    # "local": a new Ray even if `ray start` runs here, so that --workers means what it says
    return {"address": "local", "num_cpus": workers or os.cpu_count() or 1, "include_dashboard": False, **quiet}


def _on_ray(ray, todo: list[Trial], out: Path, registry: Path, address: str | None,
            workers: int | None) -> Iterator[tuple[dict | None, int]]:
    started = not ray.is_initialized()  # a caller's (or a test's) Ray is used as it is, and left running
    if started:
        ray.init(**ray_init_args(address, workers))
    # one CPU each: a trial is single-threaded torch (Ray sets OMP_NUM_THREADS to the task's CPUs); one retry for
    # a worker lost to the memory monitor or a dead node, then the trial counts as failed
    task = ray.remote(num_cpus=1, max_retries=1)(run_trial)
    refs = {}
    try:
        slots = max(1, int(ray.cluster_resources().get("CPU", 1)))
        refs = {task.remote(trial, out, registry): trial for trial in todo}
        yield None, min(len(refs), slots)
        while refs:
            [ready], _ = ray.wait(list(refs), num_returns=1)
            trial = refs.pop(ready)
            try:
                result = ray.get(ready)
            except Exception as err:  # the worker died (killed for memory, node lost): the trial failed, not the sweep
                result = make_result(trial, "failed", one_line(err), [], 0.0)
                write_result(trial_folder(out, trial), result)
            yield result, min(len(refs), slots)
    finally:
        for ref in refs:  # interrupted: leave no trial running on a cluster
            ray.cancel(ref, force=True)
        if started:
            ray.shutdown()


class _Progress:
    """A tqdm bar of trials done, with the number running and failed."""

    def __init__(self, total: int, done: int, enabled: bool) -> None:
        from tqdm import tqdm

        self.failed = 0
        self.bar = tqdm(total=total, initial=done, desc="sweep", unit="trial", disable=not enabled,
                        file=sys.stderr, dynamic_ncols=True)

    def show(self, result: dict | None, running: int) -> None:
        """A trial ended (``result``), or only the number running changed (None)."""
        if result is not None:
            self.failed += result["status"] != "ok"
            self.bar.update(1)
        self.bar.set_postfix(running=running, failed=self.failed)

    def __enter__(self) -> _Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.bar.close()


# --- results and summary (pure functions of the results table) ----------------------------------------------------

def results_table(results: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """One row per trial and strategy, in ``columns()``; a failed trial has a row per strategy without metrics."""
    records = []
    for result in results:
        trial = result["trial"]
        inputs = trial.get("inputs", INPUTS_DEFAULT)
        common = {"trial": result["id"], "method": labelled(trial["method"], inputs), "inputs": inputs,
                  "seed": trial["seed"],
                  "params": json.dumps(trial["params"], sort_keys=True), "data": trial["data"],
                  "status": result["status"], "error": result["error"], "seconds": result["seconds"]}
        rows = result["rows"] or [{"strategy": s["label"]} for s in trial["strategies"]]
        records += [{**common, **row} for row in rows]
    table = pd.DataFrame(records).reindex(columns=columns())
    return table.sort_values(["data", "method", "params", "seed", "strategy"], kind="stable", ignore_index=True)


def seed_stats(table: pd.DataFrame) -> pd.DataFrame:
    """Mean and std over seeds of mse, mase and sharpe for each method, setting, data set and strategy (ok rows)."""
    ok = _ok(table)
    keys = ["method", "params", "data", "strategy"]
    grouped = ok.groupby(keys, sort=False)
    stats = grouped[SUMMARY_METRICS].agg(["mean", "std"])
    stats.columns = [f"{metric}_{stat}" for metric, stat in stats.columns]
    stats.insert(0, "seeds", grouped["seed"].nunique())
    return stats.reset_index()


def best_params(table: pd.DataFrame) -> pd.DataFrame:
    """Per method, the hyper-parameters with the lowest mean MASE (over seeds, data sets and strategies)."""
    ok = _ok(table).dropna(subset=["mase"])
    means = ok.groupby(["method", "params"], sort=False)[SUMMARY_METRICS].mean()
    best = means.loc[means.groupby(level="method", sort=False)["mase"].idxmin()]
    return best.rename(columns={m: f"{m}_mean" for m in SUMMARY_METRICS}).reset_index()


def trial_count(table: pd.DataFrame) -> int:
    """Configurations tried, for the deflated Sharpe: every backtest (trial x strategy) that ran."""
    return len(_ok(table))


def deflated_sharpe(row: pd.Series | dict, n_trials: int, sharpe_variance: float | None = None) -> float:
    """The deflated Sharpe ratio of one row's backtest, given ``n_trials`` tried; NaN without a Sharpe."""
    from llmsignal.backtests.significance import deflated_sharpe_ratio

    values = [row[c] for c in RETURN_STATS]
    if any(pd.isna(v) for v in values) or n_trials < 1:
        return math.nan
    sharpe, n_obs, skew, kurtosis = values
    try:
        return deflated_sharpe_ratio(float(sharpe), n_trials, int(n_obs), float(skew), float(kurtosis),
                                     sharpe_variance=sharpe_variance)
    except ValueError:  # too few returns, or moments that give no variance
        return math.nan


def best_trials(table: pd.DataFrame) -> pd.DataFrame:
    """Per method, the backtest with the highest Sharpe, and its deflated Sharpe given all the sweep's trials.

    The variance of the Sharpe across the sweep's backtests sets the bar the best must clear (Bailey & López de
    Prado); with fewer than two Sharpes the zero-skill variance 1/(n_obs-1) is used instead.
    """
    ok = _ok(table)
    sharpes = ok["daily_sharpe"].dropna()
    variance = float(sharpes.var(ddof=1)) if len(sharpes) >= 2 else None
    n_trials = trial_count(table)
    rows = []
    for method, group in ok.dropna(subset=["sharpe"]).groupby("method", sort=False):
        best = group.loc[group["sharpe"].idxmax()]
        rows.append({"method": method, "best_trial": best["trial"], "best_strategy": best["strategy"],
                     "best_sharpe": best["sharpe"], "deflated_sharpe": deflated_sharpe(best, n_trials, variance)})
    return pd.DataFrame(rows, columns=["method", "best_trial", "best_strategy", "best_sharpe", "deflated_sharpe"])


def summarise(table: pd.DataFrame) -> dict[str, Any]:
    """Everything ``sweep.html`` shows: counts, per-setting seed statistics, and per method the best choices."""
    trials = table.drop_duplicates("trial")
    per_method = best_params(table).merge(best_trials(table), on="method", how="outer")
    return {"trials": len(trials), "ok": int((trials["status"] == "ok").sum()),
            "failed": int((trials["status"] != "ok").sum()), "backtests": trial_count(table),
            "seeds": seed_stats(table), "best": per_method,
            "failures": trials.loc[trials["status"] != "ok", ["trial", "error"]].reset_index(drop=True)}


def _ok(table: pd.DataFrame) -> pd.DataFrame:
    return table[table["status"] == "ok"]


# --- outputs ------------------------------------------------------------------------------------------------------

def _html_table(frame: pd.DataFrame) -> str:
    return frame.to_html(index=False, na_rep="–", float_format=lambda v: f"{v:.4g}", border=0, escape=True)


def sweep_html(table: pd.DataFrame, summary: dict[str, Any], title: str = "llmsignal sweep") -> str:
    """A self-contained page (no scripts, no external files) of the sweep's summary and its full table."""
    failures = (f"<h2 class='failed'>Failed trials</h2>{_html_table(summary['failures'])}"
                if len(summary["failures"]) else "")
    return render("sweep.html", title=html.escape(title), style=template("sweep.css"), trials=summary["trials"],
                  ok=summary["ok"], failed=summary["failed"], backtests=summary["backtests"],
                  best=_html_table(summary["best"]), seeds=_html_table(summary["seeds"]), failures=failures,
                  table=_html_table(table))


def write_outputs(out: Path, results: list[dict[str, Any]]) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Write ``out/sweep.csv`` and ``out/sweep.html``; returns the table and its summary."""
    table = results_table(results)
    summary = summarise(table)
    write_atomic(Path(out) / "sweep.csv", table.to_csv(index=False))
    write_atomic(Path(out) / "sweep.html", sweep_html(table, summary))
    return table, summary
