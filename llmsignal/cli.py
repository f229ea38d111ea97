"""The llmsignal command line: every stage alone, or the whole run.

    llmsignal run [--data CSV] [--methods full,lora,adapter|all] [--base embedded|gpt2|PATH] [--quick]
    llmsignal pretrain                          # rebuild the embedded base
    llmsignal train --method lora               # one entry into the registry
    llmsignal predict --entry eurusd-lora --out forecasts.csv
    llmsignal backtest --predictions forecasts.csv --out runs/bt
    llmsignal compare runs/a runs/b --out runs/ab
    llmsignal methods | base-info | registry list | serve --entry eurusd-lora | sweep CONFIG
    llmsignal run --config examples/run.yaml --track mlflow    # flags from a file; runs into MLflow
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from llmsignal import __version__, cli_serve, cli_sweep
from llmsignal.cli_args import (
    BUDGETS,
    ENTRY_INPUTS,
    Checked,
    inputs_flag,
    positive_int,
    precision_flag,
    seed_int,
    timestamp_text,
    warn_precision,
)

if TYPE_CHECKING:
    from llmsignal.backtests.costs import Costs

EXIT_CODES = """exit status:
  0    done
  2    a mistake in the input: one line on stderr says what and where, nothing was written
  130  interrupted (Ctrl-C): the registry holds only complete entries; --resume continues a training
