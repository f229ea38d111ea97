"""``llmsignal sweep CONFIG``: methods x seeds x hyper-parameters x data sets, trials in parallel on Ray.

    llmsignal sweep examples/sweep.yaml                            # a local Ray with one worker per CPU
    llmsignal sweep examples/sweep.yaml --workers 2 --out runs/sweep --registry registry
    llmsignal sweep sweep.yaml --address auto                      # a running Ray cluster (docs/sweeps.md)
    llmsignal sweep sweep.yaml --address ray://head:10001          # the same through Ray Client

Writes OUT/sweep.csv (one row per trial and strategy) and OUT/sweep.html (per method: mean and std over seeds,
best hyper-parameters, deflated Sharpe of the best trial). Started again, it skips the trials already finished
ok. Exit status: 0 when every trial ran, 1 when some failed (the tables are written all the same), 2 for a
config that cannot run. Without ``ray`` installed the trials run one after another in this process.

``llmsignal.cli`` mounts this with ``cli_sweep.add_parsers(sub)`` and ``COMMANDS.update(cli_sweep.COMMANDS)``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from llmsignal.cli_args import inputs_flag, positive_int


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Add the ``sweep`` command to the ``llmsignal`` subparsers ``sub``."""
    sweep = sub.add_parser("sweep", help="a grid of methods, seeds, hyper-parameters and data sets, on Ray",
                           description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sweep.add_argument("config", type=Path, metavar="CONFIG", help="YAML or JSON grid (see examples/sweep.yaml)")
    sweep.add_argument("--address", help="a Ray cluster to run on: auto, or ray://host:port (default: a local Ray)")
    sweep.add_argument("--workers", type=positive_int,
                       help="CPUs of the local Ray, one trial each (default: every CPU); ignored with --address")
    sweep.add_argument("--out", type=Path, default=Path("runs/sweep"),
                       help="sweep folder: trials/, sweep.csv, sweep.html (on shared storage for a cluster)")
    sweep.add_argument("--registry", type=Path, default=Path("registry"),
                       help="registry folder shared by the trials (on shared storage for a cluster)")
    sweep.add_argument("--track", metavar="mlflow[:URI]", help="log the sweep to MLflow, one child run per trial")
    inputs_flag(sweep, several=True, default=None,
                help_text="close, ohlc or close,ohlc: the inputs every trial runs with, in place of the config's")


def _sweep(args: argparse.Namespace) -> int:
    from llmsignal import sweep
    from llmsignal.backtests.results import check_writable
    from llmsignal.tracking import Tracking

    check_writable(args.out, "--out")
    check_writable(args.registry, "--registry")
    tracking = Tracking.parse(args.track)
    grid = sweep.load_grid(args.config)
    if args.inputs:  # the flag overrides the config's inputs
        grid.inputs = list(args.inputs)
    trials = sweep.expand(grid)
    results = sweep.run_sweep(trials, args.out, args.registry, address=args.address, workers=args.workers)
    table, summary = sweep.write_outputs(args.out, results)
    if tracking:  # one child run per trial and strategy
        children = [{"name": f"{row['trial']}-{row['strategy']}", "row": row.to_dict(),
                     "params": {k: row[k] for k in ("method", "seed", "params", "data", "strategy") if k in row}}
                    for _, row in table.iterrows()]
        tracking.log_comparison(args.out, table, {"config": args.config}, children, name="sweep")
    best = summary["best"]
    if len(best):
        print(best.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    for _, failure in summary["failures"].iterrows():
        print(f"failed: {failure['trial']}: {failure['error']}", file=sys.stderr)
    print(f"\n{summary['trials']} trials: {summary['ok']} ok, {summary['failed']} failed; "
          f"results: {args.out / 'sweep.csv'}, {args.out / 'sweep.html'}")
    return 1 if summary["failed"] else 0


COMMANDS = {"sweep": _sweep}
