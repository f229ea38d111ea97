"""The run: bars → tuned entries → forecasts → backtests → tearsheets and one comparison.

    >>> table = run(RunConfig(methods=["full", "lora", "adapter"], quick=True))   # doctest: +SKIP

is what ``llmsignal run --methods full,lora,adapter --quick`` does. Outputs in ``--out``: ``comparison.csv``,
``comparison.html``, ``predictions.csv`` (each bar's forecast, ``p_up``, ``sigma`` and quantiles of the next
close), ``volatility.csv`` (each forecaster's sigma sizing one long position: "volatility that pays"),
``tearsheets/<key>.html`` (a row's key: ``method-strategy``, or the method with one strategy),
``tearsheets/all.html`` (every row side by side) and ``timings.json``.
"""

from __future__ import annotations

import json
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from llmsignal.backtests.costs import Costs
from llmsignal.backtests.engine import check_strategy
from llmsignal.backtests.evaluation import evaluate, significance, volatility_targeting
from llmsignal.backtests.metrics import Calendar, mase_scale
from llmsignal.backtests.report import write_report
from llmsignal.backtests.results import RunOutputs, check_writable, labelled, row_key, table_of, write_atomic
from llmsignal.data import DEFAULT_SOURCE, load_bars
from llmsignal.finetune.bars import Split, check_ranges, split_bars, walk_forward_splits
from llmsignal.finetune.base import Base, load_base, seen_by_base
from llmsignal.finetune.methods import Method, make_method
from llmsignal.finetune.precision import Precision, resolve_precision
from llmsignal.finetune.train import TrainConfig
from llmsignal.models.baselines import BASELINES, READS_RANGES, BaselineSkipped
from llmsignal.models.entries import check_window_fits, entry_registry, train_entry
from llmsignal.models.predictor import cached_predictions, check_forecasts_per_pass
from llmsignal.models.registry import Entry
from llmsignal.strategies import EnsembleStrategy, SideStrategy, ThresholdStrategy
from llmsignal.tracking import Tracking

DEFAULT_METHODS = ["full", "lora", "adapter", "scratch", "zero-shot"]
# the threshold rule trades conviction only, and most tuned forecasts stay within its 0.5 bp; the side rule trades
# every call the directional accuracy scores, so that every method's tearsheet has trades (docs/strategies.md)
DEFAULT_STRATEGIES = [ThresholdStrategy, SideStrategy]
# --budget converged: each method's learning rate times these, early stopping on the validation loss
# (a 50-step probe picked LoRA's 3x rate on a planted AR(1), which led at step 50 and was worse from step 100 on)
SEARCH = {"lr_factors": (1.0, 3.0), "probe_steps": 100, "eval_every": 25, "patience": 3, "steps": 1000,
          "schedule": "constant"}
QUICK_SEARCH = {"lr_factors": (1.0, 3.0), "probe_steps": 2, "eval_every": 2, "patience": 2, "steps": 6,
                "schedule": "constant"}
QUICK_FORECASTS_PER_PASS = 16  # --quick is a smoke test: shared windows make its predict stage ~10x shorter