"""
ALL_EXIT_CODES = EXIT_CODES + "  1    (sweep only) some trials failed; its tables are written all the same\n"


def user_errors() -> tuple[type[Exception], ...]:
    """The one place where a user's mistake becomes one line on stderr and exit status 2.

    Imported when an error is raised, not at start-up: ``llmsignal --help`` must not wait for torch.
    """
    from llmsignal.backtests.costs import CostError
    from llmsignal.backtests.results import RunFolderError
    from llmsignal.config_file import ConfigFileError
    from llmsignal.finetune.bars import DataError
    from llmsignal.finetune.base import BaseModelError
    from llmsignal.finetune.methods import MethodError
    from llmsignal.finetune.precision import PrecisionError
    from llmsignal.models.predictor import PredictionError
    from llmsignal.models.registry import RegistryError
    from llmsignal.models.server import ServeError
    from llmsignal.strategies import StrategyError
    from llmsignal.sweep import SweepError
    from llmsignal.tracking import TrackingError

    return (DataError, MethodError, RegistryError, BaseModelError, StrategyError, PredictionError, ServeError,
            SweepError, CostError, ConfigFileError, TrackingError, PrecisionError, RunFolderError)


def _key_values(pairs: list[str]) -> dict[str, str]:
    from llmsignal.finetune.methods import MethodError

    out = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep:
            raise MethodError(f"parameter {pair!r} is not of the form name=value")
        out[key.strip()] = value.strip()
    return out


def _method_params(pairs: list[str]) -> dict[str, dict]:
    """``--param lora.r=4`` (one method) or ``--param r=4`` (every method that takes r)."""
    from llmsignal.finetune.methods import METHODS, MethodError

    per_method: dict[str, dict] = {}
    for key, value in _key_values(pairs).items():
        method, dot, name = key.rpartition(".")
        if dot and method not in METHODS:
            raise MethodError(f"--param {key}: no method {method!r}; methods: {', '.join(METHODS)}")
        targets = [method] if dot else [m for m, spec in METHODS.items() if name in spec.params or name == "lr"]
        if not targets:
            raise MethodError(f"no method takes parameter {name!r}")
        for target in targets:
            per_method.setdefault(target, {})[name] = value
    return per_method


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", help="CSV of OHLC bars or a MetaTrader 5 export (default: bundled EURUSD H1)")
    parser.add_argument("--base", default="embedded", help="embedded (default), gpt2, or a model folder")
    parser.add_argument("--registry", type=Path, default=Path("registry"), help="registry folder (default: registry)")
    parser.add_argument("--seed", action=Checked, convert=seed_int, default=0, help="random seed, 0 to 2**32-1")
    parser.add_argument("--steps", type=positive_int,
                        help="training steps per method: with --budget steps, every one is taken (default 200); "
                             "with --budget converged, the most a search may take (default 1000; 6 with --quick)")
    parser.add_argument("--budget", choices=BUDGETS, default="converged",
                        help="converged (default): a learning-rate search per method with early stopping on the "
                             "validation split; steps: the same fixed steps for every method (equal compute)")
    parser.add_argument("--test", type=float, default=0.2,
                        help="fraction of bars in the test split, the last ones (default: 0.2)")
    parser.add_argument("--val", type=float, default=0.1,
                        help="fraction of bars in the validation split, just before the test (default: 0.1)")
    parser.add_argument("--quick", action="store_true", help="the whole pipeline on tiny budgets")
    parser.add_argument("--force", action="store_true", help="retrain even if the registry has the entry")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted training")
    parser.add_argument("--param", action="append", metavar="[METHOD.]NAME=VALUE",
                        help="a method hyper-parameter, e.g. lora.r=4 (repeatable)")


def _prediction_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--forecasts-per-pass", type=int, metavar="K",
                        help="let K consecutive bars share one window: bar t then reads context - K + 1 + t %% K "
                             "returns; about 10x faster at K=16, except for prefix tuning, whose own attention "
                             "needs a pass per bar (default 1: every bar its full context; 16 for run --quick)")


def _strategy_flags(parser: argparse.ArgumentParser, default: str) -> None:
    parser.add_argument("--strategy", action="append", metavar="SPEC",
                        help="ThresholdStrategy, SideStrategy, ProbabilityStrategy, EnsembleStrategy, "
                             "VolatilityTargetStrategy, package.module:Class or path/to/file.py:Class; repeat for a "
                             f"method x strategy grid (default: {default})")
    parser.add_argument("--strategy-param", action="append", default=[], metavar="[STRATEGY.]NAME=VALUE",
                        help="a strategy parameter, e.g. threshold_bps=1 (every strategy that takes it) or "
                             "ThresholdStrategy.threshold_bps=1")


def _cost_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cost", action="append", default=[], metavar="NAME=VALUE",
                        help="an account or cost setting, e.g. spread_pips=1.2 or swap_long_pips=-0.9 (repeatable; "
                             "see docs/strategies.md for every name)")


def _costs(args: argparse.Namespace) -> Costs:
    from llmsignal.backtests.costs import CostError, Costs

    pairs = {}
    for pair in args.cost:
        name, sep, value = pair.partition("=")
        if not sep:
            raise CostError(f"--cost {pair!r} is not of the form name=value")
        pairs[name.strip()] = value.strip()
    return Costs().with_settings(pairs)


def _strategies(args: argparse.Namespace, default: list[str]) -> list[tuple[str, type, dict]]:
    """(label, class, params) for each --strategy (``default`` without one). ``STRATEGY.name=value`` goes to the
    strategies of that class, a plain ``name=value`` to every strategy that takes ``name`` (to all when none does,
    which then names what each takes)."""
    from llmsignal.strategies.loader import load_strategy, parse_param_pairs, strategy_params

    pairs = parse_param_pairs(args.strategy_param)
    classes = [load_strategy(spec) for spec in args.strategy or default]
    takers = {name: [cls for cls in classes if name in cls.params._getkeys()] or classes for name in pairs}
    chosen = []
    for cls in classes:
        mine = {name.rpartition(".")[2]: value for name, value in pairs.items()
                if name.rpartition(".")[0] == cls.__name__ or ("." not in name and cls in takers[name])}
        label = cls.__name__
        taken = sum(1 for other, _, _ in chosen if other == label or other.startswith(f"{label}-"))
        chosen.append((f"{label}-{taken + 1}" if taken else label, cls, strategy_params(cls, mine)))
    return chosen


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="llmsignal", description=__doc__, epilog=ALL_EXIT_CODES,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"llmsignal {__version__}")
    loudness = parser.add_mutually_exclusive_group()
    loudness.add_argument("-q", "--quiet", action="store_true", help="no progress bars, warnings or library logs")
    loudness.add_argument("-v", "--verbose", action="store_true",
                          help="library logs too (transformers, peft, Ray workers)")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="tune, forecast, backtest and compare", epilog=EXIT_CODES,
                         description="Tune each method on the training bars, forecast the test bars, trade the "
                                     "forecasts with each strategy and compare every method with the baselines: "
                                     "comparison.csv, comparison.html and a tearsheet per row in --out.",
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.run_parser = run  # the flags a --config file may set
    run.add_argument("--config", type=Path, metavar="YAML",
                     help="every flag of run in a file (see examples/run.yaml); flags given here override it")
    run.add_argument("--track", metavar="mlflow[:URI]",
                     help="log the comparison to MLflow (default URI ./mlruns; or set LLMSIGNAL_TRACKING_URI)")
    _common(run)
    run.add_argument("--methods", default="full,lora,adapter,scratch,zero-shot",
                     help="comma-separated methods, or 'all' (default: full,lora,adapter,scratch,zero-shot)")
    run.add_argument("--out", type=Path, default=Path("runs/latest"), help="output folder (default: runs/latest)")
    run.add_argument("--walk-forward", type=int, default=0, metavar="K",
                     help="evaluate K consecutive test windows, tuning each method per fold on earlier bars only")
    run.add_argument("--rolling", action="store_true", help="walk-forward with a rolling (not expanding) train window")
    run.add_argument("--day-end", default="17:00 America/New_York", metavar="'HH:MM ZONE'",
                     help="where a trading day ends, for Sharpe ratios and tearsheets of intraday bars (default: the "
                          "FX rollover, 17:00 America/New_York; e.g. '16:00 America/New_York' for US stocks)")
    inputs_flag(run, several=True)
    _prediction_flags(run)
    precision_flag(run, "training and forecasts")
    _strategy_flags(run, "ThresholdStrategy and SideStrategy, side by side")
    _cost_flag(run)
    train = sub.add_parser("train", help="tune one method and store the entry in the registry")
    _common(train)
    train.add_argument("--method", required=True)
    train.add_argument("--name", help="entry name (default: <data>-<method>, <data>-<method>-ohlc for ohlc)")
    inputs_flag(train)
    precision_flag(train, "training")
    pre = sub.add_parser("pretrain", help="pretrain the embedded base on the offline corpus")
    pre.add_argument("--steps", type=positive_int, default=1200)
    pre.add_argument("--out", type=Path, help="output folder (default: the package's embedded base)")
    predict = sub.add_parser("predict", help="forecasts of a registry entry for the bars of a CSV: forecast, p_up, "
                             "sigma and the quantiles q05 .. q95 of the next close")
    predict.add_argument("--entry", required=True, help="NAME or NAME@VERSION")
    predict.add_argument("--data")
    predict.add_argument("--registry", type=Path, default=Path("registry"))
    predict.add_argument("--start", action=Checked, convert=timestamp_text,
                         help="first bar to forecast (default: the entry's test split start)")
    predict.add_argument("--out", type=Path, required=True)
    inputs_flag(predict, default=None, help_text=ENTRY_INPUTS)
    _prediction_flags(predict)
    precision_flag(predict, "forecasts")
    backtest = sub.add_parser("backtest", help="trade a predictions CSV and write metrics and a tearsheet")
    backtest.add_argument("--predictions", type=Path, required=True)
    backtest.add_argument("--data")
    backtest.add_argument("--out", type=Path, required=True)
    backtest.add_argument("--method", help="the method whose rows to trade, in a predictions file of several "
                                           "(as `llmsignal run` writes)")
    _strategy_flags(backtest, "ThresholdStrategy")
    _cost_flag(backtest)
    methods = sub.add_parser("methods", help="list the tuning methods")
    methods.add_argument("--base", default="embedded")
    compare = sub.add_parser("compare", help="one comparison page from runs already on disk")
    compare.add_argument("runs", nargs="+", type=Path, help="folders written by `llmsignal run`")
    compare.add_argument("--out", type=Path, required=True)
    info = sub.add_parser("base-info", help="what the base was pretrained on, and its held-out loss")
    info.add_argument("--base", default="embedded")
    cli_serve.add_parsers(sub)
    cli_sweep.add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _loudness(args)
    try:
        if args.command == "run" and args.config:  # the file's values become defaults the flags override
            from llmsignal.config_file import defaults_from_file

            parser.run_parser.set_defaults(**defaults_from_file(args.config, parser.run_parser))
            args = parser.parse_args(argv)
        return COMMANDS[args.command](args) or 0
    except Exception as err:
        if not isinstance(err, user_errors()):
            raise
        print(f"llmsignal: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("llmsignal: interrupted; the registry holds only complete entries (use --resume to continue)",
              file=sys.stderr)
        return 130


def _day_end(text: str) -> str:
    """``HH:MM ZONE``, checked: an IANA time zone and a time of day."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    from llmsignal.finetune.bars import DataError

    hour, _, zone = text.strip().partition(" ")
    try:
        hours, minutes = (int(part) for part in hour.split(":"))
        ZoneInfo(zone or "UTC")
    except (ValueError, ZoneInfoNotFoundError):
        raise DataError(f"--day-end {text!r}: give a time and a zone, like '17:00 America/New_York'") from None
    if not (0 <= hours < 24 and 0 <= minutes < 60):
        raise DataError(f"--day-end {text!r}: {hour} is not a time of day")
    return text.strip()


