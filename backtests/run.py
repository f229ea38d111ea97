"""The run: bars → tuned entries → forecasts → backtests → tearsheets and one comparison.

    python -m backtests.run --methods full,lora,adapter --quick

is the same command as ``llmsignal run``. Outputs in ``--out``: ``comparison.csv``,
``comparison.html``, ``predictions.csv``, ``tearsheets/<method>.html`` and
``timings.json``.
"""

from __future__ import annotations

import json
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from backtests.backtest import run_backtest
from backtests.baselines import BASELINES
from backtests.costs import Costs
from backtests.data import load_bars, split_bars
from backtests.metrics import forecast_error, trading_performance
from backtests.report import COLUMNS, comparison_html, tearsheet
from backtests.training import train_entry
from finetune.base import load_base
from finetune.methods import make_method
from finetune.train import TrainConfig
from models.predictor import cached_predictions
from models.registry import Registry
from strategies import ThresholdStrategy, signal_frame

DEFAULT_METHODS = ["full", "lora", "adapter"]


@dataclass
class RunConfig:
    data: str | None = None
    methods: list[str] = field(default_factory=lambda: list(DEFAULT_METHODS))
    base: str = "embedded"
    registry: Path = Path("registry")
    out: Path = Path("runs/latest")
    quick: bool = False
    seed: int = 0
    steps: int | None = None
    batch_size: int = 16
    test: float = 0.2
    val: float = 0.1
    context: int = 48
    method_params: dict[str, dict] = field(default_factory=dict)
    strategy: type = ThresholdStrategy
    strategy_params: dict = field(default_factory=dict)
    costs: Costs = field(default_factory=Costs)
    force: bool = False
    resume: bool = False

    def train_config(self) -> TrainConfig:
        steps = self.steps if self.steps is not None else (6 if self.quick else 200)
        return TrainConfig(steps=steps, batch_size=4 if self.quick else self.batch_size,
                           window=self.context + 1, seed=self.seed, warmup=min(10, max(1, steps // 5)))


class Timings(dict):
    @contextmanager
    def stage(self, name: str):
        began = time.perf_counter()
        yield
        self[name] = self.get(name, 0.0) + time.perf_counter() - began


def evaluate(name: str, kind: str, predictions: pd.DataFrame, bars: pd.DataFrame, config: RunConfig):
    """Forecast error and the strategy's P&L for one set of test-bar forecasts."""
    result = run_backtest(signal_frame(bars, predictions), config.strategy, config.strategy_params, config.costs)
    row = {"method": name, "kind": kind, **forecast_error(predictions), **trading_performance(result.equity),
           "trades": result.trades}
    return row, result.equity


def run(config: RunConfig) -> pd.DataFrame:
    """Run the whole comparison and write its outputs; returns the comparison table."""
    methods = [make_method(m, **config.method_params.get(m, {})) for m in config.methods]
    timings = Timings()
    with timings.stage("data"):
        bars = load_bars(config.data)
        source = config.data or "backtesting.test/EURUSD.csv (EURUSD H1)"
        split = split_bars(bars, config.test, config.val, config.context, source=source)
        base = load_base(config.base)
    registry = Registry(config.registry)
    train_config = config.train_config()
    stem = Path(config.data).stem.lower() if config.data else "eurusd"
    rows, curves, predictions = [], {}, []
    for method in methods:
        with timings.stage("train"):
            entry, trained = train_entry(split, base, method, registry, f"{stem}-{method.name}", train_config,
                                         source, config.context, force=config.force, resume=config.resume)
        with timings.stage("predict"):
            forecasts, ms_per_bar = cached_predictions(entry, split.bars, split.test_start,
                                                       registry.root / ".cache")
        with timings.stage("backtest"):
            row, curves[method.name] = evaluate(method.name, "llm", forecasts, split.test, config)
        cost = entry.metadata["cost"]
        row.update({k: cost[k] for k in ("trainable_params", "train_seconds", "peak_memory_mb", "saved_mb")},
                   predict_ms_per_bar=ms_per_bar, entry=entry.ref)
        rows.append(row)
        predictions.append(forecasts.assign(method=method.name))
        _summary(row, trained)
    with timings.stage("backtest"):
        for name, baseline in BASELINES.items():
            forecasts = baseline(split)
            row, curves[name] = evaluate(name, "baseline", forecasts, split.test, config)
            rows.append(row)
            predictions.append(forecasts.assign(method=name))
    table = pd.DataFrame(rows).reindex(columns=[*COLUMNS, "entry"])
    with timings.stage("report"):
        _write(config, table, curves, predictions, split, base)
    (config.out / "timings.json").write_text(json.dumps(timings, indent=2))
    return table


def _summary(row: dict, trained: bool) -> None:
    print(f"{row['method']:>10}: MASE {row['mase']:.3f}  direction {row['directional_accuracy']:.1%}  "
          f"Sharpe {row['sharpe']:+.2f}  return {row['total_return']:+.2%}  trades {row['trades']}  "
          f"{row['trainable_params']:,} trainable  {row['train_seconds']:.0f}s"
          f"{'' if trained else ' (from registry)'}", file=sys.stderr)


def _write(config: RunConfig, table: pd.DataFrame, curves: dict, predictions: list, split, base) -> None:
    out = config.out
    out.mkdir(parents=True, exist_ok=True)
    close = split.test["close"]
    benchmark = config.costs.cash * close / close.iloc[0]
    for name, equity in curves.items():
        tearsheet(equity, benchmark, f"{name} ({config.strategy.__name__})", out / "tearsheets" / f"{name}.html")
    table.to_csv(out / "comparison.csv", index=False)
    frame = pd.concat(predictions)
    frame.index.name = "timestamp"
    frame.reset_index()[["timestamp", "method", "close", "forecast", "p_up"]].to_csv(out / "predictions.csv",
                                                                                     index=False)
    settings = {"data": config.data or "EURUSD H1 (backtesting package)", **{f"{k} split": " → ".join(v)
                for k, v in split.dates().items()}, "base": f"{base.spec} ({base.fingerprint})",
                "strategy": f"{config.strategy.__name__} {config.strategy_params}",
                "train steps": config.train_config().steps, "batch size": config.train_config().batch_size,
                "seed": config.seed, **{f"cost: {k}": v for k, v in config.costs.to_dict().items()}}
    page = comparison_html(table.drop(columns="entry"), {**curves, "buy & hold": benchmark}, settings, [])
    (out / "comparison.html").write_text(page)


def main(argv: list[str] | None = None) -> int:
    from backtests.cli import main as cli_main

    return cli_main(["run", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