@dataclass
class RunConfig:
    data: str | None = None
    methods: list[str] = field(default_factory=lambda: list(DEFAULT_METHODS))
    base: str = "embedded"
    registry: Path = Path("registry")
    out: Path = Path("runs/latest")
    quick: bool = False
    seed: int = 0
    steps: int | None = None  # fixed steps (budget "steps") or the most a search may take (budget "converged")
    budget: str = "converged"
    batch_size: int = 16
    test: float = 0.2
    val: float = 0.1
    context: int = 48
    method_params: dict[str, dict] = field(default_factory=dict)
    strategies: list[tuple[str, type, dict]] = field(
        default_factory=lambda: [(cls.__name__, cls, {}) for cls in DEFAULT_STRATEGIES])
    costs: Costs = field(default_factory=Costs)
    force: bool = False
    resume: bool = False
    walk_forward: int = 0  # folds; 0 means one train/validation/test split
    rolling: bool = False
    forecasts_per_pass: int | None = None  # >1 shares a window between that many bars; default 1 (16 if quick)
    precision: str = "auto"  # training and forecasts: auto, float32 or bfloat16 (see finetune/precision.py)
    track: Tracking | None = None  # an MLflow sink for the comparison, or none
    day_end: str = "17:00 America/New_York"  # where a trading day ends, for intraday bars
    inputs: list[str] = field(default_factory=lambda: ["close"])  # what the models read of a bar; each a row

    def calendar(self, index: pd.DatetimeIndex) -> Calendar:
        """The trading periods of these bars: days ending at ``day_end``, or each bar for daily and longer bars."""
        hour, _, zone = self.day_end.partition(" ")
        return Calendar.for_bars(index, hour, zone or "UTC")

    def number_format(self) -> Precision:
        """What ``precision`` means on this machine."""
        return resolve_precision(self.precision)

    def train_config(self) -> TrainConfig:
        search = {} if self.budget == "steps" else dict(QUICK_SEARCH if self.quick else SEARCH)
        default = search.pop("steps", 6 if self.quick else 200)
        steps = self.steps if self.steps is not None else default
        return TrainConfig(steps=steps, batch_size=4 if self.quick else self.batch_size,
                           window=self.context + 1, seed=self.seed, warmup=min(10, max(1, steps // 5)),
                           precision=self.number_format().name, **search)

    def describe_budget(self) -> str:
        """The budget policy in words, for the page's settings."""
        train = self.train_config()
        if self.budget == "steps":
            return f"steps: {train.steps} steps for every method at its own default learning rate (equal compute)"
        factors = ", ".join(f"{f:g}" for f in train.lr_factors)
        return (f"converged: learning rates of {factors} times each method's default, each trained "
                f"{train.probe_steps} steps at a constant rate; the best by validation loss continues until that "
                f"loss (checked every {train.eval_every} steps) stops improving for {train.patience} checks, at most "
                f"{train.steps} steps, and its best step is kept; all chosen on the validation split; the whole "
                "search counts in train seconds")

    def prediction_options(self) -> dict[str, int | str]:
        """``cached_predictions``' keyword arguments: what this run asked for, or its default."""
        default = min(QUICK_FORECASTS_PER_PASS, self.context) if self.quick else 1
        k = default if self.forecasts_per_pass is None else self.forecasts_per_pass
        return {"forecasts_per_pass": k, "precision": self.number_format().name}


class Timings(dict):
    @contextmanager
    def stage(self, name: str):
        began = time.perf_counter()
        yield
        self[name] = self.get(name, 0.0) + time.perf_counter() - began


@dataclass
class Forecaster:
    """One row source of the comparison: a tuned entry or a baseline, with its test-bar forecasts."""

    name: str
    kind: str
    forecasts: pd.DataFrame
    cost: dict = field(default_factory=dict)
    trained_now: bool = False  # trained by this run, not taken from the registry
    losses: list[float] = field(default_factory=list)  # the training loss per step (first split's entry)
    race: list[dict] = field(default_factory=list)  # the learning rates its search tried (first split's entry)
    inputs: str = "close"  # what it reads of each bar: closes, or with "ohlc" each bar's range too


def run(config: RunConfig) -> pd.DataFrame:
    """Run the whole comparison and write its outputs; returns the comparison table."""
    check_writable(config.out, "--out")
    check_writable(config.registry, "--registry")
    methods = [make_method(m, **config.method_params.get(m, {})) for m in config.methods]
    # refuse before any training, not when the first predictor is built after it
    check_forecasts_per_pass(config.prediction_options()["forecasts_per_pass"], config.context)
    chosen = config.number_format()
    if chosen.name != config.precision != "auto":
        print(f"llmsignal: warning: {chosen.note}", file=sys.stderr)
    elif chosen.timings:
        print(f"llmsignal: {chosen.name}, {chosen.note}", file=sys.stderr)
    timings = Timings()
    with timings.stage("data"):
        bars = load_bars(config.data)
        source = config.data or DEFAULT_SOURCE
        splits = (walk_forward_splits(bars, config.walk_forward, config.test, config.val, config.context,
                                      config.rolling, source) if config.walk_forward
                  else [split_bars(bars, config.test, config.val, config.context, source=source)])
        test = pd.concat([s.test for s in splits])
        calendar = config.calendar(bars.index)
        for _, strategy, params in config.strategies:  # a broken strategy fails now, not after training
            check_strategy(test, strategy, params, config.costs)
        if "ohlc" in config.inputs:  # bars without ranges fail now, not after the close-only methods trained
            check_ranges(bars, source)
        base = load_base(config.base)
        for inputs in config.inputs:  # before any method trains, not when the first ohlc one starts
            check_window_fits(base, config.context, inputs)
        notes = seen_by_base(base, test["close"])
    for warning in notes:
        print(f"llmsignal: warning: {warning}", file=sys.stderr)
    forecasters = [_tuned(splits, base, method, config, source, timings, inputs)
                   for inputs in config.inputs for method in methods]
    forecasters += _baselines(splits, notes)
    rows, equities = [], {}
    scale = mase_scale(bars["close"], test.index[0])
    with timings.stage("backtest"):
        for label, strategy, params in config.strategies:
            for forecaster in forecasters:
                key = row_key(forecaster.name, label, len(config.strategies))
                others = {f.name: f.forecasts for f in forecasters if f.kind == "llm" and f is not forecaster}
                row, equities[key] = evaluate(forecaster.name, forecaster.kind, forecaster.forecasts, test,
                                              strategy, params, config.costs,
                                              others if issubclass(strategy, EnsembleStrategy) else None,
                                              scale, calendar, label)
                rows.append({**row, **forecaster.cost, "inputs": forecaster.inputs, "key": key})
        significance(rows, {f.name: f.forecasts for f in forecasters}, equities, calendar=calendar)
        volatility = volatility_targeting({f.name: f.forecasts for f in forecasters}, test, config.costs,
                                          _target_bps(splits[0]), calendar)
    table = table_of(rows)
    with timings.stage("backtest"):
        folds = _per_fold(forecasters, splits, bars, config, calendar) if len(splits) > 1 else None
    with timings.stage("report"):
        outputs = _outputs(config, table, equities, forecasters, splits, base, notes, folds, calendar, volatility)
        outputs.save(config.out)
        write_report(config.out, outputs)
    write_atomic(config.out / "timings.json", json.dumps(timings, indent=2))
    if config.track:
        _track(config, outputs, forecasters, methods)
    return table.drop(columns="key")


def _baselines(splits: list[Split], warnings: list[str]) -> list[Forecaster]:
    """Every baseline's forecasts of the test bars; one that these bars cannot feed is left out with a warning."""
    found = []
    for name, baseline in BASELINES.items():
        try:
            found.append(Forecaster(name, "baseline", pd.concat([baseline(s) for s in splits]),
                                    inputs="ohlc" if name in READS_RANGES else "close"))
        except BaselineSkipped as skipped:
            warnings.append(str(skipped))
            print(f"llmsignal: warning: {skipped}", file=sys.stderr)
    return found


def _target_bps(split: Split) -> float:
    """The risk a full position of "volatility that pays" carries: half the training returns' standard deviation,
    in basis points, so that a typical sigma holds half a position and the cap of one binds only in calm bars."""
    return float(0.5 * np.diff(np.log(split.train["close"].to_numpy())).std() * 1e4)


def _tuned(splits: list[Split], base: Base, method: Method, config: RunConfig, source: str,
           timings: Timings, inputs: str = "close") -> Forecaster:
    """Tune ``method`` reading ``inputs`` on each split (one, or one per walk-forward fold) and forecast its test
    bars; its rows and entries are named ``method`` for closes and ``method-ohlc`` for ohlc inputs."""
    registry = entry_registry(config.registry)
    stem = Path(config.data).stem.lower() if config.data else "eurusd"
    name = labelled(method.name, inputs)
    forecasts, costs, losses, races = [], [], [], []
    for split in splits:
        with timings.stage("train"):
            entry, trained = train_entry(split, base, method, registry, f"{stem}-{name}",
                                         config.train_config(), source, config.context, force=config.force,
                                         resume=config.resume, inputs=inputs)
        with timings.stage("predict"):
            cache = registry.root / ".cache"
            frame, ms_per_bar = cached_predictions(entry, split.bars, split.test_start, cache,
                                                   **config.prediction_options())
            forecasts.append(frame)
            losses.append(entry.metadata.get("loss_history") or [])
            races.append(entry.metadata.get("search") or [])
            costs.append({**entry.metadata["cost"], "lr": entry.metadata["lr"],
                          "predict_ms_per_bar": ms_per_bar, "entry": entry.ref,
                          "predict_ms_per_bar_merged": _merged_latency(entry, split, cache, config),
                          "trained_now": trained})
    cost = pd.DataFrame(costs)
    summary = {"trainable_params": cost["trainable_params"].iloc[0], "train_seconds": cost["train_seconds"].sum(),
               "val_loss": cost["val_loss"].mean(), "lr": ", ".join(f"{lr:.2g}" for lr in cost["lr"]),
               "steps_used": cost.get("steps_used", pd.Series(dtype=float)).mean(),
               "best_step": cost.get("best_step", pd.Series(dtype=float)).mean(),
               "peak_memory_mb": cost["peak_memory_mb"].max(),
               "saved_mb": cost["saved_mb"].iloc[0],
               "predict_ms_per_bar": cost["predict_ms_per_bar"].mean(),
               "predict_ms_per_bar_merged": cost["predict_ms_per_bar_merged"].mean(),
               "entry": ",".join(cost["entry"])}
    trained_now = bool(cost["trained_now"].any())
    _trained(name, summary, trained_now)
    return Forecaster(name, "llm", pd.concat(forecasts), summary, trained_now, losses[0], races[0], inputs)


def _per_fold(forecasters: list[Forecaster], splits: list[Split], bars: pd.DataFrame, config: RunConfig,
              calendar: Calendar) -> pd.DataFrame:
    """Metrics of every forecaster on each walk-forward fold, under the first strategy."""
    _, strategy, params = config.strategies[0]
    rows = []
    for fold, split in enumerate(splits, start=1):
        for forecaster in forecasters:
            forecasts = forecaster.forecasts.loc[split.test.index]
            row, _ = evaluate(forecaster.name, forecaster.kind, forecasts, split.test, strategy, params, config.costs,
                              scale=mase_scale(bars["close"], split.test.index[0]), calendar=calendar)
            rows.append({"fold": fold, "start": split.test.index[0], "end": split.test.index[-1], **row})
    return pd.DataFrame(rows)


def _track(config: RunConfig, outputs: RunOutputs, forecasters: list[Forecaster], methods: list[Method]) -> None:
    """The comparison as an MLflow parent run, each row (method x strategy) a child with its loss curve."""
    table = outputs.table
    train = config.train_config()
    budget = {"budget": config.budget, "steps": train.steps, "batch_size": train.batch_size, "seed": config.seed}
    hyper = {m.name: m.params for m in methods}  # the learning rate is a column: the search chose it
    strategy_params = {label: params for label, _, params in config.strategies}
    losses = {f.name: f.losses for f in forecasters}
    children = [{"name": row["key"], "row": row.to_dict(), "losses": losses.get(row["method"]),
                 "params": {"method": row["method"], "kind": row["kind"], "strategy": row["strategy"],
                            "inputs": row["inputs"],
                            **hyper.get(row["method"], {}), **budget,
                            **{f"strategy.{k}": v for k, v in strategy_params.get(row["strategy"], {}).items()}},
                 "tearsheet": config.out / "tearsheets" / f"{row['key']}.html"} for _, row in table.iterrows()]
    config.track.log_comparison(config.out, table.drop(columns="key"), outputs.settings, children)


def _merged_latency(entry: Entry, split: Split, cache: Path, config: RunConfig) -> float:
    """Prediction time per bar with LoRA/IA3 folded into the base (NaN for methods that cannot merge)."""
    if not make_method(entry.metadata["method"]).mergeable:
        return float("nan")
    return cached_predictions(entry, split.bars, split.test_start, cache, merge=True,
                              **config.prediction_options())[1]


def _forecast_setting(config: RunConfig) -> str:
    k = config.prediction_options()["forecasts_per_pass"]
    shared = (f"{k} bars share a window (contexts {config.context - k + 1}–{config.context} returns)" if k > 1
              else f"each bar its own {config.context}-return context")
    return f"{shared}, {config.number_format().describe()}"


def _threshold(config: RunConfig) -> float | None:
    """The first strategy's trading threshold in basis points, where it has one (for the page's histogram)."""
    _, strategy, params = config.strategies[0]
    return params.get("threshold_bps", dict(strategy.params._getitems()).get("threshold_bps"))


def _trained(name: str, summary: dict, trained_now: bool) -> None:
    """One line per method as soon as its training and forecasts are done (stderr: progress, not the answer)."""
    if not summary["trainable_params"]:
        print(f"{name:>10}: the base as it is, nothing trained  val loss {summary['val_loss']:.4f}", file=sys.stderr)
        return
    steps = "" if pd.isna(summary["steps_used"]) else f"  {summary['steps_used']:.0f} steps"
    print(f"{name:>10}: {summary['trainable_params']:,} trainable  lr {summary['lr']}{steps}  "
          f"{summary['train_seconds']:.0f}s  val loss {summary['val_loss']:.4f}"
          f"{'' if trained_now else '  (from the registry)'}", file=sys.stderr)


def _outputs(config: RunConfig, table: pd.DataFrame, equities: dict, forecasters: list[Forecaster],
             splits: list[Split], base: Base, warnings: list[str], folds: pd.DataFrame | None,
             calendar: Calendar, volatility: pd.DataFrame) -> RunOutputs:
    """What the run writes: its table and what its page is drawn from."""
    train = config.train_config()
    settings = {"data": config.data or "EURUSD H1 (backtesting package)",
                **{f"{k} split": " → ".join(v) for k, v in splits[0].dates().items()},
                **({"walk-forward": f"{len(splits)} folds, {'rolling' if config.rolling else 'expanding'} training, "
                    f"test {splits[0].dates()['test'][0]} → {splits[-1].dates()['test'][1]}"} if folds is not None
                   else {}),
                "base": f"{base.spec} ({base.fingerprint})",
                "inputs": ", ".join(config.inputs),
                "strategies": "; ".join(f"{label} {params}" if params else label
                                        for label, _, params in config.strategies),
                "budget": config.describe_budget(), "batch size": train.batch_size, "seed": config.seed,
                "precision": config.number_format().describe(),
                "forecasts": _forecast_setting(config),
                "trading periods": ("each bar" if calendar.per_bar else
                                    f"days ending {calendar.day_end} {calendar.timezone}")
                + f", {calendar.periods_per_year} a year (Sharpe ratios, tearsheets, folds)",
                "volatility that pays": f"VolatilityTargetStrategy side=long, target_bps={_target_bps(splits[0]):.2f} "
                                        "(half the training returns' standard deviation per bar)",
                **{f"cost: {k}": v for k, v in config.costs.describe().items()}}
    close = pd.concat([s.test for s in splits])["close"]
    return RunOutputs(table=table, equities=equities, benchmark=config.costs.cash * close / close.iloc[0],
                      forecasts={f.name: f.forecasts for f in forecasters}, settings=settings, warnings=warnings,
                      calendar=calendar, folds=folds, losses={f.name: f.losses for f in forecasters if f.losses},
                      race={f.name: f.race for f in forecasters if f.race}, threshold_bps=_threshold(config),
                      volatility=volatility)