def _loudness(args: argparse.Namespace) -> None:
    """-q: no bars, warnings or library logs; -v: the libraries' own logs too."""
    if args.quiet:
        os.environ["TQDM_DISABLE"] = "1"
        os.environ["MLFLOW_LOGGING_LEVEL"] = "ERROR"  # MLflow sets its logger's level when it is imported, later
        warnings.simplefilter("ignore")
        for name in ("llmsignal", "transformers", "peft", "ray", "mlflow"):
            logging.getLogger(name).setLevel(logging.ERROR)
    elif args.verbose:
        os.environ["TRANSFORMERS_VERBOSITY"] = "info"
        os.environ["LLMSIGNAL_RAY_LOGS"] = "1"
        logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")


def _run(args: argparse.Namespace) -> int:
    from llmsignal.backtests.report import answer_lines
    from llmsignal.run import run

    table = run(run_config(args))
    print("\n".join(answer_lines(table)))
    print(f"page: {args.out / 'comparison.html'}   table: {args.out / 'comparison.csv'}")
    return 0


def run_config(args: argparse.Namespace):
    """The ``RunConfig`` that ``llmsignal run`` with these arguments runs, checked before any work."""
    from llmsignal.finetune.methods import METHODS, MethodError
    from llmsignal.run import DEFAULT_STRATEGIES, RunConfig
    from llmsignal.tracking import Tracking

    methods = list(METHODS) if args.methods == "all" else [m.strip() for m in args.methods.split(",") if m.strip()]
    if not methods:
        raise MethodError(f"--methods {args.methods!r} names no method; give some of {', '.join(METHODS)}, or all")
    params = _method_params(args.param)
    return RunConfig(data=args.data, methods=methods, base=args.base, registry=args.registry, out=args.out,
                       quick=args.quick, seed=args.seed, steps=args.steps, budget=args.budget, test=args.test,
                       val=args.val,
                       method_params={m: p for m, p in params.items() if m in methods},
                       strategies=_strategies(args, [cls.__name__ for cls in DEFAULT_STRATEGIES]), force=args.force,
                       resume=args.resume,
                       walk_forward=args.walk_forward, rolling=args.rolling,
                       forecasts_per_pass=args.forecasts_per_pass, precision=args.precision, costs=_costs(args),
                       track=Tracking.parse(args.track), day_end=_day_end(args.day_end), inputs=list(args.inputs))


def _train(args: argparse.Namespace) -> int:
    from llmsignal.backtests.results import check_writable, labelled
    from llmsignal.data import DEFAULT_SOURCE, load_bars
    from llmsignal.finetune.bars import check_ranges, split_bars
    from llmsignal.finetune.base import load_base
    from llmsignal.finetune.methods import make_method
    from llmsignal.models.entries import entry_registry, train_entry
    from llmsignal.models.registry import check_name
    from llmsignal.run import RunConfig

    method = make_method(args.method, **_method_params(args.param).get(args.method, {}))
    name = args.name if args.name is not None else f"{Path(args.data).stem.lower() if args.data else 'eurusd'}-" \
                                                   f"{labelled(method.name, args.inputs)}"
    check_name(name)  # before any data is read or anything trained
    check_writable(args.registry, "--registry")
    config = RunConfig(data=args.data, base=args.base, quick=args.quick, seed=args.seed, steps=args.steps,
                       budget=args.budget, precision=args.precision)
    source = args.data or DEFAULT_SOURCE
    warn_precision(config.number_format())
    bars = load_bars(args.data)
    if args.inputs == "ohlc":
        check_ranges(bars, source)
    split = split_bars(bars, args.test, args.val, config.context, source=source)
    entry, trained = train_entry(split, load_base(args.base), method, entry_registry(args.registry), name,
                                 config.train_config(), source, config.context, args.force, args.resume,
                                 inputs=args.inputs)
    print(f"{entry.ref} {'trained' if trained else 'already in the registry'}: {entry.path}")
    return 0


def _pretrain(args: argparse.Namespace) -> int:
    from llmsignal.finetune.base import EMBEDDED_DIR
    from llmsignal.finetune.pretrain import PretrainConfig, pretrain

    info = pretrain(args.out or EMBEDDED_DIR, PretrainConfig(steps=args.steps))
    print(f"embedded base: {info['parameters']:,} parameters, held-out loss {info['heldout_loss']:.3f}, "
          f"{len(info['corpus'])} corpus series, written to {args.out or EMBEDDED_DIR}")
    return 0


def _predict(args: argparse.Namespace) -> int:
    import pandas as pd

    from llmsignal.backtests.results import check_writable, write_atomic
    from llmsignal.data import load_bars
    from llmsignal.finetune.bars import DataError, check_ranges
    from llmsignal.models.entries import check_inputs, entry_inputs, entry_registry
    from llmsignal.models.predictor import Predictor

    check_writable(args.out.parent, "--out")
    entry = entry_registry(args.registry).get(args.entry)
    check_inputs(entry, args.inputs)
    bars = load_bars(args.data)
    if entry_inputs(entry.metadata) == "ohlc":
        check_ranges(bars, args.data or "EURUSD")
    start = pd.Timestamp(args.start or entry.metadata["split"]["test"][0])
    position = int(bars.index.searchsorted(start))
    if position >= len(bars):
        raise DataError(f"{args.data or 'EURUSD'}: no bars on or after {start}")
    k = 1 if args.forecasts_per_pass is None else args.forecasts_per_pass
    predictor = Predictor.from_entry(entry, forecasts_per_pass=k, precision=args.precision)
    warn_precision(predictor.number_format)
    # the public columns, then the distribution's bins, which `backtest` scores exactly as `run` does
    frame = predictor.predict(bars, max(position, entry.metadata["codec"]["context"]))
    frame.index.name = "timestamp"
    write_atomic(args.out, frame.to_csv())
    print(f"{len(frame)} forecasts of {entry.ref} written to {args.out}")
    return 0


def _backtest(args: argparse.Namespace) -> int:
    from llmsignal.backtests.evaluation import evaluate
    from llmsignal.backtests.metrics import Calendar, mase_scale
    from llmsignal.backtests.report import tearsheet
    from llmsignal.backtests.results import check_writable, strict_json, write_atomic
    from llmsignal.data import load_bars
    from llmsignal.finetune.bars import DataError
    from llmsignal.strategies import StrategyError, signal_frame

    if args.strategy and len(args.strategy) > 1:
        raise StrategyError(f"--strategy given {len(args.strategy)} times: backtest trades one strategy per --out; "
                            "`llmsignal run --strategy A --strategy B` compares several")
    check_writable(args.out, "--out")
    forecasts = _read_predictions(args.predictions, args.method)
    costs = _costs(args)
    bars = load_bars(args.data)
    [(label, strategy, params)] = _strategies(args, ["ThresholdStrategy"])
    if len(signal_frame(bars, forecasts)) < 2:
        raise DataError(f"{args.predictions}: fewer than 2 timestamps in common with the bars of "
                        f"{args.data or 'EURUSD'}; pass the --data the forecasts were made for")
    calendar = Calendar.for_bars(bars.index)
    test = bars.loc[forecasts.index.intersection(bars.index)]
    method = args.method or args.predictions.stem
    row, equity = evaluate(method, "llm", forecasts, test, strategy, params, costs,
                           scale=mase_scale(bars["close"], forecasts.index[0]), calendar=calendar, label=label)
    close = bars["close"].loc[equity.index]
    tearsheet(equity, costs.cash * close / close.iloc[0], f"{method} ({label})", args.out / "tearsheet.html", calendar)
    metrics = {**row, "costs": asdict(costs)}
    write_atomic(args.out / "metrics.json", strict_json(metrics))
    write_atomic(args.out / "equity.csv", equity.rename("equity").rename_axis("timestamp").to_csv())
    print(strict_json(metrics))
    return 0


def _read_predictions(path: Path, method: str | None):
    """The forecasts of one method from a predictions CSV; a file of several methods needs ``method``.

    close, forecast, p_up and sigma must be finite numbers (p_up from 0 to 1): the first bad one is one line.
    """
    import numpy as np
    import pandas as pd

    from llmsignal.finetune.bars import DataError

    if not path.exists():
        raise DataError(f"{path}: no such file")
    try:
        with warnings.catch_warnings():  # pandas' note on timestamps it cannot read: they are refused below
            warnings.simplefilter("ignore", UserWarning)
            forecasts = pd.read_csv(path, index_col=0, parse_dates=[0])
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: not a readable CSV ({str(err).splitlines()[0]})") from None
    if len(forecasts) and not isinstance(forecasts.index, pd.DatetimeIndex):
        unread = pd.to_datetime(forecasts.index.astype(str), errors="coerce", format="mixed").isna()
        first = forecasts.index[int(unread.argmax())]
        raise DataError(f"{path}: unreadable timestamp {str(first)[:40]!r}; the first column holds each bar's time")
    missing = {"close", "forecast", "p_up"} - set(forecasts.columns)
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(sorted(missing))}")
    methods = sorted(forecasts["method"].astype(str).unique()) if "method" in forecasts else []
    if method is not None:
        if method not in methods:
            raise DataError(f"{path}: no rows of method {method!r} (methods: {', '.join(methods) or 'none named'})")
        forecasts = forecasts[forecasts["method"].astype(str) == method]
    elif len(methods) > 1:
        raise DataError(f"{path}: holds {len(methods)} methods ({', '.join(methods)}); pick one with --method")
    if not forecasts.index.is_monotonic_increasing or forecasts.index.has_duplicates:
        raise DataError(f"{path}: timestamps are unsorted or repeated; one row per bar, in time order")
    numbers = {}
    for column in [c for c in ("close", "forecast", "p_up", "sigma") if c in forecasts]:
        values = pd.to_numeric(forecasts[column], errors="coerce").astype(float)
        bad = ~np.isfinite(values.to_numpy())
        if column == "p_up":
            bad |= ((values < 0) | (values > 1)).to_numpy()
        if bad.any():
            first = int(bad.argmax())
            raw = forecasts[column].iloc[first]
            need = "a probability from 0 to 1" if column == "p_up" else "a finite number"
            raise DataError(f"{path}: column {column} holds {repr(raw) if isinstance(raw, str) else raw} at "
                            f"{forecasts.index[first]}; every value must be {need}")
        numbers[column] = values
    return forecasts.assign(**numbers)


def _methods(args: argparse.Namespace) -> int:
    from llmsignal.finetune.base import load_base
    from llmsignal.finetune.methods import METHODS, count_trainable, get_model

    base = load_base(args.base)
    total = sum(p.numel() for p in base.model.parameters())
    print(f"base {args.base}: {total:,} parameters\n")
    print(f"{'method':<10} {'trainable':>12} {'share':>7}  description (hyper-parameters)")
    for name, method in METHODS.items():
        trainable = count_trainable(get_model(base.model, method)) if method.trainable else 0
        params = ", ".join(f"{k}={v}" for k, v in {**method.params, "lr": method.lr}.items())
        print(f"{name:<10} {trainable:>12,} {trainable / total:>7.2%}  {method.description} ({params})")
    return 0


def _compare(args: argparse.Namespace) -> int:
    from llmsignal.compare import compare

    table = compare(args.runs, args.out)
    print(f"{len(table)} rows from {len(args.runs)} run(s): {args.out / 'comparison.html'}")
    return 0


def _base_info(args: argparse.Namespace) -> int:
    from llmsignal.finetune.base import load_base

    base = load_base(args.base)
    info = base.info
    total = sum(p.numel() for p in base.model.parameters())
    print(f"base {args.base}: {type(base.model).__name__}, {total:,} parameters, fingerprint {base.fingerprint}")
    if not info:
        print("no pretraining record: this base was not built by `llmsignal pretrain`")
        return 0
    print(f"held-out loss {info['heldout_loss']:.4f} (train {info['train_loss']:.4f}) after "
          f"{info['config']['steps']} steps\n")
    print(f"{'series':<28} {'source':<24} {'bars':>6}  {'from':<20} {'to':<20} fingerprint")
    for series in info["corpus"]:
        print(f"{series['name']:<28} {series['source']:<24} {series['bars']:>6}  {series['start']:<20} "
              f"{series['end']:<20} {series['fingerprint']}")
    return 0


COMMANDS = {"run": _run, "train": _train, "pretrain": _pretrain, "predict": _predict, "backtest": _backtest,
            "methods": _methods,
            "base-info": _base_info, "compare": _compare}
COMMANDS.update(cli_serve.COMMANDS)
COMMANDS.update(cli_sweep.COMMANDS)
